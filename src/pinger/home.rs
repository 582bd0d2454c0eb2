//! The pinger's home (0700): what lives where.
//!
//! - `mixtasy-pinger.toml`: settings, written last by `init` (its presence marks a home);
//! - `secret-key.pgp` (0600): the pinger key: an Ed25519 primary that certifies and signs
//!   (the mix certifications, the published files) and a cv25519 subkey pings are
//!   encrypted to;
//! - `ping-secret` (0600): 32 random bytes that key the send-time MACs of pings;
//! - `state.sqlite`: the pings (`store`); `directory/`: the mixes it pings;
//! - `Maildir/` and `public/` by default (settings `maildir`, `output`).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::KeyFlags;
use openpgp::Cert;
use rand::RngCore;
use sequoia_openpgp as openpgp;

use crate::batch::spool::Spool;
use crate::mixes::directory::Directory;
use crate::pinger::config::{self, Config};
use crate::util::fsutil;

/// Length of the ping secret.
pub const SECRET_LEN: usize = 32;

pub struct PingerHome {
    pub dir: PathBuf,
}

impl PingerHome {
    pub fn new(dir: PathBuf) -> Self {
        PingerHome { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mixtasy-pinger.toml")
    }

    pub fn secret_key_path(&self) -> PathBuf {
        self.dir.join("secret-key.pgp")
    }

    pub fn ping_secret_path(&self) -> PathBuf {
        self.dir.join("ping-secret")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.sqlite")
    }

    pub fn directory(&self) -> Directory {
        Directory::new(self.dir.join("directory"))
    }

    /// Makes a new home: key and secret first, the settings last. Refuses, changing nothing,
    /// when a settings file or key is there already.
    pub fn init(&self, address: &str, now: SystemTime) -> Result<Cert> {
        if !crate::mixes::address::plausible(address) {
            bail!("--address must be an email address, local@FQDN");
        }
        if self.config_path().exists() || self.secret_key_path().exists() {
            bail!("{} already holds a pinger home; remove it first to start afresh", self.dir.display());
        }
        let (cert, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(now)
            .set_validity_period(None)
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_subkey(KeyFlags::empty().set_transport_encryption().set_storage_encryption(), None, None)
            .add_userid(format!("Mixtasy pinger <{address}>"))
            .generate()
            .context("generating the pinger key")?;
        fsutil::create_private_dir(&self.dir)?;
        fsutil::write_new(&self.secret_key_path(), &cert.as_tsk().armored().to_vec()?, 0o600)?;
        let mut secret = [0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        fsutil::write_new(&self.ping_secret_path(), &secret, 0o600)?;
        fsutil::create_private_dir(&self.dir.join("directory"))?;
        Spool::create(&self.dir.join("Maildir"))?;
        fsutil::create_private_dir(&self.dir.join("public"))?;
        fsutil::write_new(&self.config_path(), config::default_file(address).as_bytes(), 0o600)?;
        fsutil::sync_dir(&self.dir)?;
        Ok(cert)
    }

    pub fn config(&self) -> Result<Config> {
        Ok(config::load(&self.config_path())?.resolve(&self.dir))
    }

    /// The pinger key with its secrets.
    pub fn cert(&self) -> Result<Cert> {
        let p = self.secret_key_path();
        Cert::from_bytes(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("reading the key in {}", p.display()))
    }

    pub fn ping_secret(&self) -> Result<[u8; SECRET_LEN]> {
        let p = self.ping_secret_path();
        let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        b.try_into().map_err(|_| anyhow::anyhow!("{} is not {SECRET_LEN} bytes", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_makes_a_private_home_once() {
        let t = tempfile::tempdir().unwrap();
        let h = PingerHome::new(t.path().join("p"));
        let cert = h.init("pinger@ping.test", SystemTime::now()).unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(h.dir.clone()), 0o700);
        assert_eq!(mode(h.secret_key_path()), 0o600);
        assert_eq!(mode(h.ping_secret_path()), 0o600);
        assert_eq!(h.cert().unwrap().fingerprint(), cert.fingerprint());
        assert!(h.cert().unwrap().is_tsk());
        assert_eq!(h.config().unwrap().address, "pinger@ping.test");
        assert!(h.init("pinger@ping.test", SystemTime::now()).is_err());
    }
}
