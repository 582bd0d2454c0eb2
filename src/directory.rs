//! The directory of mix keys (D8, thesis 6.3.2): certs checked against the key format,
//! stored one file per mix under `HOME/directory/<address>.pgp`.
//!
//! A cert is refused whole, with its reason, unless it has exactly one user id of the form
//! `Name (mixtasy-mode:MODES) <mixtasy@FQDN>`, a certification-only primary, and an
//! encryption subkey valid now. Both the sender and the node keep one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sequoia_openpgp as openpgp;
use openpgp::cert::CertParser;
use openpgp::packet::key;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::MarshalInto;
use openpgp::Cert;

use crate::address::MixAddress;
use crate::fsutil;
use crate::keys::{self, Validity};
use crate::modes::{Modes, ModesError};

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
    #[error("primary key may do more than certify")]
    PrimaryNotCertifyOnly,
    #[error("no encryption subkey valid now")]
    NoValidSubkey,
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
    subkeys.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    if !subkeys.iter().any(|(_, v)| v.valid_at(now, Duration::ZERO)) {
        return Err(Refusal::NoValidSubkey);
    }
    Ok(Mix { address, name, modes, cert: cert.clone(), subkeys })
}

/// Every check of `check` but the subkeys': whether this is a mix key at all (user id,
/// modes, a valid certify-only primary). A node restoring an old backup needs no more:
/// its first round adds a subkey.
pub fn identity(cert: &Cert, now: SystemTime) -> Result<(MixAddress, String, Modes), Refusal> {
    let uids: Vec<_> = cert.userids().collect();
    if uids.len() != 1 {
        return Err(Refusal::UserIdCount(uids.len()));
    }
    let uid = std::str::from_utf8(uids[0].userid().value()).map_err(|_| Refusal::UserIdSyntax)?;
    let (name, comment, address) = split_user_id(uid).ok_or(Refusal::UserIdSyntax)?;
    let address = MixAddress::parse(address).map_err(|_| Refusal::NotMixAddress)?;
    if !address.as_str().eq_ignore_ascii_case(uid.rsplit_once('<').map(|(_, a)| a.trim_end_matches('>')).unwrap_or("")) {
        return Err(Refusal::NotMixAddress);
    }
    // Feature statements are separated by one space; each is `key:value,value`.
    let statements: Vec<&str> = comment.split(' ').collect();
    if statements.iter().any(|s| s.is_empty()) {
        return Err(Refusal::UserIdSyntax);
    }
    let modes = statements
        .iter()
        .find_map(|s| s.strip_prefix("mixtasy-mode:"))
        .ok_or(Refusal::NoModes)?;
    let modes = Modes::parse(modes).map_err(Refusal::Modes)?;
    let policy = StandardPolicy::new();
    let vc = cert.with_policy(&policy, now).map_err(|_| Refusal::Invalid)?;
    vc.alive().map_err(|_| Refusal::Invalid)?;
    if !matches!(vc.revocation_status(), openpgp::types::RevocationStatus::NotAsFarAsWeKnow) {
        return Err(Refusal::Invalid);
    }
    let flags = vc.primary_key().key_flags().unwrap_or_else(openpgp::types::KeyFlags::empty);
    if flags != openpgp::types::KeyFlags::empty().set_certification() {
        return Err(Refusal::PrimaryNotCertifyOnly);
    }
    Ok((address, name.to_string(), modes))
}

/// What an import did, for the report.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub stored: Vec<MixAddress>,
    /// Another key for a mix already stored, older than the stored one: not taken.
    pub kept_newer: Vec<MixAddress>,
    /// A description of the refused cert (its address or fingerprint) and why.
    pub refused: Vec<(String, Refusal)>,
}

/// A directory of mix keys on disk.
pub struct Directory {
    dir: PathBuf,
}

