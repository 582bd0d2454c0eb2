//! The pingers a client or node trusts (issue 14), kept in `HOME/pingers/`: per pinger
//! `<FINGERPRINT>.pgp` (its public key) and, when it publishes one, `<FINGERPRINT>.url`
//! (the base URL of its output: `mlist2.txt`, `pubring.asc`, `pubring.asc.sig`).
//!
//! What a client does with them: a mix's standing is the median of the trusted pingers'
//! rankings (`standing`), so that one pinger, wrong or lying, moves no figure alone; and
//! when a keyserver refuses discovery as too large, the pingers' signed keyrings
//! (`keyring`) stand in for it.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::SignatureType;
use openpgp::{Cert, Fingerprint};
use sequoia_openpgp as openpgp;

use crate::mixes::keyserver::{Keyserver, TooManyResults};
use crate::mixes::ranking;
use crate::util::fsutil;

/// Largest keyring or signature read from a pinger: every mix key many times over.
const MAX_DOWNLOAD: u64 = 32 << 20;

/// One trusted pinger.
#[derive(Debug, Clone)]
pub struct Pinger {
    pub cert: Cert,
    /// Base URL of its published output, if known.
    pub url: Option<String>,
}

/// The trusted pingers of one home.
pub struct Pingers {
    dir: PathBuf,
}

impl Pingers {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Pingers { dir: dir.into() }
    }

    /// Trusts the one public key in `key` (armored or binary), valid at `now` with a primary
    /// that certifies, publishing under `url` (`http://` or `https://`). Trusting it again
    /// replaces its key and URL. Returns its fingerprint.
    pub fn trust(&self, key: &[u8], url: Option<&str>, now: SystemTime) -> Result<Fingerprint> {
        let certs = CertParser::from_bytes(key)
            .and_then(|p| p.collect::<openpgp::Result<Vec<Cert>>>())
            .context("the pinger key is not an OpenPGP certificate")?;
        let [cert] = &certs[..] else { bail!("the pinger key file holds {} certificates, not one", certs.len()) };
        let cert = cert.clone().strip_secret_key_material();
        let policy = StandardPolicy::new();
        let vc = cert.with_policy(&policy, now).context("the pinger key is not valid now")?;
        vc.alive().context("the pinger key is not valid now")?;
        if !vc.primary_key().key_flags().is_some_and(|f| f.for_certification()) {
            bail!("the pinger key's primary key may not certify: it cannot rank mixes");
        }
        if let Some(u) = url {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(char::is_whitespace) {
                bail!("pinger URL `{u}` is not http://… or https://…");
            }
        }
        let fpr = cert.fingerprint();
        fsutil::create_private_dir(&self.dir)?;
        fsutil::write_atomic(&self.dir.join(format!("{fpr:X}.pgp")), &cert.to_vec()?, 0o600)?;
        let url_file = self.dir.join(format!("{fpr:X}.url"));
        match url {
            Some(u) => fsutil::write_atomic(&url_file, format!("{}\n", u.trim_end_matches('/')).as_bytes(), 0o600)?,
            None => match fs::remove_file(&url_file) {
                Ok(()) => fsutil::sync_dir(&self.dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", url_file.display())),
            },
        }
        Ok(fpr)
    }

    /// Every trusted pinger, by fingerprint. A file that no longer parses is an error.
    pub fn list(&self) -> Result<Vec<Pinger>> {
        let mut out = Vec::new();
        for path in fsutil::entries(&self.dir)? {
            if path.extension().is_none_or(|e| e != "pgp") {
                continue;
            }
            let cert = Cert::from_bytes(&fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("reading {}", path.display()))?;
            let url = match fs::read_to_string(path.with_extension("url")) {
                Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.with_extension("url").display())),
            };
            out.push(Pinger { cert, url });
        }
        out.sort_by_key(|p| p.cert.fingerprint());
        Ok(out)
    }

    /// The trusted pingers' keys.
    pub fn certs(&self) -> Result<Vec<Cert>> {
        Ok(self.list()?.into_iter().map(|p| p.cert).collect())
    }
}

/// A mix as the trusted pingers see it together.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// Median over the pingers that rank the mix (0.0 to 1.0).
    pub reliability: f64,
    /// Median latency.
    pub latency: Duration,
    /// Mixes B such that at least half of the pingers ranking this mix found (this, B) broken.
    pub broken_next: Vec<Fingerprint>,
    /// How many trusted pingers rank it.
    pub pingers: usize,
}

