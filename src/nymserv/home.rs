//! The nym server's home directory (0700): what lives where.
//!
//! - `mixtasy-nymd.toml`: settings (`config`), written last by `init`: its presence marks
//!   a complete home.
//! - `secret-key.pgp`: the server key (0600): a certification-only Ed25519 primary with
//!   the user id `Mixtasy nym server <config@DOMAIN>`, a signing subkey (inbound mail and
//!   answers are signed with it) and a cv25519 encryption subkey, rotated by
//!   `mixes::keys::rotate` at half of `KEY_VALIDITY` so that stock GnuPG users, who fetch
//!   the key rarely, always hold a valid one.
//! - `state.sqlite`: the store (`store`); `Maildir/`: where Postfix delivers the domain.
//! - `directory/`: the mixes' keys, for `mixtasy:` deliveries through the network.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::KeyFlags;
use sequoia_openpgp as openpgp;

use crate::batch::state::State;
use crate::mixes::directory::Directory;
use crate::mixes::keys;
use crate::nymserv::config::{self, Config};
use crate::util::fsutil;

/// How long each encryption subkey of the server key is valid; a new one is added at half.
pub const KEY_VALIDITY: Duration = Duration::from_secs(365 * 86400);

pub struct NymHome {
    pub dir: PathBuf,
}

impl NymHome {
    pub fn new(dir: PathBuf) -> Self {
        NymHome { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mixtasy-nymd.toml")
    }

    pub fn secret_key_path(&self) -> PathBuf {
        self.dir.join("secret-key.pgp")
    }

    pub fn directory(&self) -> Directory {
        Directory::new(self.dir.join("directory"))
    }

    /// Creates a new home for `domain` with a new server key: key first, config last.
    /// Refuses, changing nothing, if the directory holds a config or a key already.
    pub fn init(&self, domain: &str, now: SystemTime) -> Result<Cert> {
        if self.config_path().exists() || self.secret_key_path().exists() {
            bail!("{} is already a mixtasy-nymd home; refusing to overwrite it", self.dir.display());
        }
        let text = config::default_file(domain);
        let cfg = config::parse(&text)?;
        let (cert, _) = CertBuilder::new()
            .set_creation_time(now)
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_primary_key_flags(KeyFlags::empty().set_certification())
            .set_validity_period(None)
            .add_userid(format!("Mixtasy nym server <config@{}>", cfg.domain))
            .add_signing_subkey()
            .add_subkey(KeyFlags::empty().set_transport_encryption().set_storage_encryption(), KEY_VALIDITY, None)
            .generate()
            .context("generating the server key")?;
        fsutil::create_private_dir(&self.dir)?;
        fsutil::write_new(&self.secret_key_path(), &cert.as_tsk().to_vec()?, 0o600)?;
        crate::batch::spool::Spool::create(&self.dir.join("Maildir"))?;
        fsutil::write_new(&self.config_path(), text.as_bytes(), 0o600)?;
        fsutil::sync_dir(&self.dir)?;
        Ok(cert)
    }

    /// The settings, paths resolved against the home.
    pub fn config(&self) -> Result<Config> {
        if !self.config_path().exists() {
            bail!(
                "{} is not a mixtasy-nymd home (no mixtasy-nymd.toml): run `mixtasy-nymd init` first",
                self.dir.display()
            );
        }
        Ok(config::load(&self.config_path())?.resolve(&self.dir))
    }

    pub fn cert(&self) -> Result<Cert> {
        let path = self.secret_key_path();
        let bytes = fs::read(&path).with_context(|| format!("reading the server key {}", path.display()))?;
        Cert::from_bytes(&bytes).with_context(|| format!("parsing the server key {}", path.display()))
    }

    /// Rotates the encryption subkey (`mixes::keys::rotate`) and saves the key if it changed.
    pub fn rotate(&self, now: SystemTime) -> Result<(Cert, bool)> {
        let (cert, r) = keys::rotate(self.cert()?, now, KEY_VALIDITY)?;
        if r.changed() {
            fsutil::write_atomic(&self.secret_key_path(), &cert.as_tsk().to_vec()?, 0o600)?;
        }
        Ok((cert, r.changed()))
    }

    pub fn state(&self) -> Result<State> {
        State::open_with(&self.dir.join("state.sqlite"), crate::nymserv::store::MIGRATIONS)
    }
}
