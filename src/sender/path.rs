//! Path selection (D7, thesis 6.1.3): which mixes a message crosses, in order.
//!
//! At least four hops for user mail; a mix of the recipient's domain with an exit mode is
//! the last hop when that domain vouches for its key in its Web Key Directory (`Mix::wkd`,
//! looked up when the directory learned the key, never at send time); a sender-chosen first mix is the first; never the same mix twice in a row;
//! middle hops offer `middleman`, the last an exit mode (`exitprivate` only for its own
//! domain). Dummies use one to four random mixes.
//!
//! With trusted pingers (issue 14), `Rules` as Mixmaster's MINREL, RELFINAL, MAXLAT and
//! DISTANCE apply on top: every hop ranked reliable enough and fast enough, the exit more
//! reliable still, no two mixes of one operator in a row, no chain a majority of the
//! pingers found broken. A mix no trusted pinger ranks passes no rule.

use rand::seq::IndexedRandom;
use rand::Rng;

use std::time::Duration;

use crate::mixes::address::MixAddress;
use crate::mixes::directory::Mix;

/// What a ranked path must satisfy (Mixmaster's settings and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Least median reliability of any hop (MINREL), 0.0 to 1.0.
    pub min_reliability: f64,
    /// Least median reliability of the exit (RELFINAL).
    pub min_exit_reliability: f64,
    /// Greatest median latency of any hop (MAXLAT).
    pub max_latency: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { min_reliability: 0.98, min_exit_reliability: 0.99, max_latency: Duration::from_secs(36 * 3600) }
    }
}

impl Rules {
    /// Whether `m` may be a hop (`exit`: the last of a user path).
    pub fn hop(&self, m: &Mix, exit: bool) -> bool {
        let least = if exit { self.min_exit_reliability } else { self.min_reliability };
        m.standing.as_ref().is_some_and(|s| s.reliability >= least && s.latency <= self.max_latency)
    }

    /// Whether `b` may follow `a`: other operators, and no chain found broken.
    pub fn pair(&self, a: &Mix, b: &Mix) -> bool {
        operator(&a.address) != operator(&b.address)
            && !a.standing.as_ref().is_some_and(|s| s.broken_next.contains(&b.cert.fingerprint()))
    }
}

/// Who runs a mix, as far as a client can tell: the registrable domain of its host, taken
/// as the last two labels of the FQDN (`mix.a.example.org` and `b.example.org` are one
/// operator). Without the public suffix list, `a.co.uk` and `b.co.uk` count as one: the
/// error is on the side of caution (a pair refused, never a pair allowed wrongly).
pub fn operator(address: &MixAddress) -> String {
    let fqdn = address.fqdn().to_ascii_lowercase();
    let labels: Vec<&str> = fqdn.trim_end_matches('.').rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}

/// Fewest hops a user message may take (thesis 6.1.3).
pub const MIN_HOPS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("a path needs at least {MIN_HOPS} hops")]
    TooFewHops,
    #[error("the first mix {0} is not in the directory (or has no valid subkey)")]
    UnknownFirstMix(MixAddress),
    #[error("the first mix {0} does not offer middleman")]
    FirstMixNotMiddleman(MixAddress),
    #[error("no mix in the directory offers an exit to this recipient")]
    NoExit,
    #[error("the directory has too few middleman mixes to make a path without repeating a mix")]
    NoMiddleman,
    #[error("no path passes the trusted pingers' rankings (reliability, latency, operators, broken chains): {0}; pass --relax to use mixes below them")]
    Unranked(&'static str),
}

/// Chooses the exit for a recipient domain: its own mix if it runs an exit and the domain
/// vouches for the mix's key (WKD), else a random `exitpublic` mix. Without the domain's
/// word, whoever can receive mail at `mixtasy@<freemail domain>` would become the exit for
/// every recipient there.
pub fn choose_exit<'m>(mixes: &'m [Mix], recipient_domain: &str, rng: &mut impl Rng) -> Result<&'m Mix, PathError> {
    choose_exit_ranked(mixes, recipient_domain, None, rng)
}