/// The median of the rankings of `mix` by `pingers` valid at `now`; `None` when none ranks it.
pub fn standing(pingers: &[Cert], mix: &Cert, now: SystemTime) -> Option<Standing> {
    let rankings: Vec<ranking::Ranking> =
        pingers.iter().filter_map(|p| ranking::read(p, mix, now)).map(|c| c.ranking).collect();
    if rankings.is_empty() {
        return None;
    }
    let reliability = median(rankings.iter().map(|r| r.reliability).collect());
    let latency = Duration::from_secs_f64(median(rankings.iter().map(|r| r.latency.as_secs_f64()).collect()));
    let mut broken_next: Vec<Fingerprint> = Vec::new();
    for fpr in rankings.iter().flat_map(|r| &r.broken_next) {
        let votes = rankings.iter().filter(|r| r.broken_next.contains(fpr)).count();
        if 2 * votes >= rankings.len() && !broken_next.contains(fpr) {
            broken_next.push(fpr.clone());
        }
    }
    Some(Standing { reliability, latency, broken_next, pingers: rankings.len() })
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Downloads `BASE/pubring.asc` and `BASE/pubring.asc.sig` of a pinger and returns the
/// keyring when the detached signature is a valid binary-document signature made by the
/// pinger's primary key at or before `now`. Nothing of the keyring is trusted beyond that:
/// its keys still go through the directory's D8 check and rules.
pub fn keyring(pinger: &Pinger, timeout: Duration, now: SystemTime) -> Result<Vec<u8>> {
    let fpr = pinger.cert.fingerprint();
    let base =
        pinger.url.as_deref().ok_or_else(|| anyhow!("pinger {fpr:X} has no URL (trust it again with --url BASE)"))?;
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let get = |name: &str| -> Result<Vec<u8>> {
        let url = format!("{base}/{name}");
        let mut resp = agent.get(&url).call().with_context(|| format!("{url} did not answer"))?;
        if resp.status().as_u16() != 200 {
            bail!("{url} answered HTTP {}", resp.status().as_u16());
        }
        resp.body_mut().with_config().limit(MAX_DOWNLOAD).read_to_vec().with_context(|| format!("reading {url}"))
    };
    let ring = get("pubring.asc")?;
    let sig = get("pubring.asc.sig")?;
    verify_detached(&pinger.cert, &ring, &sig, now)
        .with_context(|| format!("{base}/pubring.asc.sig is no valid signature of pubring.asc by pinger {fpr:X}"))?;
    Ok(ring)
}

/// Discovery's answer (D8, issue 14): the keyserver's, or, when it refuses the search as
/// too large, the keyrings of every trusted pinger with a URL.
pub enum Answer {
    /// The keyserver's answer (`None`: it has no mix key).
    Keyserver(Option<Vec<u8>>),
    /// The keyserver refused (`refusal`); `data` is the pingers' keyrings one after the
    /// other, `from` each pinger's fingerprint with its keyring's size.
    Keyrings { refusal: TooManyResults, data: Vec<u8>, from: Vec<(Fingerprint, usize)> },
}

impl Answer {
    /// The bytes to hand to `Directory::refresh`.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Answer::Keyserver(a) => a.as_deref(),
            Answer::Keyrings { data, .. } => Some(data),
        }
    }
}

/// Asks `keyserver` for every mix key; when it refuses the search as too large, takes the
/// keyrings of every pinger in `pingers` with a URL instead, all of them or (on any failure,
/// or with no such pinger) an error, so that the caller's directory stays as it is.
pub fn discover(keyserver: &Keyserver, pingers: &[Pinger], timeout: Duration, now: SystemTime) -> Result<Answer> {
    let e = match keyserver.fetch_all() {
        Ok(a) => return Ok(Answer::Keyserver(a)),
        Err(e) => e,
    };
    let Some(refusal) = e.downcast_ref::<TooManyResults>().cloned() else { return Err(e) };
    let with_url: Vec<&Pinger> = pingers.iter().filter(|p| p.url.is_some()).collect();
    if with_url.is_empty() {
        return Err(e.context(
            "no trusted pinger has a URL to take the mix keys from (directory trust-pinger KEYFILE --url BASE)",
        ));
    }
    let (mut data, mut from) = (Vec::new(), Vec::new());
    for p in with_url {
        let ring = keyring(p, timeout, now).with_context(|| format!("{refusal}; the directory is unchanged"))?;
        from.push((p.cert.fingerprint(), ring.len()));
        data.extend(ring);
        data.push(b'\n');
    }
    Ok(Answer::Keyrings { refusal, data, from })
}

