//! A nym as its owner keeps it: `HOME/nyms/NAME@DOMAIN/` (0700) holding the nym's secret
//! key (`key.pgp`, 0600, unless the user keeps it in a file of their own and names it with
//! `--key`), the server's public key (`server.asc`) and the passphrases (`settings`, 0600,
//! `field: value` lines as in a request). Nothing here ever leaves the machine except
//! through a request the user asked for.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::parse::Parse;
use openpgp::serialize::MarshalInto;
use openpgp::types::KeyFlags;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::util::fsutil;

/// The passphrases the client needs to read its mail. Every one ever set is kept, newest
/// last: mail the server sealed before it took a change is still read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The hSub passphrases: which articles of the group are ours.
    pub hsub: Vec<String>,
    /// The `symmetric:` passphrases of the outer layer, if the nym asked for one.
    pub symmetric: Vec<String>,
}

impl Settings {
    fn parse(text: &str) -> Self {
        let mut s = Settings::default();
        for l in text.lines() {
            if let Some((f, v)) = l.split_once(':') {
                let v = v.trim().to_string();
                match f.trim() {
                    "hsub" if !v.is_empty() => s.hsub.push(v),
                    "symmetric" if !v.is_empty() => s.symmetric.push(v),
                    _ => {}
                }
            }
        }
        s
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (f, vs) in [("hsub", &self.hsub), ("symmetric", &self.symmetric)] {
            for v in vs {
                out.push_str(&format!("{f}: {v}\n"));
            }
        }
        out
    }

    /// Adds the passphrases a request sets (kept once each, newest last).
    pub fn add(&mut self, hsub: Option<&str>, symmetric: Option<&str>) {
        for (list, v) in [(&mut self.hsub, hsub), (&mut self.symmetric, symmetric)] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                list.retain(|x| x != v);
                list.push(v.to_string());
            }
        }
    }
}

/// One nym of this client.
pub struct Profile {
    pub address: String,
    dir: PathBuf,
}

/// `name@domain`, lower case, checked to be a plain address (it becomes a folder name).
pub fn parse_address(address: &str) -> Result<(String, String)> {
    let a = address.trim().to_ascii_lowercase();
    let Some((name, domain)) = a.split_once('@') else { bail!("{address:?} is not NAME@DOMAIN") };
    let ok = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    };
    if !ok(name) || !ok(domain) || !domain.contains('.') {
        bail!("{address:?} is not NAME@DOMAIN (letters, digits, . - _)");
    }
    Ok((name.into(), domain.into()))
}

impl Profile {
    pub fn new(home: &Path, address: &str) -> Result<Self> {
        let (name, domain) = parse_address(address)?;
        let address = format!("{name}@{domain}");
        Ok(Profile { dir: home.join("nyms").join(&address), address })
    }

