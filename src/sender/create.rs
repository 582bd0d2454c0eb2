//! Creating a mix message (D7, thesis 6.2): the original wrapped in a final mix message,
//! then one layer per hop from the exit outwards, the outermost padded to `OUTER`.
//!
//! Used by the sender's `mixtasy create` and by the node for its dummies. Everything is
//! built in memory first, so an error writes nothing.

use std::time::SystemTime;

use anyhow::{anyhow, Result};
use rand::{CryptoRng, Rng};

use crate::format::layer;
use crate::format::message::{self, Kind};
use crate::format::sizes::OUTER;
use crate::format::wire;
use crate::mixes::address::MixAddress;
use crate::mixes::directory::Mix;
use crate::sender::path;

/// What the sender may choose.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sender's own provider's mix, first on every path.
    pub first_mix: Option<MixAddress>,
    /// Hops per path (at least `path::MIN_HOPS`).
    pub hops: usize,
    /// Largest original accepted; larger ones are refused rather than sent as a flood.
    pub max_size: usize,
    /// Copies of every part, each over its own random path to the one exit (at least 1):
    /// the exit delivers whichever arrives first (`copies`), so one dead mix loses nothing.
    pub copies: usize,
    /// The trusted pingers' rules paths must follow (`None`: no pinger trusted, every mix
    /// goes, as before issue 14).
    pub rules: Option<path::Rules>,
    /// When no path follows `rules`, make one without them rather than fail.
    pub relax: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            first_mix: None,
            hops: path::MIN_HOPS,
            max_size: DEFAULT_MAX_SIZE,
            copies: 1,
            rules: None,
            relax: false,
        }
    }
}

/// Most copies `--copies` may ask for: each is a full set of wire messages.
pub const MAX_COPIES: usize = 8;

/// Default largest original: 2 MiB, about 105 parts of 41 KB on the wire.
pub const DEFAULT_MAX_SIZE: usize = 2 * 1024 * 1024;

/// One mail ready for `sendmail -i -t`.
#[derive(Debug, Clone)]
pub struct WireMessage {
    pub to: MixAddress,
    pub mail: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    #[error("the original message has no To: recipient")]
    NoRecipient,
    #[error("the original message is {size} bytes, more than the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("copies must be between 1 and {MAX_COPIES}")]
    Copies,
}

/// The domain of the first To: address of an original (RFC 5322 parsing).
pub fn recipient_domain(original: &[u8]) -> Result<String, CreateError> {
    let (headers, _) = mailparse::parse_headers(original).map_err(|_| CreateError::NoRecipient)?;
    use mailparse::MailHeaderMap;
    headers
        .get_all_headers("To")
        .into_iter()
        .flat_map(crate::mixes::address::header_addresses)
        .find_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).filter(|d| !d.is_empty()))
        .ok_or(CreateError::NoRecipient)
}

/// Splits an original into final-message payloads: one singlepart, or `n` multipart parts
/// sized so that every `Part: i/n` header fits.
pub fn split<'a>(original: &'a [u8], id: &str) -> Vec<(Kind, &'a [u8])> {
    if original.len() <= message::capacity(id, Kind::Singlepart) {
        return vec![(Kind::Singlepart, original)];
    }
    let mut n = 2u32;
    loop {
        let cap = message::capacity(id, Kind::Multipart { part: n, total: n });
        let need = original.len().div_ceil(cap) as u32;
        if need <= n {
            return original
                .chunks(cap)
                .enumerate()
                .map(|(i, c)| (Kind::Multipart { part: i as u32 + 1, total: need }, c))
                .collect();
        }
        n = need;
    }
}