/// Whether `sig` (armored or binary) holds a valid binary signature of `data` by the
/// primary key of `signer`, made at or before `now` and alive then.
pub fn verify_detached(signer: &Cert, data: &[u8], sig: &[u8], now: SystemTime) -> Result<()> {
    use openpgp::parse::{PacketParser, PacketParserResult};
    let policy = StandardPolicy::new();
    let key = signer.primary_key().key();
    let handle = key.key_handle();
    let mut ppr = PacketParser::from_bytes(sig)?;
    while let PacketParserResult::Some(pp) = ppr {
        let (packet, next) = pp.next()?;
        ppr = next;
        let openpgp::Packet::Signature(s) = packet else { continue };
        if s.typ() == SignatureType::Binary
            && s.get_issuers().iter().any(|i| i.aliases(&handle))
            && s.signature_creation_time().is_some_and(|t| t <= now + Duration::from_secs(60))
            && s.signature_alive(now, Duration::from_secs(60)).is_ok()
            && openpgp::policy::Policy::signature(&policy, &s, openpgp::policy::HashAlgoSecurity::CollisionResistance)
                .is_ok()
            && s.verify_message(key, data).is_ok()
        {
            return Ok(());
        }
    }
    bail!("no valid signature by the pinger's primary key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixes::address::MixAddress;
    use crate::mixes::keys;
    use crate::mixes::modes::Modes;
    use openpgp::cert::CertBuilder;
    use openpgp::serialize::stream::{Message, Signer};

    fn pinger() -> Cert {
        CertBuilder::new().add_userid("pinger <pinger@ping.test>").generate().unwrap().0
    }

    fn ranked(rel: f64, lat: u64, broken: Vec<Fingerprint>) -> ranking::Ranking {
        ranking::Ranking { reliability: rel, latency: Duration::from_secs(lat), pings: 100, broken_next: broken }
    }

    #[test]
    fn the_standing_is_the_median_of_the_trusted_pingers() {
        let now = SystemTime::now();
        let m = keys::generate(
            "M",
            &Modes::parse("middleman").unwrap(),
            &MixAddress::for_fqdn("a.test").unwrap(),
            now,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let (p1, p2, p3, stranger) = (pinger(), pinger(), pinger(), pinger());
        let b: Fingerprint = "C20648DA788847EF52CAA9DDE5C35747BA145A04".parse().unwrap();
        let mut c = m.clone();
        for (p, r) in [
            (&p1, ranked(0.99, 600, vec![b.clone()])),
            (&p2, ranked(0.10, 90000, vec![])),
            (&p3, ranked(0.97, 1200, vec![])),
            (&stranger, ranked(0.0, 1, vec![b.clone()])),
        ] {
            c = c.insert_packets(ranking::certify(p, &m, &r, now, ranking::VALIDITY).unwrap()).unwrap().0;
        }
        let s = standing(&[p1.clone(), p2.clone(), p3.clone()], &c, now).unwrap();
        assert_eq!(
            (s.reliability, s.latency, s.pingers),
            (0.97, Duration::from_secs(1200), 3),
            "one outlier moves nothing"
        );
        assert!(s.broken_next.is_empty(), "one pinger of three is no majority for a broken chain");
        let s = standing(&[p1.clone(), p2.clone()], &c, now).unwrap();
        assert!((s.reliability - 0.545).abs() < 1e-9);
        assert_eq!(s.broken_next, [b], "half of the pingers suffice");
        assert!(standing(&[pinger()], &c, now).is_none());
        assert!(standing(&[p1], &c, now + ranking::VALIDITY + Duration::from_secs(120)).is_none(), "expired");
    }

    #[test]
    fn trust_stores_and_lists_and_refuses_bad_keys() {
        let t = tempfile::tempdir().unwrap();
        let ps = Pingers::new(t.path().join("pingers"));
        let now = SystemTime::now();
        let p = pinger();
        let armored = p.armored().to_vec().unwrap();
        assert_eq!(ps.trust(&armored, Some("http://ping.test/out/"), now).unwrap(), p.fingerprint());
        let l = ps.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].url.as_deref(), Some("http://ping.test/out"));
        assert!(!l[0].cert.is_tsk(), "only the public key is kept");
        ps.trust(&armored, None, now).unwrap();
        assert_eq!(ps.list().unwrap()[0].url, None);
        assert!(ps.trust(b"garbage", None, now).is_err());
        let mut two = armored.clone();
        two.extend(pinger().armored().to_vec().unwrap());
        assert!(ps.trust(&two, None, now).is_err());
        assert!(ps.trust(&armored, Some("ftp://x"), now).is_err());
        assert_eq!(ps.list().unwrap().len(), 1);
    }

    #[test]
    fn a_detached_signature_verifies_only_by_the_pinger_over_the_same_bytes() {
        let now = SystemTime::now();
        let p = pinger();
        let sign = |by: &Cert, data: &[u8]| {
            let kp = by.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
            let mut out = Vec::new();
            let m = Message::new(&mut out);
            let mut s = Signer::new(m, kp).unwrap().detached().build().unwrap();
            std::io::Write::write_all(&mut s, data).unwrap();
            s.finalize().unwrap();
            out
        };
        let sig = sign(&p, b"ring");
        verify_detached(&p, b"ring", &sig, now).unwrap();
        assert!(verify_detached(&p, b"ring!", &sig, now).is_err(), "changed keyring");
        assert!(verify_detached(&p, b"ring", &sign(&pinger(), b"ring"), now).is_err(), "another key");
        assert!(verify_detached(&p, b"ring", b"junk", now).is_err());
    }
}
