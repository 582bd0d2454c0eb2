//! The thesis' ranking (5.5, 6.3.3; issue 14): a pinger, a neutral instance, certifies the
//! user id of each mix key it measures with its own OpenPGP key. The certification is
//! short-lived (`VALIDITY`), carries what was measured as notations, and its signature type
//! is the level. It travels with the mix key through keyservers, so stock OpenPGP tools show
//! it (`gpg --check-sigs`) and any client can rank mixes by the pingers it trusts.
//!
//! Notations (hashed area, human-readable, not critical; one each unless said):
//! - `reliability@mixtasy.org`: the 12-day reliability in percent with two decimals, `"99.25"`;
//! - `latency@mixtasy.org`: the median latency in whole seconds, `"1830"`;
//! - `pings@mixtasy.org`: how many pings the figures rest on, `"142"`;
//! - `broken-next@mixtasy.org`, any number: the fingerprint (40 upper-case hex digits) of a
//!   mix B such that the chain this mix, then B, was found broken.
//!
//! The level (`level`): positive certification (0x13) from 99 % reliability, casual (0x12)
//! from 95 %, persona (0x11) from 80 %, generic (0x10) below. The names come from a domain
//! nobody else uses for OpenPGP notations; the strings are the protocol, not the domain.

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use openpgp::packet::signature::subpacket::NotationDataFlags;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::Signature;
use openpgp::policy::StandardPolicy;
use openpgp::types::SignatureType;
use openpgp::{Cert, Fingerprint};
use sequoia_openpgp as openpgp;

/// How long a certification holds: a pinger that stops publishing stops vouching within days.
pub const VALIDITY: Duration = Duration::from_secs(3 * 86400);

pub const RELIABILITY: &str = "reliability@mixtasy.org";
pub const LATENCY: &str = "latency@mixtasy.org";
pub const PINGS: &str = "pings@mixtasy.org";
pub const BROKEN_NEXT: &str = "broken-next@mixtasy.org";

/// What a pinger measured of one mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// 0.0 to 1.0 over the last 12 days.
    pub reliability: f64,
    /// Median latency of the returned pings.
    pub latency: Duration,
    /// How many pings the figures rest on.
    pub pings: u32,
    /// Mixes B for which the chain (this mix, B) is broken.
    pub broken_next: Vec<Fingerprint>,
}

/// A ranking as found on a mix key, with who made it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Certified {
    pub ranking: Ranking,
    pub level: SignatureType,
    pub pinger: Fingerprint,
    pub created: SystemTime,
}

/// The certification level for a reliability.
pub fn level(reliability: f64) -> SignatureType {
    match reliability {
        r if r >= 0.99 => SignatureType::PositiveCertification,
        r if r >= 0.95 => SignatureType::CasualCertification,
        r if r >= 0.80 => SignatureType::PersonaCertification,
        _ => SignatureType::GenericCertification,
    }
}

/// Certifies the (one) user id of `mix` with `pinger`'s primary key (which must hold its
/// secret), valid from `now` for `validity`. Returns the signature; merge it into the mix
/// key (`Cert::insert_packets`) to upload.
pub fn certify(pinger: &Cert, mix: &Cert, ranking: &Ranking, now: SystemTime, validity: Duration) -> Result<Signature> {
    if !(0.0..=1.0).contains(&ranking.reliability) {
        return Err(anyhow!("reliability {} is not between 0 and 1", ranking.reliability));
    }
    let uid = mix.userids().next().ok_or_else(|| anyhow!("the mix key has no user id"))?;
    let mut signer = pinger
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .context("the pinger key has no secret primary key")?
        .into_keypair()?;
    let flags = NotationDataFlags::empty().set_human_readable();
    let mut b = SignatureBuilder::new(level(ranking.reliability))
        .set_signature_creation_time(now)?
        .set_signature_validity_period(validity)?
        .add_notation(RELIABILITY, format!("{:.2}", ranking.reliability * 100.0), flags.clone(), false)?
        .add_notation(LATENCY, ranking.latency.as_secs().to_string(), flags.clone(), false)?
        .add_notation(PINGS, ranking.pings.to_string(), flags.clone(), false)?;
    for fpr in &ranking.broken_next {
        b = b.add_notation(BROKEN_NEXT, fpr.to_hex(), flags.clone(), false)?;
    }
    b.sign_userid_binding(&mut signer, mix.primary_key().key(), uid.userid()).context("certifying the mix key")
}

/// The newest certification by `pinger` on `mix`'s user id that is valid at `now` and
/// carries well-formed notations, read back into a ranking. `None` when there is none:
/// a forged, expired, future or malformed certification counts as no word at all.
pub fn read(pinger: &Cert, mix: &Cert, now: SystemTime) -> Option<Certified> {
    newest(pinger, mix, now).map(|(_, c)| c)
}