/// `choose_exit` among the exits `rules` allow (all with `None`).
pub fn choose_exit_ranked<'m>(
    mixes: &'m [Mix],
    recipient_domain: &str,
    rules: Option<&Rules>,
    rng: &mut impl Rng,
) -> Result<&'m Mix, PathError> {
    let ok = |m: &Mix| rules.is_none_or(|r| r.hop(m, true));
    if let Some(own) = mixes
        .iter()
        .find(|m| m.address.fqdn().eq_ignore_ascii_case(recipient_domain) && m.modes.exit() && m.wkd && ok(m))
    {
        return Ok(own);
    }
    let public: Vec<&Mix> = mixes.iter().filter(|m| m.modes.exitpublic && ok(m)).collect();
    public.choose(rng).copied().ok_or(if rules.is_some() { PathError::Unranked("no exit") } else { PathError::NoExit })
}

/// Chooses a user path of `hops` mixes ending at `exit`.
pub fn choose<'m>(
    mixes: &'m [Mix],
    exit: &'m Mix,
    first: Option<&MixAddress>,
    hops: usize,
    rng: &mut impl Rng,
) -> Result<Vec<&'m Mix>, PathError> {
    choose_ranked(mixes, exit, first, hops, None, rng)
}

/// `choose` with `rules` (none: `None`). A first mix the user names is taken as named;
/// the hop after it must still be allowed to follow it.
pub fn choose_ranked<'m>(
    mixes: &'m [Mix],
    exit: &'m Mix,
    first: Option<&MixAddress>,
    hops: usize,
    rules: Option<&Rules>,
    rng: &mut impl Rng,
) -> Result<Vec<&'m Mix>, PathError> {
    if hops < MIN_HOPS {
        return Err(PathError::TooFewHops);
    }
    let middlemen: Vec<&Mix> =
        mixes.iter().filter(|m| m.modes.middleman && rules.is_none_or(|r| r.hop(m, false))).collect();
    let pair = |a: &Mix, b: &Mix| a.address != b.address && rules.is_none_or(|r| r.pair(a, b));
    let first = match first {
        Some(f) => {
            let m = mixes.iter().find(|m| &m.address == f).ok_or_else(|| PathError::UnknownFirstMix(f.clone()))?;
            if !m.modes.middleman {
                return Err(PathError::FirstMixNotMiddleman(f.clone()));
            }
            Some(m)
        }
        None => None,
    };
    // Chosen backwards from the exit, each hop differing from its successor (and the second
    // hop from a fixed first one). A random choice can corner itself with very few mixes
    // (a b a b is the only path with two), so a bounded number of fresh attempts is made.
    'attempt: for _ in 0..64 {
        let mut rev: Vec<&Mix> = vec![exit];
        let free = hops - 1 - usize::from(first.is_some());
        for i in 0..free {
            let next = rev.last().expect("path holds the exit");
            let is_second = first.is_some() && i == free - 1;
            let candidates: Vec<&&Mix> = middlemen
                .iter()
                .filter(|m| pair(m, next) && !(is_second && first.is_some_and(|f| !pair(f, m))))
                .collect();
            match candidates.choose(rng) {
                Some(m) => rev.push(m),
                None => continue 'attempt,
            }
        }
        if let Some(f) = first {
            if rev.last().is_some_and(|m| !pair(f, m)) {
                continue;
            }
            rev.push(f);
        }
        rev.reverse();
        return Ok(rev);
    }
    Err(if rules.is_some() { PathError::Unranked("too few middleman mixes") } else { PathError::NoMiddleman })
}

/// A dummy's path: one to four random mixes, never the same twice in a row (thesis 6.6).
/// Every hop but the last must offer middleman (the last destroys the dummy whatever its
/// modes); with too few mixes the path is shorter.
pub fn choose_dummy<'m>(mixes: &'m [Mix], rng: &mut impl Rng) -> Vec<&'m Mix> {
    choose_dummy_ranked(mixes, None, rng)
}

/// A dummy's path over the mixes `rules` allow as hops (pairs are not checked: a dummy
/// is destroyed at its end, only its dying early matters). With none allowed, the path is
/// as `choose_dummy`'s: dummies must flow whatever the rankings.
pub fn choose_dummy_ranked<'m>(mixes: &'m [Mix], rules: Option<&Rules>, rng: &mut impl Rng) -> Vec<&'m Mix> {
    if let Some(r) = rules {
        let allowed: Vec<usize> = (0..mixes.len()).filter(|&i| r.hop(&mixes[i], false)).collect();
        if !allowed.is_empty() {
            return dummy_over(&allowed.iter().map(|&i| &mixes[i]).collect::<Vec<_>>(), rng);
        }
    }
    dummy_over(&mixes.iter().collect::<Vec<_>>(), rng)
}

