//! The directory of mix keys (D8, thesis 6.3.2): certs checked against the key format,
//! stored one file per mix under `HOME/directory/<address>.pgp`.
//!
//! A cert is refused whole, with its reason, unless it has exactly one user id of the form
//! `Name (mixtasy-mode:MODES) <mixtasy@FQDN>`, a primary that certifies and never encrypts
//! (GnuPG's default `[SC]`, signing too, is fine), and an
//! encryption subkey valid now. Both the sender and the node keep one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use openpgp::cert::CertParser;
use openpgp::packet::key;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::MarshalInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::mixes::address::MixAddress;
use crate::mixes::keys::{self, Validity};
use crate::mixes::modes::{Modes, ModesError};
use crate::util::fsutil;

/// Why a cert is not a mix key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("not an OpenPGP certificate: {0}")]
    NotACert(String),
    #[error("has {0} user ids, a mix key has exactly one")]
    UserIdCount(usize),
    #[error("user id is not `Name (mixtasy-mode:MODES) <mixtasy@FQDN>`")]
    UserIdSyntax,
    #[error("user id address is not mixtasy@FQDN")]
    NotMixAddress,
    #[error("user id has no mixtasy-mode feature")]
    NoModes,
    #[error("user id modes: {0}")]
    Modes(ModesError),
    #[error("certificate is not valid now (expired, revoked or badly signed)")]
    Invalid,
    #[error("primary key may encrypt (only the short-lived subkeys may) or may not certify")]
    PrimaryMayEncrypt,
    #[error("no encryption subkey valid now")]
    NoValidSubkey,
    #[error("names a designated revoker (Revocation Key subpacket): only the key itself may revoke a mix key")]
    DesignatedRevoker,
}

/// A checked mix key.
#[derive(Debug, Clone)]
pub struct Mix {
    pub address: MixAddress,
    pub name: String,
    pub modes: Modes,
    pub cert: Cert,
    /// Encryption subkeys with their validity, newest first.
    pub subkeys: Vec<(key::Key<key::PublicParts, key::SubordinateRole>, Validity)>,
    /// The mix's domain vouches for this very key in its Web Key Directory (as last looked
    /// up): only then is it the exit for its domain's recipients (D7).
    pub wkd: bool,
    /// What the directory's trusted pingers say of it together (`None`: no trusted
    /// pinger ranks it, or none is trusted).
    pub standing: Option<crate::mixes::pingers::Standing>,
}

impl Mix {
    /// The newest subkey valid at `now`: what D7 encrypts to.
    pub fn newest_valid_subkey(&self, now: SystemTime) -> Option<&key::Key<key::PublicParts, key::SubordinateRole>> {
        self.subkeys.iter().find(|(_, v)| v.valid_at(now, Duration::ZERO)).map(|(k, _)| k)
    }

    /// Expiry of the newest valid subkey, for listings.
    pub fn newest_expiry(&self, now: SystemTime) -> Option<SystemTime> {
        self.subkeys.iter().find(|(_, v)| v.valid_at(now, Duration::ZERO)).and_then(|(_, v)| v.expires)
    }
}

/// Splits `Name (comment) <address>`.
fn split_user_id(uid: &str) -> Option<(&str, &str, &str)> {
    let uid = uid.strip_suffix('>')?;
    let (front, address) = uid.rsplit_once('<')?;
    let front = front.strip_suffix(' ')?;
    let front = front.strip_suffix(')')?;
    let (name, comment) = front.rsplit_once(" (")?;
    Some((name, comment, address))
}

/// Checks one cert against D8 at time `now`.
pub fn check(cert: &Cert, now: SystemTime) -> Result<Mix, Refusal> {
    let (address, name, modes) = identity(cert, now)?;
    let mut subkeys = keys::encryption_subkeys(cert);
    subkeys.sort_by_key(|s| std::cmp::Reverse(s.1.created));
    if !subkeys.iter().any(|(_, v)| v.valid_at(now, Duration::ZERO)) {
        return Err(Refusal::NoValidSubkey);
    }
    Ok(Mix { address, name, modes, cert: cert.clone(), subkeys, wkd: false, standing: None })
}

/// Every check of `check` but the subkeys': whether this is a mix key at all (user id,
/// modes, a valid primary that never encrypts). A node restoring an old backup needs no more:
/// its first round adds a subkey.
pub fn identity(cert: &Cert, now: SystemTime) -> Result<(MixAddress, String, Modes), Refusal> {
    let policy = StandardPolicy::new();
    // Only user ids bound by a self-signature count: anyone can append a bare one.
    let uids = bound_userids(cert, &policy, now);
    if uids.len() != 1 {
        return Err(Refusal::UserIdCount(uids.len()));
    }
    let uid = std::str::from_utf8(uids[0].value()).map_err(|_| Refusal::UserIdSyntax)?;
    let (name, comment, address) = split_user_id(uid).ok_or(Refusal::UserIdSyntax)?;
    let address = MixAddress::parse(address).map_err(|_| Refusal::NotMixAddress)?;
    if !address.as_str().eq_ignore_ascii_case(uid.rsplit_once('<').map(|(_, a)| a.trim_end_matches('>')).unwrap_or(""))
    {
        return Err(Refusal::NotMixAddress);
    }
    // Feature statements are separated by one space; each is `key:value,value`.
    let statements: Vec<&str> = comment.split(' ').collect();
    if statements.iter().any(|s| s.is_empty()) {
        return Err(Refusal::UserIdSyntax);
    }
    let modes = statements.iter().find_map(|s| s.strip_prefix("mixtasy-mode:")).ok_or(Refusal::NoModes)?;
    let modes = Modes::parse(modes).map_err(Refusal::Modes)?;
    let vc = cert.with_policy(&policy, now).map_err(|_| Refusal::Invalid)?;
    vc.alive().map_err(|_| Refusal::Invalid)?;
    // Only a verified self-revocation counts (`CouldBe` is anyone's unverified word).
    if matches!(vc.revocation_status(), openpgp::types::RevocationStatus::Revoked(_)) {
        return Err(Refusal::Invalid);
    }
    // D8 has no designated revokers: a key naming one would let that key revoke it.
    if cert.revocation_keys(&policy).next().is_some() {
        return Err(Refusal::DesignatedRevoker);
    }
    // What matters (thesis 6.3.2) is that layers are only ever encrypted to the 2-day
    // subkeys, whose secrets are destroyed: a primary that may encrypt would be a key that
    // lives for years. Signing does no harm, so GnuPG's default `[SC]` primary is accepted.
    let flags = vc.primary_key().key_flags().unwrap_or_else(openpgp::types::KeyFlags::empty);
    if flags.for_transport_encryption() || flags.for_storage_encryption() || !flags.for_certification() {
        return Err(Refusal::PrimaryMayEncrypt);
    }
    Ok((address, name.to_string(), modes))
}

