//! Path selection (D7, thesis 6.1.3): which mixes a message crosses, in order.
//!
//! At least four hops for user mail; a mix of the recipient's domain with an exit mode is
//! the last hop when that domain vouches for its key in its Web Key Directory (`Mix::wkd`,
//! looked up when the directory learned the key, never at send time); a sender-chosen first mix is the first; never the same mix twice in a row;
//! middle hops offer `middleman`, the last an exit mode (`exitprivate` only for its own
//! domain). Dummies use one to four random mixes.

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::mixes::address::MixAddress;
use crate::mixes::directory::Mix;

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
}

/// Chooses the exit for a recipient domain: its own mix if it runs an exit and the domain
/// vouches for the mix's key (WKD), else a random `exitpublic` mix. Without the domain's
/// word, whoever can receive mail at `mixtasy@<freemail domain>` would become the exit for
/// every recipient there.
pub fn choose_exit<'m>(mixes: &'m [Mix], recipient_domain: &str, rng: &mut impl Rng) -> Result<&'m Mix, PathError> {
    if let Some(own) = mixes.iter().find(|m| m.address.fqdn().eq_ignore_ascii_case(recipient_domain) && m.modes.exit() && m.wkd) {
        return Ok(own);
    }
    let public: Vec<&Mix> = mixes.iter().filter(|m| m.modes.exitpublic).collect();
    public.choose(rng).copied().ok_or(PathError::NoExit)
}

/// Chooses a user path of `hops` mixes ending at `exit`.
pub fn choose<'m>(
    mixes: &'m [Mix],
    exit: &'m Mix,
    first: Option<&MixAddress>,
    hops: usize,
    rng: &mut impl Rng,
) -> Result<Vec<&'m Mix>, PathError> {
    if hops < MIN_HOPS {
        return Err(PathError::TooFewHops);
    }
    let middlemen: Vec<&Mix> = mixes.iter().filter(|m| m.modes.middleman).collect();
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
                .filter(|m| m.address != next.address && !(is_second && Some(&m.address) == first.map(|f| &f.address)))
                .collect();
            match candidates.choose(rng) {
                Some(m) => rev.push(m),
                None => continue 'attempt,
            }
        }
        if let Some(f) = first {
            if rev.last().is_some_and(|m| m.address == f.address) {
                continue;
            }
            rev.push(f);
        }
        rev.reverse();
        return Ok(rev);
    }
    Err(PathError::NoMiddleman)
}

/// A dummy's path: one to four random mixes, never the same twice in a row (thesis 6.6).
/// Every hop but the last must offer middleman (the last destroys the dummy whatever its
/// modes); with too few mixes the path is shorter.
pub fn choose_dummy<'m>(mixes: &'m [Mix], rng: &mut impl Rng) -> Vec<&'m Mix> {
    let hops = rng.random_range(1..=4);
    let mut path: Vec<&Mix> = Vec::with_capacity(hops);
    for i in 0..hops {
        let prev = path.last().map(|m| &m.address);
        let last = i == hops - 1;
        let candidates: Vec<&Mix> = mixes.iter().filter(|m| Some(&m.address) != prev && (last || m.modes.middleman)).collect();
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
    use std::time::{Duration, SystemTime};

    fn dir(spec: &[(&str, &str)]) -> Vec<Mix> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        spec.iter()
            .map(|(fqdn, modes)| {
                let c = keys::generate("M", &Modes::parse(modes).unwrap(), &MixAddress::for_fqdn(fqdn).unwrap(), now, keys::SUBKEY_VALIDITY).unwrap();
                let mut m = crate::mixes::directory::check(&c, now).unwrap();
                m.wkd = true;
                m
            })
            .collect()
    }

    #[test]
    fn the_recipient_domain_exit_needs_its_domain_word() {
        let mut mixes = dir(&[("a.test", "middleman,exitpublic"), ("b.test", "middleman"), ("rcpt.test", "middleman,exitpublic")]);
        mixes[2].wkd = false;
        let mut rng = rand::rng();
        let picks: std::collections::BTreeSet<&str> = (0..200).map(|_| choose_exit(&mixes, "rcpt.test", &mut rng).unwrap().address.fqdn()).collect();
        assert_eq!(picks, ["a.test", "rcpt.test"].into(), "without WKD the domain's mix is one exitpublic exit among others");
        mixes[2].wkd = true;
        assert!((0..50).all(|_| choose_exit(&mixes, "rcpt.test", &mut rng).unwrap().address.fqdn() == "rcpt.test"));
    }

    #[test]
    fn rules_hold_over_many_draws() {
        let mixes = dir(&[("a.test", "middleman,exitpublic"), ("b.test", "middleman"), ("c.test", "middleman,exitpublic"), ("rcpt.test", "exitprivate"), ("e.test", "middleman")]);
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