fn dummy_over<'m>(mixes: &[&'m Mix], rng: &mut impl Rng) -> Vec<&'m Mix> {
    let hops = rng.random_range(1..=4);
    let mut path: Vec<&Mix> = Vec::with_capacity(hops);
    for i in 0..hops {
        let prev = path.last().map(|m| &m.address);
        let last = i == hops - 1;
        let candidates: Vec<&Mix> =
            mixes.iter().copied().filter(|m| Some(&m.address) != prev && (last || m.modes.middleman)).collect();
        match candidates.choose(rng) {
            Some(m) => path.push(m),
            None => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mixes::keys, mixes::modes::Modes};
    use std::time::SystemTime;

    fn dir(spec: &[(&str, &str)]) -> Vec<Mix> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        spec.iter()
            .map(|(fqdn, modes)| {
                let c = keys::generate(
                    "M",
                    &Modes::parse(modes).unwrap(),
                    &MixAddress::for_fqdn(fqdn).unwrap(),
                    now,
                    keys::SUBKEY_VALIDITY,
                )
                .unwrap();
                let mut m = crate::mixes::directory::check(&c, now).unwrap();
                m.wkd = true;
                m
            })
            .collect()
    }

    #[test]
    fn the_recipient_domain_exit_needs_its_domain_word() {
        let mut mixes =
            dir(&[("a.test", "middleman,exitpublic"), ("b.test", "middleman"), ("rcpt.test", "middleman,exitpublic")]);
        mixes[2].wkd = false;
        let mut rng = rand::rng();
        let picks: std::collections::BTreeSet<&str> =
            (0..200).map(|_| choose_exit(&mixes, "rcpt.test", &mut rng).unwrap().address.fqdn()).collect();
        assert_eq!(
            picks,
            ["a.test", "rcpt.test"].into(),
            "without WKD the domain's mix is one exitpublic exit among others"
        );
        mixes[2].wkd = true;
        assert!((0..50).all(|_| choose_exit(&mixes, "rcpt.test", &mut rng).unwrap().address.fqdn() == "rcpt.test"));
    }

    #[test]
    fn rules_hold_over_many_draws() {
        let mixes = dir(&[
            ("a.test", "middleman,exitpublic"),
            ("b.test", "middleman"),
            ("c.test", "middleman,exitpublic"),
            ("rcpt.test", "exitprivate"),
            ("e.test", "middleman"),
        ]);
        let mut rng = rand::rng();
        let first = MixAddress::for_fqdn("b.test").unwrap();
        for hops in 4..8 {
            for _ in 0..200 {
                let exit = choose_exit(&mixes, "rcpt.test", &mut rng).unwrap();
                assert_eq!(exit.address.fqdn(), "rcpt.test", "recipient's own exit is last");
                let p = choose(&mixes, exit, Some(&first), hops, &mut rng).unwrap();
                assert_eq!(p.len(), hops);
                assert_eq!(p[0].address, first);
                assert!(p.windows(2).all(|w| w[0].address != w[1].address));
                assert!(p[..hops - 1].iter().all(|m| m.modes.middleman));
                let exit = choose_exit(&mixes, "elsewhere.test", &mut rng).unwrap();
                assert!(exit.modes.exitpublic);
            }
        }
    }

    fn rank(m: &mut Mix, rel: f64, hours: u64) {
        m.standing = Some(crate::mixes::pingers::Standing {
            reliability: rel,
            latency: Duration::from_secs(hours * 3600),
            broken_next: vec![],
            pingers: 1,
        });
    }

    #[test]
    fn ranked_paths_keep_to_the_rules() {
        let mut rng = rand::rng();
        let r = Rules::default();
        // a, b, c good; d dead; e slow; f unranked; g good but one operator with c;
        // h (exit) at 98.5 %: a hop, never an exit.
        let mut mixes = dir(&[
            ("a.test", "middleman,exitpublic"),
            ("b.test", "middleman"),
            ("mix.c.test", "middleman"),
            ("d.test", "middleman,exitpublic"),
            ("e.test", "middleman"),
            ("f.test", "middleman,exitpublic"),
            ("other.c.test", "middleman"),
            ("h.test", "middleman,exitpublic"),
        ]);
        for (i, rel, h) in
            [(0, 0.999, 1), (1, 0.99, 2), (2, 0.98, 1), (3, 0.0, 0), (4, 1.0, 37), (6, 1.0, 1), (7, 0.985, 1)]
        {
            rank(&mut mixes[i], rel, h);
        }
        let b_fpr = mixes[1].cert.fingerprint();
        mixes[0].standing.as_mut().unwrap().broken_next.push(b_fpr);
        assert_eq!(operator(&mixes[2].address), "c.test");
        assert_eq!(operator(&mixes[2].address), operator(&mixes[6].address));
        for _ in 0..300 {
            let exit = choose_exit_ranked(&mixes, "x.test", Some(&r), &mut rng).unwrap();
            assert_eq!(exit.address.fqdn(), "a.test", "the only exit at 99 % or more");
            let p = choose_ranked(&mixes, exit, None, 5, Some(&r), &mut rng).unwrap();
            let names: Vec<&str> = p.iter().map(|m| m.address.fqdn()).collect();
            assert!(
                names.iter().all(|n| ["a.test", "b.test", "mix.c.test", "other.c.test", "h.test"].contains(n)),
                "{names:?}"
            );
            assert!(p.windows(2).all(|w| operator(&w[0].address) != operator(&w[1].address)), "{names:?}");
            assert!(
                p.windows(2).all(|w| !(w[0].address.fqdn() == "a.test" && w[1].address.fqdn() == "b.test")),
                "broken chain: {names:?}"
            );
        }
        // Without rules, as before: every mix goes.
        let seen: std::collections::BTreeSet<&str> =
            (0..300).map(|_| choose_exit(&mixes, "x.test", &mut rng).unwrap().address.fqdn()).collect();
        assert_eq!(seen.len(), 4);
        // Nothing passes: a typed error, not a silent fallback.
        let strict = Rules { min_exit_reliability: 1.0, ..Rules::default() };
        assert_eq!(
            choose_exit_ranked(&mixes, "x.test", Some(&strict), &mut rng).unwrap_err(),
            PathError::Unranked("no exit")
        );
        let few = &mixes[..2];
        let exit = &few[0];
        assert_eq!(
            choose_ranked(few, exit, None, 4, Some(&r), &mut rng).unwrap_err(),
            PathError::Unranked("too few middleman mixes")
        );
        // Dummies avoid mixes below the minimum while there are others, and flow anyway.
        for _ in 0..300 {
            let d = choose_dummy_ranked(&mixes, Some(&r), &mut rng);
            assert!(d.iter().all(|m| r.hop(m, false)), "{:?}", d.iter().map(|m| m.address.fqdn()).collect::<Vec<_>>());
        }
        let dead = &mixes[3..4];
        assert_eq!(choose_dummy_ranked(dead, Some(&r), &mut rng)[0].address.fqdn(), "d.test");
    }

    #[test]
    fn impossible_paths_are_errors() {
        let mut rng = rand::rng();
        let only_one = dir(&[("a.test", "middleman,exitpublic")]);
        let exit = choose_exit(&only_one, "x.test", &mut rng).unwrap();
        assert_eq!(choose(&only_one, exit, None, 4, &mut rng).unwrap_err(), PathError::NoMiddleman);
        assert_eq!(choose(&only_one, exit, None, 3, &mut rng).unwrap_err(), PathError::TooFewHops);
        let no_exit = dir(&[("a.test", "middleman"), ("b.test", "middleman")]);
        assert_eq!(choose_exit(&no_exit, "x.test", &mut rng).unwrap_err(), PathError::NoExit);
        let two = dir(&[("a.test", "middleman,exitpublic"), ("b.test", "middleman")]);
        let exit = &two[0];
        let unknown = MixAddress::for_fqdn("z.test").unwrap();
        assert_eq!(choose(&two, exit, Some(&unknown), 4, &mut rng).unwrap_err(), PathError::UnknownFirstMix(unknown));
        // Two mixes: b a b a is the only path, and it is always found.
        for _ in 0..100 {
            let p = choose(&two, exit, None, 4, &mut rng).unwrap();
            let names: Vec<&str> = p.iter().map(|m| m.address.fqdn()).collect();
            assert_eq!(names, ["b.test", "a.test", "b.test", "a.test"]);
        }
        // With b fixed first and b the only other middleman, a b a b a is forced too.
        let b = MixAddress::for_fqdn("b.test").unwrap();
        assert!(choose(&two, exit, Some(&b), 4, &mut rng).is_ok());
    }
}