/// The user ids of `cert` bound by a self-signature valid at `now`.
fn bound_userids<'a>(cert: &'a Cert, policy: &StandardPolicy, now: SystemTime) -> Vec<&'a openpgp::packet::UserID> {
    cert.userids().filter(|ua| ua.binding_signature(policy, now).is_ok()).map(|ua| ua.userid()).collect()
}

/// What the directory stores of a cert (review of issue 10): the primary key with its
/// verified self-signatures and self-revocations, the user ids bound now with theirs, and
/// the subkeys with a verified binding. Third-party signatures and revocations, unbound
/// components and user attributes are dropped: none of them counts, and they would let
/// anyone grow a stored key without bound.
pub fn minimise(cert: &Cert, now: SystemTime) -> Result<Cert> {
    minimise_keeping(cert, &[], now)
}

/// `minimise`, keeping besides the newest valid ranking certification (`ranking::newest`)
/// of each of `pingers` on the bound user id: at most one signature per trusted pinger,
/// so the bound holds.
pub fn minimise_keeping(cert: &Cert, pingers: &[Cert], now: SystemTime) -> Result<Cert> {
    use openpgp::Packet;
    let policy = StandardPolicy::new();
    let primary = cert.primary_key();
    let mut packets: Vec<Packet> = vec![primary.key().clone().into()];
    packets.extend(primary.self_signatures().chain(primary.self_revocations()).cloned().map(Packet::from));
    for uid in bound_userids(cert, &policy, now) {
        let ua = cert.userids().find(|ua| ua.userid() == uid).expect("a user id of this cert");
        packets.push(uid.clone().into());
        packets.extend(ua.self_signatures().chain(ua.self_revocations()).cloned().map(Packet::from));
        for p in pingers {
            if let Some((sig, _)) =
                crate::mixes::ranking::newest(p, cert, now).filter(|(s, _)| ua.certifications().any(|c| c == *s))
            {
                packets.push(sig.clone().into());
            }
        }
    }
    for sk in cert.keys().subkeys() {
        if sk.self_signatures().next().is_some() {
            packets.push(sk.key().clone().into());
            packets.extend(sk.self_signatures().chain(sk.self_revocations()).cloned().map(Packet::from));
        }
    }
    Cert::from_packets(packets.into_iter()).context("minimising certificate")
}

/// How long a stored key may go without a valid subkey before another key may take its
/// address (issue 10): a mix that was off for a week has lost its claim. The week is
/// measured over this directory's own observations (`Directory::observe_silence`), never
/// judged from one copy: a stale copy fetched after a long gap through a keyserver that
/// withholds the new subkeys would otherwise look silent.
pub const SILENCE: Duration = Duration::from_secs(7 * 86400);

/// How long a domain's word for its exit mix (WKD) holds without being confirmed again.
pub const WKD_MAX_AGE: Duration = Duration::from_secs(30 * 86400);

/// What an import did, for the report.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Stored: new, merged with the same key, or a replacement allowed by the rules.
    pub stored: Vec<MixAddress>,
    /// How each replacement of an established key was allowed, by address.
    pub replaced: Vec<(MixAddress, Replacement)>,
    /// Another key for a mix already established, not allowed to replace it: with its
    /// fingerprint. The established key stays.
    pub kept_established: Vec<(MixAddress, String)>,
    /// Addresses for which two or more unrelated keys were met with no history between
    /// them: none of them is used (`directory list` names them until resolved).
    pub conflicts: Vec<(MixAddress, Vec<String>)>,
    /// A description of the refused cert (its address or fingerprint) and why.
    pub refused: Vec<(String, Refusal)>,
}

/// Why a key with another fingerprint was allowed to replace the established one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// The established primary key certifies the new key's user id (a key transition).
    Certified,
    /// The established key is revoked (by itself).
    Revoked,
    /// This directory has seen the established key without a valid subkey for `SILENCE`.
    Silent,
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Replacement::Certified => "a key transition certified by the previous key",
            Replacement::Revoked => "the previous key is revoked",
            Replacement::Silent => "this directory has seen the previous key without a valid subkey for 7 days",
        })
    }
}

/// Whether the primary key of `by` certifies the (one) user id of `cert`, with a
/// certification valid at `now`: the mark of a key transition made by the same operator.
pub fn certifies(by: &Cert, cert: &Cert, now: SystemTime) -> bool {
    let policy = StandardPolicy::new();
    let signer = by.primary_key().key();
    let handle = signer.key_handle();
    // Only a user id the new key binds itself: a certification over a bare one proves nothing.
    cert.userids().filter(|ua| ua.binding_signature(&policy, now).is_ok()).any(|ua| {
        ua.certifications().any(|sig| {
            sig.get_issuers().iter().any(|i| i.aliases(&handle))
                && sig.signature_creation_time().is_some_and(|t| t <= now)
                && sig.signature_alive(now, Duration::ZERO).is_ok()
                && openpgp::policy::Policy::signature(
                    &policy,
                    sig,
                    openpgp::policy::HashAlgoSecurity::CollisionResistance,
                )
                .is_ok()
                && sig.verify_userid_binding(signer, cert.primary_key().key(), ua.userid()).is_ok()
        })
    })
}

/// Whether `cert` carries a verified self-revocation of its primary key (whatever else is
/// wrong with it). A revocation by any other key (`CouldBe`) counts for nothing: D8 has no
/// designated revokers, and anyone can sign one.
pub fn revoked(cert: &Cert, now: SystemTime) -> bool {
    let policy = StandardPolicy::new();
    matches!(cert.revocation_status(&policy, now), openpgp::types::RevocationStatus::Revoked(_))
}

/// Whether `cert` has an encryption subkey valid at `now` (a future one is not).
fn has_valid_subkey(cert: &Cert, now: SystemTime) -> bool {
    keys::encryption_subkeys(cert).iter().any(|(_, v)| v.valid_at(now, Duration::ZERO))
}

/// What one address comes to after an import: the key to keep, or a conflict.
enum Outcome {
    Keep(Cert),
    Replace(Cert, Replacement),
    Conflict(Vec<Cert>),
    Nothing,
}