/// `read`, with the certification itself: what a directory keeps of a pinger's word.
pub fn newest<'a>(pinger: &Cert, mix: &'a Cert, now: SystemTime) -> Option<(&'a Signature, Certified)> {
    let policy = StandardPolicy::new();
    let signer = pinger.primary_key().key();
    let handle = signer.key_handle();
    let mut best: Option<(&'a Signature, Certified)> = None;
    for ua in mix.userids() {
        for sig in ua.certifications() {
            let created = match sig.signature_creation_time() {
                Some(t) if t <= now + Duration::from_secs(60) => t,
                _ => continue,
            };
            if !sig.get_issuers().iter().any(|i| i.aliases(&handle))
                || sig.signature_alive(now, Duration::from_secs(60)).is_err()
                || openpgp::policy::Policy::signature(
                    &policy,
                    sig,
                    openpgp::policy::HashAlgoSecurity::CollisionResistance,
                )
                .is_err()
                || sig.verify_userid_binding(signer, mix.primary_key().key(), ua.userid()).is_err()
            {
                continue;
            }
            let Some(ranking) = parse(sig) else { continue };
            if best.as_ref().is_none_or(|(_, b)| b.created < created) {
                best = Some((sig, Certified { ranking, level: sig.typ(), pinger: pinger.fingerprint(), created }));
            }
        }
    }
    best
}

/// The notations of a certification, or `None` when one is missing or malformed.
fn parse(sig: &Signature) -> Option<Ranking> {
    fn one<'a>(sig: &'a Signature, name: &'static str) -> Option<&'a str> {
        let mut it = sig.notation(name);
        let v = it.next()?;
        it.next().is_none().then(|| std::str::from_utf8(v).ok()).flatten()
    }
    let percent: f64 = one(sig, RELIABILITY)?.parse().ok().filter(|p: &f64| (0.0..=100.0).contains(p))?;
    let latency = Duration::from_secs(one(sig, LATENCY)?.parse().ok()?);
    let pings = one(sig, PINGS)?.parse().ok()?;
    let broken_next = sig
        .notation(BROKEN_NEXT)
        .map(|v| std::str::from_utf8(v).ok().and_then(|s| s.parse::<Fingerprint>().ok()))
        .collect::<Option<Vec<_>>>()?;
    Some(Ranking { reliability: percent / 100.0, latency, pings, broken_next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixes::address::MixAddress;
    use crate::mixes::keys;
    use crate::mixes::modes::Modes;
    use openpgp::cert::CertBuilder;

    fn pinger() -> Cert {
        CertBuilder::new().add_userid("pinger <pinger@ping.test>").generate().unwrap().0
    }

    fn mix(now: SystemTime) -> Cert {
        let a = MixAddress::for_fqdn("a.test").unwrap();
        keys::generate("a", &Modes::parse("middleman").unwrap(), &a, now, Duration::from_secs(2 * 86400)).unwrap()
    }

    fn ranking() -> Ranking {
        Ranking {
            reliability: 0.9925,
            latency: Duration::from_secs(1830),
            pings: 142,
            broken_next: vec!["C20648DA788847EF52CAA9DDE5C35747BA145A04".parse().unwrap()],
        }
    }

    fn with(mix: &Cert, sig: Signature) -> Cert {
        mix.clone().insert_packets(sig).unwrap().0
    }

    #[test]
    fn a_certification_reads_back_with_its_level() {
        let now = SystemTime::now();
        let (p, m) = (pinger(), mix(now));
        let c = with(&m, certify(&p, &m, &ranking(), now, VALIDITY).unwrap());
        let got = read(&p, &c, now + Duration::from_secs(3600)).unwrap();
        assert_eq!(got.ranking, ranking());
        assert_eq!(got.level, SignatureType::PositiveCertification);
        assert_eq!(got.pinger, p.fingerprint());
        assert_eq!(level(0.96), SignatureType::CasualCertification);
        assert_eq!(level(0.5), SignatureType::GenericCertification);
    }

    #[test]
    fn expired_foreign_and_forged_certifications_count_for_nothing() {
        let now = SystemTime::now();
        let (p, m) = (pinger(), mix(now));
        let c = with(&m, certify(&p, &m, &ranking(), now, VALIDITY).unwrap());
        // Expired.
        assert!(read(&p, &c, now + VALIDITY + Duration::from_secs(120)).is_none());
        // Another pinger's word is not this pinger's.
        assert!(read(&pinger(), &c, now).is_none());
        // A certification over another key's user id, moved onto this key, does not verify.
        let other = mix(now);
        let moved = with(&m, certify(&p, &other, &ranking(), now, VALIDITY).unwrap());
        assert!(read(&p, &moved, now).is_none());
        // An impostor key with the pinger's user id is not the pinger.
        let impostor = CertBuilder::new().add_userid("pinger <pinger@ping.test>").generate().unwrap().0;
        let forged = with(&m, certify(&impostor, &m, &ranking(), now, VALIDITY).unwrap());
        assert!(read(&p, &forged, now).is_none());
    }

    #[test]
    fn the_newest_of_several_certifications_wins() {
        let now = SystemTime::now();
        let (p, m) = (pinger(), mix(now));
        let mut older = ranking();
        older.reliability = 0.5;
        let c = with(&m, certify(&p, &m, &older, now, VALIDITY).unwrap());
        let later = now + Duration::from_secs(7200);
        let c = with(&c, certify(&p, &m, &ranking(), later, VALIDITY).unwrap());
        assert_eq!(read(&p, &c, later).unwrap().ranking, ranking());
        assert!(certify(&p, &m, &Ranking { reliability: 1.5, ..ranking() }, now, VALIDITY).is_err());
    }
}