/// Wraps one revealed final mix message in layers along `path` (first hop first).
/// `sender` is the From of the outermost mail: `None` for a user (its MTA adds one), the
/// mix's own address for a dummy.
pub fn wrap(
    final_message: Vec<u8>,
    path: &[&Mix],
    sender: Option<&MixAddress>,
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<WireMessage> {
    let mut revealed = final_message;
    for (i, mix) in path.iter().enumerate().rev() {
        let key = mix.newest_valid_subkey(now).ok_or_else(|| anyhow!("mix {} has no valid subkey", mix.address))?;
        let pad = if i == 0 { Some(OUTER) } else { None };
        let layer = layer::seal(&revealed, key, pad, rng)?;
        if i == 0 {
            return Ok(WireMessage { to: mix.address.clone(), mail: wire::build(sender, &mix.address, &layer) });
        }
        revealed = message::build_intermediate(&path[i - 1].address, &mix.address, &layer);
    }
    Err(anyhow!("empty path"))
}

/// How long a mix's newest subkey should stay valid for a path to prefer it: pools delay a
/// message for hours at each hop, and a layer for an expired subkey is destroyed.
pub const PREFERRED_SUBKEY_LIFE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Creates the wire messages for one original (several if it is multipart). Parts share
/// the Mixtasy-ID and the exit; their other hops are chosen independently. Mixes whose
/// newest subkey expires within `PREFERRED_SUBKEY_LIFE` are used only if no path can be
/// made without them. With `rules`, no path that breaks them is made: the error says
/// `PathError::Unranked` when only the rules stand in the way, unless `relax` is set, and
/// then a path is made as without them.
pub fn create(
    original: &[u8],
    mixes: &[Mix],
    opts: &Options,
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<Vec<WireMessage>> {
    if opts.copies == 0 || opts.copies > MAX_COPIES {
        return Err(CreateError::Copies.into());
    }
    if original.len() > opts.max_size {
        return Err(CreateError::TooLarge { size: original.len(), max: opts.max_size }.into());
    }
    let Some(rules) = &opts.rules else { return create_lasting(original, mixes, opts, None, now, rng) };
    match create_lasting(original, mixes, opts, Some(rules), now, rng) {
        Err(e) if e.is::<path::PathError>() => {
            // Whether the rules alone stand in the way: then say so, or relax if asked.
            let without = create_lasting(original, mixes, opts, None, now, rng)?;
            if opts.relax {
                Ok(without)
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

fn create_lasting(
    original: &[u8],
    mixes: &[Mix],
    opts: &Options,
    rules: Option<&path::Rules>,
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<Vec<WireMessage>> {
    let lasting: Vec<Mix> = mixes
        .iter()
        .filter(|m| m.newest_expiry(now).is_none_or(|e| e >= now + PREFERRED_SUBKEY_LIFE))
        .cloned()
        .collect();
    if lasting.len() < mixes.len() {
        if let Ok(out) = create_with(original, &lasting, opts, rules, now, rng) {
            return Ok(out);
        }
    }
    create_with(original, mixes, opts, rules, now, rng)
}

fn create_with(
    original: &[u8],
    mixes: &[Mix],
    opts: &Options,
    rules: Option<&path::Rules>,
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<Vec<WireMessage>> {
    let domain = recipient_domain(original)?;
    let exit = path::choose_exit_ranked(mixes, &domain, rules, rng)?;
    let id = message::new_id(rng);
    let mut out = Vec::new();
    for (kind, payload) in split(original, &id) {
        let mut firsts: Vec<&MixAddress> = Vec::new();
        for _ in 0..opts.copies {
            let hops = copy_path(mixes, exit, opts, rules, &firsts, rng)?;
            firsts.push(&hops[0].address);
            let fin = message::build_final(&id, kind, payload, rng);
            out.push(wrap(fin, &hops, None, now, rng)?);
        }
    }
    Ok(out)
}

/// A path for one copy of a part: independent of the other copies' paths, but starting at
/// a mix none of them starts at when the directory allows (a few fresh draws), so that one
/// dead first mix cannot hold every copy.
fn copy_path<'m>(
    mixes: &'m [Mix],
    exit: &'m Mix,
    opts: &Options,
    rules: Option<&path::Rules>,
    firsts: &[&MixAddress],
    rng: &mut impl Rng,
) -> Result<Vec<&'m Mix>> {
    let mut hops = path::choose_ranked(mixes, exit, opts.first_mix.as_ref(), opts.hops, rules, rng)?;
    for _ in 0..16 {
        if !firsts.contains(&&hops[0].address) {
            break;
        }
        hops = path::choose_ranked(mixes, exit, opts.first_mix.as_ref(), opts.hops, rules, rng)?;
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes() {
        let id = "<0123456789abcdef0123456789abcdef@mixtasy>";
        let cap1 = message::capacity(id, Kind::Singlepart);
        assert_eq!(split(&vec![0u8; cap1], id).len(), 1);
        let just_over = vec![0u8; cap1 + 1];
        assert_eq!(split(&just_over, id).len(), 2);
        let big = vec![1u8; 100 * 1024];
        let parts = split(&big, id);
        let total = parts.len() as u32;
        assert_eq!(parts.iter().map(|p| p.1.len()).sum::<usize>(), big.len());
        for (i, (k, p)) in parts.iter().enumerate() {
            assert_eq!(*k, Kind::Multipart { part: i as u32 + 1, total });
            assert!(p.len() <= message::capacity(id, *k));
        }
    }

    #[test]
    fn paths_prefer_subkeys_that_last() {
        use crate::{mixes::address::MixAddress, mixes::directory, mixes::keys, mixes::modes::Modes};
        use std::time::Duration;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let modes = Modes::parse("middleman,exitpublic").unwrap();
        let mix = |fqdn: &str, created: SystemTime| {
            let c = keys::generate("M", &modes, &MixAddress::for_fqdn(fqdn).unwrap(), created, keys::SUBKEY_VALIDITY)
                .unwrap();
            directory::check(&c, now).unwrap()
        };
        // e.test's only subkey expires in one hour; the others were made just now.
        let mut mixes: Vec<Mix> = ["a.test", "b.test", "c.test", "d.test"].iter().map(|f| mix(f, now)).collect();
        mixes.push(mix("e.test", now - keys::SUBKEY_VALIDITY + Duration::from_secs(3600)));
        let mut rng = rand::rng();
        for _ in 0..40 {
            let w = create(b"To: bob@x.test\r\n\r\nhi", &mixes, &Options::default(), now, &mut rng).unwrap();
            assert_ne!(w[0].to.fqdn(), "e.test", "a short-lived mix was chosen though others last");
        }
        // With only short-lived mixes left for a path, they are still used.
        let short: Vec<Mix> = ["p.test", "q.test", "r.test"]
            .iter()
            .map(|f| mix(f, now - keys::SUBKEY_VALIDITY + Duration::from_secs(3600)))
            .collect();
        assert!(create(b"To: bob@x.test\r\n\r\nhi", &short, &Options::default(), now, &mut rng).is_ok());
    }

    #[test]
    fn copies_share_id_and_exit_and_start_apart() {
        use crate::{mixes::address::MixAddress, mixes::directory, mixes::keys, mixes::modes::Modes, node::peel};
        use std::time::Duration;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let modes = Modes::parse("middleman,exitpublic").unwrap();
        let certs: Vec<_> = ["a.test", "b.test", "c.test", "d.test", "e.test"]
            .iter()
            .map(|f| {
                keys::generate("M", &modes, &MixAddress::for_fqdn(f).unwrap(), now, keys::SUBKEY_VALIDITY).unwrap()
            })
            .collect();
        let mixes: Vec<Mix> =
            certs.iter().map(|c| directory::check(&c.clone().strip_secret_key_material(), now).unwrap()).collect();
        let mut rng = rand::rng();
        let opts = Options { copies: 3, ..Options::default() };
        let w = create(b"To: bob@x.test\r\n\r\nhi", &mixes, &opts, now, &mut rng).unwrap();
        assert_eq!(w.len(), 3);
        let firsts: std::collections::BTreeSet<_> = w.iter().map(|m| m.to.clone()).collect();
        assert_eq!(firsts.len(), 3, "with five mixes every copy starts at its own mix");
        // Peel every copy to its end: one Mixtasy-ID, one exit.
        let mut ends = std::collections::BTreeSet::new();
        for m in w {
            let mut mail = m.mail;
            loop {
                let to = MixAddress::parse(&crate::format::wire::parse(&mail).unwrap().to[0]).unwrap();
                let i = mixes.iter().position(|x| x.address == to).unwrap();
                let ring = keys::KeyRing::from_cert(&certs[i], Duration::ZERO).unwrap();
                let node = peel::Node { address: mixes[i].address.clone(), modes, ring };
                match peel::peel(&mail, &node, now, &mut rng).unwrap().peeled {
                    peel::Peeled::Forward { mail: next, .. } => mail = next,
                    peel::Peeled::Final { id, .. } => {
                        ends.insert((to, id));
                        break;
                    }
                }
            }
        }
        assert_eq!(ends.len(), 1, "copies end at one exit with one id: {ends:?}");
        let zero = Options { copies: 0, ..Options::default() };
        assert!(create(b"To: bob@x.test\r\n\r\nhi", &mixes, &zero, now, &mut rng).is_err());
    }

    #[test]
    fn recipient_required() {
        assert_eq!(recipient_domain(b"Subject: x\r\n\r\nbody").unwrap_err(), CreateError::NoRecipient);
        assert_eq!(recipient_domain(b"To: Bob <bob@Rcpt.Test>\r\n\r\nbody").unwrap(), "rcpt.test");
        assert_eq!(recipient_domain(b"To: undisclosed-recipients:;\r\n\r\n").unwrap_err(), CreateError::NoRecipient);
    }
}