/// The directory rule for one address (issue 10, doc/protocol.md D8): `established` (merged
/// with whatever came for its fingerprint), and the other valid keys met now (`others`,
/// including those of an unresolved conflict). Another fingerprint never silently replaces
/// the established key: only a transition it certifies, its revocation or its silence allow
/// it; keys met with no history between them are a conflict and none is used.
/// `silent`: this directory has seen `established` without a valid subkey for `SILENCE`.
fn decide(established: Option<Cert>, others: Vec<Cert>, silent: bool, now: SystemTime) -> (Outcome, Vec<Cert>) {
    if let Some(est) = established {
        if others.is_empty() {
            return (Outcome::Keep(est), Vec::new());
        }
        let est_revoked = revoked(&est, now);
        // A revoked key certifies nothing: its secret may be what was stolen.
        let certified: Vec<&Cert> =
            if est_revoked { Vec::new() } else { others.iter().filter(|c| certifies(&est, c, now)).collect() };
        if let Some(next) = certified.iter().max_by_key(|c| c.primary_key().key().creation_time()) {
            return (Outcome::Replace((*next).clone(), Replacement::Certified), Vec::new());
        }
        let why = if est_revoked {
            Replacement::Revoked
        } else if silent {
            Replacement::Silent
        } else {
            return (Outcome::Keep(est), others);
        };
        return match first_sight(others, now) {
            Outcome::Keep(c) => (Outcome::Replace(c, why), Vec::new()),
            o => (o, Vec::new()),
        };
    }
    (first_sight(others, now), Vec::new())
}

/// Keys for an address without an established one: a key superseded by a transition it
/// certified drops out; one left is established, more are a conflict.
fn first_sight(mut certs: Vec<Cert>, now: SystemTime) -> Outcome {
    let superseded: Vec<_> = certs
        .iter()
        .filter(|a| certs.iter().any(|b| a.fingerprint() != b.fingerprint() && certifies(a, b, now)))
        .map(|c| c.fingerprint())
        .collect();
    certs.retain(|c| !superseded.contains(&c.fingerprint()));
    match certs.len() {
        0 => Outcome::Nothing,
        1 => Outcome::Keep(certs.pop().expect("one")),
        _ => Outcome::Conflict(certs),
    }
}

/// A directory of mix keys on disk: per address, `<address>.pgp` (the established key),
/// `<address>.conflict` (unrelated keys met together, none used), `<address>.wkd`
/// (the fingerprint the address's domain publishes in its Web Key Directory) and
/// `<address>.silent` (since when this directory has seen the key without a valid subkey).
pub struct Directory {
    dir: PathBuf,
    /// Trusted pingers: their rankings are kept with the keys and read by `usable`.
    pingers: Vec<Cert>,
}