impl Directory {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Directory { dir: dir.into() }
    }

    fn file(&self, address: &MixAddress) -> PathBuf {
        self.dir.join(format!("{address}.pgp"))
    }

    /// Checks every cert in `data` (armored or binary, one or many) and stores the good ones.
    /// A mix already present is merged if it is the same key, else replaced by the copy with
    /// the newer valid subkey.
    pub fn import(&self, data: &[u8], now: SystemTime) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let parser = match CertParser::from_bytes(data) {
            Ok(p) => p,
            Err(e) => {
                report.refused.push(("input".into(), Refusal::NotACert(e.to_string())));
                return Ok(report);
            }
        };
        for cert in parser {
            let cert = match cert {
                Ok(c) => c.strip_secret_key_material(),
                Err(e) => {
                    report.refused.push(("input".into(), Refusal::NotACert(format!("{e:#}"))));
                    continue;
                }
            };
            let mix = match check(&cert, now) {
                Ok(m) => m,
                Err(r) => {
                    report.refused.push((cert.fingerprint().to_hex(), r));
                    continue;
                }
            };
            let merged = match self.get(&mix.address)? {
                Some(old) if old.fingerprint() == cert.fingerprint() => old.merge_public(cert).context("merging certificate")?,
                Some(old) if newest_created(&old) > newest_created(&cert) => {
                    report.kept_newer.push(mix.address);
                    continue;
                }
                _ => cert,
            };
            fsutil::create_private_dir(&self.dir)?;
            fsutil::write_atomic(&self.file(&mix.address), &merged.to_vec()?, 0o600)?;
            report.stored.push(mix.address);
        }
        Ok(report)
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

    /// Every stored cert, by address (files that no longer parse are reported as errors).
    pub fn certs(&self) -> Result<BTreeMap<MixAddress, Cert>> {
        let mut out = BTreeMap::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(addr) = name.strip_suffix(".pgp").and_then(|a| MixAddress::parse(a).ok()) else { continue };
            let cert = Cert::from_bytes(&fs::read(&path)?).with_context(|| format!("reading {}", path.display()))?;
            out.insert(addr, cert);
        }
        Ok(out)
    }

    /// Removes stored mixes that no longer pass D8 at `now` (no subkey valid any more);
    /// returns their addresses.
    pub fn prune(&self, now: SystemTime) -> Result<Vec<MixAddress>> {
        let mut gone = Vec::new();
        for (addr, cert) in self.certs()? {
            if check(&cert, now).is_err() {
                let path = self.file(&addr);
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                gone.push(addr);
            }
        }
        if !gone.is_empty() {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(gone)
    }

    /// Discovery (D8): merges a keyserver's answer (`None`: it has no mix keys) and prunes
    /// mixes without a valid subkey. An answer with no certificate in it at all is an error
    /// and changes nothing.
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

    /// The mixes usable at `now`: stored certs that pass D8 now.
    pub fn usable(&self, now: SystemTime) -> Result<Vec<Mix>> {
        Ok(self.certs()?.values().filter_map(|c| check(c, now).ok()).collect())
    }
}

fn newest_created(cert: &Cert) -> Option<SystemTime> {
    keys::encryption_subkeys(cert).iter().map(|(_, v)| v.created).max()
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
        keys::generate("Mix", &Modes::parse(modes).unwrap(), &MixAddress::for_fqdn(fqdn).unwrap(), t0(), keys::SUBKEY_VALIDITY).unwrap()
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
            for u in uids { b = b.add_userid(*u); }
            if sub { b = b.add_subkey(enc.clone(), keys::SUBKEY_VALIDITY, None); }
            b.generate().unwrap().0
        };
        let cert_only = openpgp::types::KeyFlags::empty().set_certification();
        let cases = [
            (build(&["A (mixtasy-mode:middleman) <mixtasy@a.test>", "B (mixtasy-mode:middleman) <mixtasy@b.test>"], cert_only.clone(), true), Refusal::UserIdCount(2)),
            (build(&["A (mixtasy-mode:middleman) <bob@a.test>"], cert_only.clone(), true), Refusal::NotMixAddress),
            (build(&["A (mixtasy-mode:middleman,teleport) <mixtasy@a.test>"], cert_only.clone(), true), Refusal::Modes(ModesError::Unknown("teleport".into()))),
            (build(&["A (hello) <mixtasy@a.test>"], cert_only.clone(), true), Refusal::NoModes),
            (build(&["A <mixtasy@a.test>"], cert_only.clone(), true), Refusal::UserIdSyntax),
            (build(&["A (mixtasy-mode:middleman) <mixtasy@a.test>"], cert_only.clone(), false), Refusal::NoValidSubkey),
            (build(&["A (mixtasy-mode:middleman) <mixtasy@a.test>"], cert_only.clone().set_storage_encryption(), true), Refusal::PrimaryNotCertifyOnly),
        ];
        for (cert, why) in cases {
            let r = d.import(&SerializeInto::to_vec(&cert).unwrap(), t0()).unwrap();
            assert!(r.stored.is_empty());
            assert_eq!(r.refused[0].1, why);
        }
        assert!(d.certs().unwrap().is_empty(), "nothing of a refused cert is stored");
        let r = d.import(b"garbage", t0()).unwrap();
        assert!(matches!(r.refused[0].1, Refusal::NotACert(_)));
    }
}