    pub fn domain(&self) -> &str {
        self.address.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    pub fn exists(&self) -> bool {
        self.dir.join("server.asc").exists()
    }

    /// Makes the profile: the nym key (generated, or `key` from the user's file, which is
    /// then read from there each time and not copied), the server key, the settings.
    /// Refuses to overwrite a profile, so a second `create` never loses a key.
    pub fn init(&self, server: &Cert, own_key: Option<&Cert>, settings: &Settings, now: SystemTime) -> Result<Cert> {
        if self.exists() {
            bail!("{} exists already: this client has that nym (delete the folder to start again)", self.dir.display());
        }
        fsutil::create_private_dir(&self.dir)?;
        let key = match own_key {
            Some(k) => k.clone(),
            None => {
                let key = generate(&self.address, now)?;
                fsutil::write_new(&self.dir.join("key.pgp"), &key.as_tsk().to_vec()?, 0o600)?;
                key
            }
        };
        self.save_settings(settings)?;
        fsutil::write_new(&self.dir.join("server.asc"), &server.armored().to_vec()?, 0o644)?;
        fsutil::sync_dir(&self.dir)?;
        Ok(key)
    }

    /// The nym key: `--key FILE` if given, else the one in the profile.
    pub fn key(&self, file: Option<&Path>) -> Result<Cert> {
        let path = file.map(Path::to_path_buf).unwrap_or_else(|| self.dir.join("key.pgp"));
        let bytes = std::fs::read(&path).with_context(|| {
            format!("reading the nym key {} (a key kept elsewhere is named with --key)", path.display())
        })?;
        let cert = Cert::from_bytes(&bytes).with_context(|| format!("{} is not an OpenPGP key", path.display()))?;
        if !cert.is_tsk() {
            bail!("{} holds no secret key", path.display());
        }
        if !cert
            .userids()
            .any(|u| u.userid().email().ok().flatten().is_some_and(|e| e.eq_ignore_ascii_case(&self.address)))
        {
            bail!("the key in {} is not for {}", path.display(), self.address);
        }
        Ok(cert)
    }

    pub fn server(&self) -> Result<Cert> {
        let p = self.dir.join("server.asc");
        let bytes = std::fs::read(&p)
            .with_context(|| format!("no nym {} in this client home (run `mixtasy nym create` first)", self.address))?;
        Cert::from_bytes(&bytes).with_context(|| p.display().to_string())
    }

    pub fn settings(&self) -> Result<Settings> {
        let p = self.dir.join("settings");
        Ok(Settings::parse(&std::fs::read_to_string(&p).with_context(|| p.display().to_string())?))
    }

    pub fn save_settings(&self, s: &Settings) -> Result<()> {
        fsutil::write_atomic(&self.dir.join("settings"), s.render().as_bytes(), 0o600)
    }

    /// The file of article Message-IDs already written to the user's Maildir.
    pub fn seen_path(&self) -> PathBuf {
        self.dir.join("seen")
    }
}

/// A nym key: one user id (the address, as the server requires), Ed25519 signing and
/// Cv25519 encryption subkeys, no expiry (the server expires idle nyms itself).
fn generate(address: &str, now: SystemTime) -> Result<Cert> {
    let (cert, _) = CertBuilder::new()
        .set_creation_time(now)
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_primary_key_flags(KeyFlags::empty().set_certification())
        .set_validity_period(None)
        .add_userid(address)
        .add_signing_subkey()
        .add_subkey(KeyFlags::empty().set_transport_encryption().set_storage_encryption(), None, None)
        .generate()
        .context("generating the nym key")?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_settings_round_trip() {
        assert_eq!(parse_address("Alice@Nym.Test").unwrap(), ("alice".into(), "nym.test".into()));
        for bad in ["alice", "../x@nym.test", "a@b", "a b@nym.test", "@nym.test"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        let mut s = Settings::default();
        s.add(Some("a: b"), None);
        s.add(Some("new"), Some("sym"));
        s.add(Some("a: b"), None);
        assert_eq!(s.hsub, ["new", "a: b"]);
        assert_eq!(Settings::parse(&s.render()), s);
    }

    #[test]
    fn a_profile_keeps_its_key_private_and_is_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let server = generate("config@nym.test", now).unwrap();
        let p = Profile::new(dir.path(), "alice@nym.test").unwrap();
        let key = p.init(&server, None, &Settings { hsub: vec!["pw".into()], symmetric: vec![] }, now).unwrap();
        assert_eq!(p.key(None).unwrap().fingerprint(), key.fingerprint());
        assert_eq!(std::fs::metadata(p.dir.join("key.pgp")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&p.dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(p.init(&server, None, &Settings::default(), now).is_err());
        assert_eq!(p.key(None).unwrap().fingerprint(), key.fingerprint(), "the first key stays");
        // A key for another address is refused.
        let other = dir.path().join("other.pgp");
        std::fs::write(&other, generate("bob@nym.test", now).unwrap().as_tsk().to_vec().unwrap()).unwrap();
        assert!(p.key(Some(&other)).is_err());
    }
}