impl Directory {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Directory { dir: dir.into(), pingers: Vec::new() }
    }

    /// This directory keeping and reading the rankings of `pingers` (trusted pingers).
    pub fn with_pingers(mut self, pingers: Vec<Cert>) -> Self {
        self.pingers = pingers;
        self
    }

    /// Whether any pinger is trusted: then paths follow the rankings.
    pub fn ranked(&self) -> bool {
        !self.pingers.is_empty()
    }

    fn file(&self, address: &MixAddress) -> PathBuf {
        self.dir.join(format!("{address}.pgp"))
    }

    fn conflict_file(&self, address: &MixAddress) -> PathBuf {
        self.dir.join(format!("{address}.conflict"))
    }

    fn wkd_file(&self, address: &MixAddress) -> PathBuf {
        self.dir.join(format!("{address}.wkd"))
    }

    fn silent_file(&self, address: &MixAddress) -> PathBuf {
        self.dir.join(format!("{address}.silent"))
    }

    /// Checks every cert in `data` (armored or binary, one or many) and applies the
    /// directory rule (`decide`) to each address met, all certs of one address together.
    pub fn import(&self, data: &[u8], now: SystemTime) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let parser = match CertParser::from_bytes(data) {
            Ok(p) => p,
            Err(e) => {
                report.refused.push(("input".into(), Refusal::NotACert(e.to_string())));
                return Ok(report);
            }
        };
        // Every cert that names a mix address, by address; same fingerprints merged.
        let mut met: BTreeMap<MixAddress, Vec<Cert>> = BTreeMap::new();
        for cert in parser {
            let cert = match cert {
                Ok(c) => c.strip_secret_key_material(),
                Err(e) => {
                    report.refused.push(("input".into(), Refusal::NotACert(format!("{e:#}"))));
                    continue;
                }
            };
            let address = match (identity(&cert, now), address_of(&cert, now)) {
                (Ok((a, _, _)), _) => a,
                // A revocation of a key we hold (established or in a conflict) is news even
                // though the cert is no longer a usable mix key.
                (Err(_), Some(a)) if self.holds(&a, &cert)? => a,
                (Err(r), _) => {
                    report.refused.push((cert.fingerprint().to_hex(), r));
                    continue;
                }
            };
            let list = met.entry(address).or_default();
            match list.iter_mut().find(|c| c.fingerprint() == cert.fingerprint()) {
                Some(c) => *c = c.clone().merge_public(cert).context("merging certificate")?,
                None => list.push(cert),
            }
        }
        for (address, certs) in met {
            self.import_address(&address, certs, now, &mut report)?;
        }
        Ok(report)
    }

    fn import_address(
        &self,
        address: &MixAddress,
        certs: Vec<Cert>,
        now: SystemTime,
        report: &mut ImportReport,
    ) -> Result<()> {
        let mut established = self.get(address)?;
        let was_established = established.is_some();
        let mut met_established = false;
        let mut others = self.conflict(address)?;
        for cert in certs {
            if let Some(est) = established.as_mut().filter(|e| e.fingerprint() == cert.fingerprint()) {
                *est = est.clone().merge_public(cert).context("merging certificate")?;
                met_established = true;
            } else if let Some(o) = others.iter_mut().find(|o| o.fingerprint() == cert.fingerprint()) {
                *o = o.clone().merge_public(cert).context("merging certificate")?;
            } else {
                others.push(cert);
            }
        }
        // Only keys that are mix keys now take part (a revoked or expired one drops out).
        others.retain(|c| match check(c, now) {
            Ok(_) => true,
            Err(r) => {
                report.refused.push((c.fingerprint().to_hex(), r));
                false
            }
        });
        let silent = match &established {
            Some(est) => self.observe_silence(address, est, now)?.is_some_and(|since| since + SILENCE <= now),
            None => false,
        };
        let (outcome, rejected) = decide(established, others, silent, now);
        fsutil::create_private_dir(&self.dir)?;
        for r in rejected {
            report.kept_established.push((address.clone(), r.fingerprint().to_hex()));
        }
        match outcome {
            Outcome::Keep(cert) => {
                self.store(address, &cert, now)?;
                if met_established || !was_established {
                    report.stored.push(address.clone());
                }
            }
            Outcome::Replace(cert, why) => {
                self.store(address, &cert, now)?;
                report.stored.push(address.clone());
                report.replaced.push((address.clone(), why));
            }
            Outcome::Conflict(certs) => {
                let mut bytes = Vec::new();
                for c in &certs {
                    bytes.extend(minimise_keeping(c, &self.pingers, now)?.to_vec()?);
                }
                fsutil::write_atomic(&self.conflict_file(address), &bytes, 0o600)?;
                self.remove(&self.file(address))?;
                report.conflicts.push((address.clone(), certs.iter().map(|c| c.fingerprint().to_hex()).collect()));
            }
            Outcome::Nothing => self.remove(&self.conflict_file(address))?,
        }
        Ok(())
    }

    /// Resolves a conflict by the user's word (a fingerprint checked out of band): the key
    /// with fingerprint `fpr` in a conflict becomes the established key for its address.
    /// Returns that address; an error if no conflict holds such a key.
    pub fn choose(&self, fpr: &str, now: SystemTime) -> Result<MixAddress> {
        let want = fpr.replace(' ', "").to_ascii_uppercase();
        for address in self.conflicts()?.into_keys() {
            if let Some(cert) = self.conflict(&address)?.into_iter().find(|c| c.fingerprint().to_hex() == want) {
                check(&cert, now).map_err(|why| anyhow::anyhow!("key {want} is not a usable mix key now: {why}"))?;
                self.store(&address, &cert, now)?;
                return Ok(address);
            }
        }
        anyhow::bail!("no conflict holds a key with fingerprint {want}")
    }

    /// Stores the established key of `address`, minimised (an unresolved conflict for it ends).
    fn store(&self, address: &MixAddress, cert: &Cert, now: SystemTime) -> Result<()> {
        fsutil::write_atomic(&self.file(address), &minimise_keeping(cert, &self.pingers, now)?.to_vec()?, 0o600)?;
        self.remove(&self.conflict_file(address))
    }

    /// Records this directory's own observation of `cert`, the established key of `address`,
    /// at `now`, and returns since when it has been seen without a valid subkey (`None`: it
    /// has one now). The record (`<address>.silent`: fingerprint and the first time seen
    /// silent) survives until the key is seen with a valid subkey or another key is stored.
    pub fn observe_silence(&self, address: &MixAddress, cert: &Cert, now: SystemTime) -> Result<Option<SystemTime>> {
        let path = self.silent_file(address);
        if has_valid_subkey(cert, now) {
            self.remove(&path)?;
            return Ok(None);
        }
        let fpr = cert.fingerprint().to_hex();
        let recorded = match fs::read_to_string(&path) {
            Ok(s) => s.split_once(' ').filter(|(f, _)| *f == fpr).and_then(|(_, t)| t.trim().parse::<u64>().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if let Some(secs) = recorded {
            return Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)));
        }
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        fsutil::create_private_dir(&self.dir)?;
        fsutil::write_atomic(&path, format!("{fpr} {secs}\n").as_bytes(), 0o600)?;
        Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => fsutil::sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Whether a key with `cert`'s fingerprint is stored for `address`.
    fn holds(&self, address: &MixAddress, cert: &Cert) -> Result<bool> {
        let fpr = cert.fingerprint();
        Ok(self.get(address)?.is_some_and(|e| e.fingerprint() == fpr)
            || self.conflict(address)?.iter().any(|c| c.fingerprint() == fpr))
    }

    /// The stored cert of one mix.
    pub fn get(&self, address: &MixAddress) -> Result<Option<Cert>> {
        let path = self.file(address);
        match fs::read(&path) {
            Ok(b) => Ok(Some(Cert::from_bytes(&b).with_context(|| format!("reading {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The keys of an unresolved conflict for `address` (empty: none).
    pub fn conflict(&self, address: &MixAddress) -> Result<Vec<Cert>> {
        let path = self.conflict_file(address);
        match fs::read(&path) {
            Ok(b) => CertParser::from_bytes(&b)
                .and_then(|p| p.collect::<openpgp::Result<Vec<Cert>>>())
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Every address with an unresolved conflict, with the fingerprints in it.
    pub fn conflicts(&self) -> Result<BTreeMap<MixAddress, Vec<String>>> {
        let mut out = BTreeMap::new();
        for addr in self.addresses(".conflict")? {
            out.insert(addr.clone(), self.conflict(&addr)?.iter().map(|c| c.fingerprint().to_hex()).collect());
        }
        Ok(out)
    }

    /// The addresses of files named `<address><suffix>`.
    fn addresses(&self, suffix: &str) -> Result<Vec<MixAddress>> {
        let mut out = Vec::new();
        for path in fsutil::entries(&self.dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if let Some(addr) = name.strip_suffix(suffix).and_then(|a| MixAddress::parse(a).ok()) {
                out.push(addr);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every stored (established) cert, by address (files that no longer parse are errors).
    pub fn certs(&self) -> Result<BTreeMap<MixAddress, Cert>> {
        let mut out = BTreeMap::new();
        for addr in self.addresses(".pgp")? {
            if let Some(cert) = self.get(&addr)? {
                out.insert(addr, cert);
            }
        }
        Ok(out)
    }

    /// Records the word of `address`'s domain at `now`: `Some(fingerprint)` of the key it
    /// vouches for, `None` when it vouches for none (any earlier record is removed).
    pub fn set_wkd(&self, address: &MixAddress, found: Option<&str>, now: SystemTime) -> Result<()> {
        match found {
            Some(fpr) => {
                let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                fsutil::create_private_dir(&self.dir)?;
                fsutil::write_atomic(&self.wkd_file(address), format!("{fpr} {secs}\n").as_bytes(), 0o600)
            }
            None => self.remove(&self.wkd_file(address)),
        }
    }

    /// The fingerprint `address`'s domain vouched for, if it did so within `WKD_MAX_AGE`
    /// of `now` (a vouch is re-checked by each `--wkd` import or fetch and `verify-wkd`; a
    /// lookup that fails leaves it to age out). A record without its time counts for nothing.
    pub fn wkd(&self, address: &MixAddress, now: SystemTime) -> Result<Option<String>> {
        match fs::read_to_string(self.wkd_file(address)) {
            Ok(s) => Ok(s.trim().split_once(' ').and_then(|(fpr, t)| {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(t.parse().ok()?);
                (at <= now && now < at + WKD_MAX_AGE).then(|| fpr.to_string())
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.wkd_file(address).display())),
        }
    }

    /// Removes stored keys that may be replaced anyway, revoked or seen silent by this
    /// directory for `SILENCE`; returns their addresses. A key merely without a valid subkey
    /// now is kept (unused), and its silence observed: dropping it would let any other key
    /// take the address at once.
    pub fn prune(&self, now: SystemTime) -> Result<Vec<MixAddress>> {
        let mut gone = Vec::new();
        for (addr, cert) in self.certs()? {
            let silent = self.observe_silence(&addr, &cert, now)?.is_some_and(|since| since + SILENCE <= now);
            if check(&cert, now).is_err() && (revoked(&cert, now) || silent) {
                self.remove(&self.file(&addr))?;
                self.remove(&self.wkd_file(&addr))?;
                self.remove(&self.silent_file(&addr))?;
                gone.push(addr);
            }
        }
        Ok(gone)
    }

    /// Discovery (D8): merges a keyserver's answer (`None`: it has no mix keys) and prunes
    /// mixes revoked or silent for a week. An answer with no certificate in it at all is an
    /// error and changes nothing.
    pub fn refresh(&self, answer: Option<&[u8]>, now: SystemTime) -> Result<(ImportReport, Vec<MixAddress>)> {
        let report = match answer {
            Some(a) => {
                if !CertParser::from_bytes(a).map(|mut p| p.any(|c| c.is_ok())).unwrap_or(false) {
                    anyhow::bail!("the keyserver's answer holds no OpenPGP certificate");
                }
                self.import(a, now)?
            }
            None => ImportReport::default(),
        };
        let pruned = self.prune(now)?;
        Ok((report, pruned))
    }

    /// The mixes usable at `now`: stored certs that pass D8 now, each marked when its
    /// domain's WKD vouched for exactly this key.
    pub fn usable(&self, now: SystemTime) -> Result<Vec<Mix>> {
        let mut out = Vec::new();
        for (addr, cert) in self.certs()? {
            if let Ok(mut mix) = check(&cert, now) {
                mix.wkd = self.wkd(&addr, now)?.is_some_and(|f| f.eq_ignore_ascii_case(&cert.fingerprint().to_hex()));
                mix.standing = crate::mixes::pingers::standing(&self.pingers, &cert, now);
                out.push(mix);
            }
        }
        Ok(out)
    }
}

/// The mix address in a cert's user id, when it names one, whatever else is wrong with it.
fn address_of(cert: &Cert, now: SystemTime) -> Option<MixAddress> {
    let uid = *bound_userids(cert, &StandardPolicy::new(), now).first()?;
    let uid = std::str::from_utf8(uid.value()).ok()?;
    let (_, _, address) = split_user_id(uid)?;
    MixAddress::parse(address).ok()
}

/// Reads every file (or stdin for `-`) for an import.
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if files.is_empty() || files.iter().any(|f| f == Path::new("-")) {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).context("reading standard input")?;
    }
    for f in files.iter().filter(|f| *f != Path::new("-")) {
        data.extend(fs::read(f).with_context(|| format!("reading {}", f.display()))?);
        data.push(b'\n');
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::serialize::SerializeInto;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn mix(fqdn: &str, modes: &str) -> Cert {
        keys::generate(
            "Mix",
            &Modes::parse(modes).unwrap(),
            &MixAddress::for_fqdn(fqdn).unwrap(),
            t0(),
            keys::SUBKEY_VALIDITY,
        )
        .unwrap()
    }

    #[test]
    fn good_key_is_stored_and_secrets_stripped() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let cert = mix("a.test", "middleman");
        let r = d.import(&SerializeInto::to_vec(&cert.as_tsk().armored()).unwrap(), t0()).unwrap();
        assert_eq!(r.stored.len(), 1, "{:?}", r.refused);
        let stored = d.get(&MixAddress::for_fqdn("a.test").unwrap()).unwrap().unwrap();
        assert!(!stored.is_tsk());
        assert_eq!(d.usable(t0()).unwrap().len(), 1);
        assert_eq!(d.usable(t0() + keys::SUBKEY_VALIDITY).unwrap().len(), 0, "expired subkey makes it unusable");
    }

    #[test]
    fn refusals_have_reasons() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let enc = openpgp::types::KeyFlags::empty().set_transport_encryption().set_storage_encryption();
        let build = |uids: &[&str], primary: openpgp::types::KeyFlags, sub: bool| {
            let mut b = CertBuilder::new().set_creation_time(t0()).set_primary_key_flags(primary);
            for u in uids {
                b = b.add_userid(*u);
            }
            if sub {
                b = b.add_subkey(enc.clone(), keys::SUBKEY_VALIDITY, None);
            }
            b.generate().unwrap().0
        };
        let cert_only = openpgp::types::KeyFlags::empty().set_certification();
        let cases = [
            (
                build(
                    &["A (mixtasy-mode:middleman) <mixtasy@a.test>", "B (mixtasy-mode:middleman) <mixtasy@b.test>"],
                    cert_only.clone(),
                    true,
                ),
                Refusal::UserIdCount(2),
            ),
            (build(&["A (mixtasy-mode:middleman) <bob@a.test>"], cert_only.clone(), true), Refusal::NotMixAddress),
            (
                build(&["A (mixtasy-mode:middleman,teleport) <mixtasy@a.test>"], cert_only.clone(), true),
                Refusal::Modes(ModesError::Unknown("teleport".into())),
            ),
            (build(&["A (hello) <mixtasy@a.test>"], cert_only.clone(), true), Refusal::NoModes),
            (build(&["A <mixtasy@a.test>"], cert_only.clone(), true), Refusal::UserIdSyntax),
            (build(&["A (mixtasy-mode:middleman) <mixtasy@a.test>"], cert_only.clone(), false), Refusal::NoValidSubkey),
            (
                build(
                    &["A (mixtasy-mode:middleman) <mixtasy@a.test>"],
                    cert_only.clone().set_storage_encryption(),
                    true,
                ),
                Refusal::PrimaryMayEncrypt,
            ),
            (
                build(
                    &["A (mixtasy-mode:middleman) <mixtasy@a.test>"],
                    cert_only.clone().set_signing().set_transport_encryption(),
                    true,
                ),
                Refusal::PrimaryMayEncrypt,
            ),
            (
                build(
                    &["A (mixtasy-mode:middleman) <mixtasy@a.test>"],
                    openpgp::types::KeyFlags::empty().set_signing(),
                    true,
                ),
                Refusal::PrimaryMayEncrypt,
            ),
        ];
        for (cert, why) in cases {
            let r = d.import(&SerializeInto::to_vec(&cert).unwrap(), t0()).unwrap();
            assert!(r.stored.is_empty());
            assert_eq!(r.refused[0].1, why);
        }
        assert!(d.certs().unwrap().is_empty(), "nothing of a refused cert is stored");
        // GnuPG's default primary, sign and certify, is accepted.
        let sc = build(&["A (mixtasy-mode:middleman) <mixtasy@a.test>"], cert_only.clone().set_signing(), true);
        assert_eq!(d.import(&SerializeInto::to_vec(&sc).unwrap(), t0()).unwrap().stored.len(), 1);
        let r = d.import(b"garbage", t0()).unwrap();
        assert!(matches!(r.refused[0].1, Refusal::NotACert(_)));
    }

    fn armored(cert: &Cert) -> Vec<u8> {
        SerializeInto::to_vec(&cert.armored()).unwrap()
    }

    fn addr(fqdn: &str) -> MixAddress {
        MixAddress::for_fqdn(fqdn).unwrap()
    }

    fn used(d: &Directory, fqdn: &str, now: SystemTime) -> Option<openpgp::Fingerprint> {
        d.usable(now).unwrap().into_iter().find(|m| m.address == addr(fqdn)).map(|m| m.cert.fingerprint())
    }

    #[test]
    fn a_second_key_never_silently_replaces_the_first() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let good = mix("a.test", "middleman");
        d.import(&armored(&good), t0()).unwrap();
        // A key made a second later, and one whose subkey claims to be made tomorrow.
        let later = t0() + Duration::from_secs(1);
        let evil = keys::generate(
            "Evil",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            later,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let r = d.import(&armored(&evil), later).unwrap();
        assert!(r.stored.is_empty() && r.replaced.is_empty());
        assert_eq!(r.kept_established, [(addr("a.test"), evil.fingerprint().to_hex())]);
        assert_eq!(used(&d, "a.test", later), Some(good.fingerprint()));
        // Both in one input (a keyserver's answer): the same.
        let mut both = armored(&evil);
        both.extend(armored(&good));
        d.import(&both, later).unwrap();
        assert_eq!(used(&d, "a.test", later), Some(good.fingerprint()));
    }

    #[test]
    fn a_transition_certified_by_the_old_primary_replaces_it() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let old = mix("a.test", "middleman");
        d.import(&armored(&old), t0()).unwrap();
        let at = t0() + Duration::from_secs(3600);
        let new = keys::transition(
            &old,
            "Mix",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            at,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        assert!(certifies(&old, &new, at) && !certifies(&new, &old, at));
        let r = d.import(&armored(&new), at).unwrap();
        assert_eq!(r.replaced, [(addr("a.test"), Replacement::Certified)]);
        let m = d.usable(at).unwrap().pop().unwrap();
        assert_eq!((m.cert.fingerprint(), m.modes.exitpublic), (new.fingerprint(), true));
        // The old key, met again (a keyserver keeps it), does not come back.
        let r = d.import(&armored(&old), at).unwrap();
        assert_eq!(r.kept_established.len(), 1);
        assert_eq!(used(&d, "a.test", at), Some(new.fingerprint()));
        // The old subkey still valid is carried, secret included, so in-flight mail peels.
        let old_sub = keys::encryption_subkeys(&old)[0].0.fingerprint();
        assert!(new.keys().subkeys().secret().any(|k| k.key().fingerprint() == old_sub));
        assert_eq!(keys::encryption_subkeys(&new).len(), 2);
        // A certification by some other key is no transition.
        let stranger = mix("b.test", "middleman");
        let fake = keys::transition(
            &stranger,
            "Mix",
            &Modes::parse("middleman").unwrap(),
            &addr("a.test"),
            at,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        assert_eq!(d.import(&armored(&fake), at).unwrap().kept_established.len(), 1);
        assert_eq!(used(&d, "a.test", at), Some(new.fingerprint()));
    }

    #[test]
    fn a_revoked_key_is_never_used_and_may_be_replaced() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let old = mix("a.test", "middleman");
        d.import(&armored(&old), t0()).unwrap();
        let revoked = keys::revoke(&old, "test", t0()).unwrap().strip_secret_key_material();
        let at = t0() + Duration::from_secs(60);
        d.import(&armored(&revoked), at).unwrap();
        assert_eq!(used(&d, "a.test", at), None, "a revocation found on import is honoured");
        let next =
            keys::generate("Mix", &Modes::parse("middleman").unwrap(), &addr("a.test"), at, keys::SUBKEY_VALIDITY)
                .unwrap();
        let r = d.import(&armored(&next), at).unwrap();
        assert_eq!(r.replaced, [(addr("a.test"), Replacement::Revoked)]);
        assert_eq!(used(&d, "a.test", at), Some(next.fingerprint()));
        // The revoked key alone in a fresh directory is refused.
        let d2 = Directory::new(t.path().join("d2"));
        assert_eq!(d2.import(&armored(&revoked), at).unwrap().refused[0].1, Refusal::Invalid);
    }

    #[test]
    fn a_week_without_a_valid_subkey_gives_the_address_up() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let old = mix("a.test", "middleman");
        d.import(&armored(&old), t0()).unwrap();
        let expired = t0() + keys::SUBKEY_VALIDITY;
        // The week counts from this directory's first sight of the key without a valid
        // subkey (a day after it lapsed), not from the lapse.
        let first = expired + Duration::from_secs(86400);
        for (at, replaced) in
            [(first, false), (first + SILENCE - Duration::from_secs(1), false), (first + SILENCE, true)]
        {
            let other = keys::generate(
                "Other",
                &Modes::parse("middleman").unwrap(),
                &addr("a.test"),
                at,
                keys::SUBKEY_VALIDITY,
            )
            .unwrap();
            // Discovery keeps the silent key (unused) until the week is over.
            let (r, pruned) = d.refresh(Some(&armored(&other)), at).unwrap();
            assert!(pruned.is_empty());
            assert_eq!(r.replaced.len(), usize::from(replaced), "{at:?}");
            assert_eq!(used(&d, "a.test", at), replaced.then(|| other.fingerprint()), "{at:?}");
        }
    }

    /// Review attack 7: a domain's word is re-checked; unconfirmed for 30 days, it lapses.
    #[test]
    fn a_wkd_vouch_ages_out() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let long = Duration::from_secs(60 * 86400);
        let k = keys::generate("Mix", &Modes::parse("exitpublic").unwrap(), &addr("a.test"), t0(), long).unwrap();
        d.import(&armored(&k), t0()).unwrap();
        let vouched = |at| d.usable(at).unwrap()[0].wkd;
        assert!(!vouched(t0()));
        d.set_wkd(&addr("a.test"), Some(&k.fingerprint().to_hex()), t0()).unwrap();
        assert!(vouched(t0()) && vouched(t0() + WKD_MAX_AGE - Duration::from_secs(1)));
        assert!(!vouched(t0() + WKD_MAX_AGE), "unconfirmed for 30 days");
        // A record of the old form, without its time, is no word.
        fs::write(t.path().join("d/mixtasy@a.test.wkd"), format!("{}\n", k.fingerprint().to_hex())).unwrap();
        assert!(!vouched(t0()));
    }

    /// Review attack 4: a sender who has not fetched for 9 days fetches through a keyserver
    /// that withholds the mix's new subkeys and carries an impostor. The stale copy has no
    /// valid subkey, but this directory has not watched it silent for a week.
    #[test]
    fn a_stale_copy_met_after_a_long_gap_is_not_silent() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let good = mix("a.test", "middleman");
        d.import(&armored(&good), t0()).unwrap();
        let at = t0() + Duration::from_secs(9 * 86400);
        let evil = keys::generate(
            "Evil",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            at,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let (r, pruned) = d.refresh(Some(&armored(&evil)), at).unwrap();
        assert!(r.replaced.is_empty() && pruned.is_empty());
        assert_eq!(r.kept_established, [(addr("a.test"), evil.fingerprint().to_hex())]);
        assert_eq!(used(&d, "a.test", at), None);
        // The real mix's answer, with its rotated subkeys, ends the silence record.
        let (rotated, _) = keys::rotate(good.clone(), at, keys::SUBKEY_VALIDITY).unwrap();
        d.refresh(Some(&armored(&rotated.strip_secret_key_material())), at).unwrap();
        assert_eq!(used(&d, "a.test", at), Some(good.fingerprint()));
        let week = at + SILENCE;
        let evil2 = keys::generate(
            "Evil",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            week,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let (r, _) = d.refresh(Some(&armored(&evil2)), week).unwrap();
        assert!(r.replaced.is_empty(), "silence seen once, at this very fetch: no week yet");
    }

    /// A third party's key revocation over the victim's primary (review attack 1).
    fn forged_revocation(victim: &Cert, at: SystemTime) -> openpgp::packet::Signature {
        use openpgp::packet::signature::SignatureBuilder;
        use openpgp::types::{ReasonForRevocation, SignatureType};
        let atk = mix("atk.test", "middleman");
        let mut signer = atk.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
        SignatureBuilder::new(SignatureType::KeyRevocation)
            .set_reason_for_revocation(ReasonForRevocation::KeyCompromised, b"")
            .unwrap()
            .set_signature_creation_time(at)
            .unwrap()
            .sign_direct_key(&mut signer, Some(victim.primary_key().key()))
            .unwrap()
    }

    #[test]
    fn a_revocation_by_another_key_counts_for_nothing_and_is_not_stored() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let good = mix("a.test", "middleman");
        d.import(&armored(&good), t0()).unwrap();
        let later = t0() + Duration::from_secs(60);
        let poisoned = good.clone().insert_packets(forged_revocation(&good, later)).unwrap().0;
        assert!(!revoked(&poisoned, later));
        let evil = keys::generate(
            "Evil",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            later,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let mut input = armored(&poisoned);
        input.extend(armored(&evil));
        let r = d.import(&input, later).unwrap();
        assert!(r.replaced.is_empty());
        assert_eq!(r.kept_established, [(addr("a.test"), evil.fingerprint().to_hex())]);
        assert_eq!(used(&d, "a.test", later), Some(good.fingerprint()));
        let stored = d.get(&addr("a.test")).unwrap().unwrap();
        assert_eq!(stored.primary_key().other_revocations().count(), 0, "third-party revocation dropped");
        // Alone, through discovery: nothing is pruned, and the address stays taken.
        let (_, pruned) = d.refresh(Some(&armored(&poisoned)), later).unwrap();
        assert!(pruned.is_empty());
        d.import(&armored(&evil), later).unwrap();
        assert_eq!(used(&d, "a.test", later), Some(good.fingerprint()));
    }

    #[test]
    fn a_key_naming_a_designated_revoker_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let other = mix("b.test", "middleman");
        let cert = CertBuilder::new()
            .set_creation_time(t0())
            .set_primary_key_flags(openpgp::types::KeyFlags::empty().set_certification())
            .add_userid("R (mixtasy-mode:middleman) <mixtasy@r.test>")
            .add_subkey(
                openpgp::types::KeyFlags::empty().set_transport_encryption().set_storage_encryption(),
                keys::SUBKEY_VALIDITY,
                None,
            )
            .set_revocation_keys(vec![(&other).into()])
            .generate()
            .unwrap()
            .0;
        let r = d.import(&armored(&cert), t0()).unwrap();
        assert_eq!(r.refused[0].1, Refusal::DesignatedRevoker);
        assert!(d.certs().unwrap().is_empty());
    }

    /// Review attack 2: a bare user id packet appended to the established key.
    #[test]
    fn an_unbound_user_id_neither_counts_nor_is_stored() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let good = mix("a.test", "middleman");
        d.import(&armored(&good), t0()).unwrap();
        let later = t0() + Duration::from_secs(60);
        let uid = openpgp::packet::UserID::from("X (mixtasy-mode:middleman) <mixtasy@a.test>");
        let atk = mix("atk.test", "middleman");
        // A bare user id, and a third party's certification flood on the bound one.
        let mut signer = atk.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
        let bound = good.userids().next().unwrap().userid().clone();
        let flood: Vec<openpgp::Packet> = (0..50)
            .map(|_| {
                bound
                    .certify(&mut signer, &good, openpgp::types::SignatureType::GenericCertification, None, later)
                    .unwrap()
                    .into()
            })
            .collect();
        let poisoned = good.clone().insert_packets(uid).unwrap().0.insert_packets(flood).unwrap().0;
        let r = d.import(&armored(&poisoned), later).unwrap();
        assert_eq!(r.stored, [addr("a.test")], "{:?}", r.refused);
        assert_eq!(used(&d, "a.test", later), Some(good.fingerprint()));
        let stored = d.get(&addr("a.test")).unwrap().unwrap();
        assert_eq!(stored.userids().count(), 1);
        assert_eq!(stored.userids().next().unwrap().certifications().count(), 0, "flood dropped");
        assert!(
            SerializeInto::to_vec(&stored).unwrap().len()
                <= SerializeInto::to_vec(&good.clone().strip_secret_key_material()).unwrap().len()
        );
        // A fresh directory takes the poisoned key too, minimised.
        let d2 = Directory::new(t.path().join("d2"));
        assert_eq!(d2.import(&armored(&poisoned), later).unwrap().stored, [addr("a.test")]);
    }

    /// Review attack 3: the thief of a key its operator revoked makes a "transition".
    #[test]
    fn a_revoked_key_certifies_nothing() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("d"));
        let old = mix("a.test", "middleman");
        d.import(&armored(&old), t0()).unwrap();
        let at = t0() + Duration::from_secs(3600);
        let revoked = keys::revoke(&old, "compromised", at).unwrap().strip_secret_key_material();
        let n = keys::generate("Mix", &Modes::parse("middleman").unwrap(), &addr("a.test"), at, keys::SUBKEY_VALIDITY)
            .unwrap();
        let later = at + Duration::from_secs(60);
        let e = keys::transition(
            &old,
            "Evil",
            &Modes::parse("middleman,exitpublic").unwrap(),
            &addr("a.test"),
            later,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap()
        .strip_secret_key_material();
        // The revocation already known, then the thief's transition alone: not taken.
        d.import(&armored(&revoked), later).unwrap();
        let r = d.import(&armored(&e), later).unwrap();
        assert_ne!(r.replaced, [(addr("a.test"), Replacement::Certified)]);
        assert_eq!(r.replaced, [(addr("a.test"), Replacement::Revoked)], "a revoked address is free, as before");
        // All three at once in a fresh copy: the thief's key and the operator's are a conflict, neither wins.
        let d2 = Directory::new(t.path().join("d2"));
        d2.import(&armored(&old), t0()).unwrap();
        let mut input = armored(&revoked);
        input.extend(armored(&n));
        input.extend(armored(&e));
        let r = d2.import(&input, later).unwrap();
        assert!(r.replaced.is_empty());
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(used(&d2, "a.test", later), None);
    }

    /// Issue 14: the trusted pingers' newest valid certification is kept (one each); a
    /// stranger's, an older one and a flood are not; `usable` reads the median.
    #[test]
    fn a_trusted_pingers_newest_ranking_is_kept_and_nothing_else() {
        use crate::mixes::ranking::{self, Ranking};
        let t = tempfile::tempdir().unwrap();
        let pinger = CertBuilder::new().add_userid("p <p@ping.test>").set_creation_time(t0()).generate().unwrap().0;
        let stranger = CertBuilder::new().add_userid("s <s@ping.test>").set_creation_time(t0()).generate().unwrap().0;
        let d = Directory::new(t.path().join("d")).with_pingers(vec![pinger.clone()]);
        let m = mix("a.test", "middleman");
        let r =
            |rel: f64| Ranking { reliability: rel, latency: Duration::from_secs(600), pings: 50, broken_next: vec![] };
        let mut c = m.clone();
        for (by, rel, at) in [
            (&pinger, 0.5, t0()),
            (&pinger, 0.99, t0() + Duration::from_secs(60)),
            (&stranger, 0.1, t0() + Duration::from_secs(90)),
        ] {
            c = c.insert_packets(ranking::certify(by, &m, &r(rel), at, ranking::VALIDITY).unwrap()).unwrap().0;
        }
        let at = t0() + Duration::from_secs(120);
        d.import(&armored(&c), at).unwrap();
        let stored = d.get(&addr("a.test")).unwrap().unwrap();
        assert_eq!(stored.userids().next().unwrap().certifications().count(), 1);
        let got = d.usable(at).unwrap()[0].standing.clone().unwrap();
        assert_eq!((got.reliability, got.pingers), (0.99, 1));
        // Without trusted pingers nothing is kept nor read, as before.
        let plain = Directory::new(t.path().join("plain"));
        plain.import(&armored(&c), at).unwrap();
        assert_eq!(plain.get(&addr("a.test")).unwrap().unwrap().userids().next().unwrap().certifications().count(), 0);
        assert!(plain.usable(at).unwrap()[0].standing.is_none());
        // Expired, the certification drops out at the next store.
        let late = t0() + Duration::from_secs(86400) + ranking::VALIDITY;
        let (rotated, _) = keys::rotate(m.clone(), late, keys::SUBKEY_VALIDITY).unwrap();
        d.import(&armored(&rotated.strip_secret_key_material()), late).unwrap();
        assert_eq!(d.get(&addr("a.test")).unwrap().unwrap().userids().next().unwrap().certifications().count(), 0);
        assert!(d.usable(late).unwrap()[0].standing.is_none());
    }

    #[test]
    fn future_subkeys_are_not_used() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let tomorrow = t0() + Duration::from_secs(86400);
        let bare = CertBuilder::new()
            .set_creation_time(t0())
            .set_primary_key_flags(openpgp::types::KeyFlags::empty().set_certification())
            .add_userid("F (mixtasy-mode:middleman) <mixtasy@f.test>")
            .generate()
            .unwrap()
            .0;
        let (future, _) = keys::rotate(bare, tomorrow, keys::SUBKEY_VALIDITY).unwrap();
        assert_eq!(d.import(&armored(&future), t0()).unwrap().refused[0].1, Refusal::NoValidSubkey);
        // A good key with a future subkey besides: the present one is encrypted to.
        let good = mix("a.test", "middleman");
        let (with_future, _) = keys::rotate(good.clone(), tomorrow, keys::SUBKEY_VALIDITY).unwrap();
        let m = check(&with_future, t0()).unwrap();
        assert_eq!(
            m.newest_valid_subkey(t0()).unwrap().fingerprint(),
            keys::encryption_subkeys(&good)[0].0.fingerprint()
        );
    }

    #[test]
    fn two_unrelated_keys_at_first_sight_are_a_conflict() {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::new(t.path().join("directory"));
        let a = mix("a.test", "middleman");
        let b = keys::generate("B", &Modes::parse("middleman").unwrap(), &addr("a.test"), t0(), keys::SUBKEY_VALIDITY)
            .unwrap();
        let mut both = armored(&a);
        both.extend(armored(&b));
        let r = d.import(&both, t0()).unwrap();
        assert!(r.stored.is_empty());
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].1.len(), 2);
        assert!(d.usable(t0()).unwrap().is_empty(), "neither is used");
        assert_eq!(d.conflicts().unwrap().len(), 1);
        // Importing one of them again does not pick it.
        d.import(&armored(&a), t0()).unwrap();
        assert!(d.usable(t0()).unwrap().is_empty());
        // The user's word resolves it too (in a copy of the directory).
        let copy = Directory::new(t.path().join("copy"));
        copy.import(&both, t0()).unwrap();
        assert!(copy.choose("0000", t0()).is_err());
        assert_eq!(copy.choose(&b.fingerprint().to_hex(), t0()).unwrap(), addr("a.test"));
        assert_eq!(used(&copy, "a.test", t0()), Some(b.fingerprint()));
        assert!(copy.conflicts().unwrap().is_empty());
        // One revoked resolves it.
        let revoked = keys::revoke(&b, "gone", t0()).unwrap().strip_secret_key_material();
        let r = d.import(&armored(&revoked), t0()).unwrap();
        assert_eq!(r.stored, [addr("a.test")]);
        assert_eq!(used(&d, "a.test", t0()), Some(a.fingerprint()));
        assert!(d.conflicts().unwrap().is_empty());
    }
}
