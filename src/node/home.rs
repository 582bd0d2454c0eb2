//! The node's home directory (0700): what lives where.
//!
//! - `mixtasyd.toml`: settings (config), written last by `init`: its presence marks a
//!   complete home.
//! - `secret-key.pgp`: the mix key with its secret subkeys (0600).
//! - `directory/`: other mixes' public keys (for dummies).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::mixes::address::MixAddress;
use crate::mixes::directory::Directory;
use crate::mixes::keys::{self, KeyRing};
use crate::mixes::modes::Modes;
use crate::node::config::{self, Config};
use crate::node::counters;
use crate::node::peel::Node;
use crate::util::fsutil;

pub struct NodeHome {
    pub dir: PathBuf,
}

/// The directory holds no complete home: `init` writes `mixtasyd.toml` last.
#[derive(Debug, thiserror::Error)]
#[error("{} is not a mixtasyd home (no mixtasyd.toml): run `mixtasyd init` first", dir.display())]
pub struct NotAHome {
    pub dir: PathBuf,
}

impl NodeHome {
    /// A directory to make a home in (`init`), or to report on as it is (`check`): nothing
    /// is checked. Every other command uses `open`.
    pub fn new(dir: PathBuf) -> Self {
        NodeHome { dir }
    }

    /// An existing home, checked once for every command: it holds a config (so it is
    /// complete) and belongs to whoever runs this (`check_owner`).
    pub fn open(dir: PathBuf) -> Result<Self> {
        let home = NodeHome { dir };
        home.check_owner()?;
        if !home.config_path().exists() {
            return Err(NotAHome { dir: home.dir }.into());
        }
        Ok(home)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("mixtasyd.toml")
    }

    pub fn secret_key_path(&self) -> PathBuf {
        self.dir.join("secret-key.pgp")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.sqlite")
    }

    /// The node's directory, keeping and reading the rankings of the pingers trusted in
    /// `HOME/pingers/` (`directory trust-pinger`). Unreadable pinger files count as no
    /// trusted pinger: a round never stops for them (`directory list` shows the error).
    pub fn directory(&self) -> Directory {
        Directory::new(self.dir.join("directory")).with_pingers(self.pingers().certs().unwrap_or_default())
    }

    pub fn pingers(&self) -> crate::mixes::pingers::Pingers {
        crate::mixes::pingers::Pingers::new(self.dir.join("pingers"))
    }

    /// Creates a new home with a new key: the key first, the config last. Refuses, changing
    /// nothing, if the directory already holds a config or a key.
    pub fn init(&self, address: &MixAddress, modes: &Modes, name: &str, now: SystemTime) -> Result<Cert> {
        self.refuse_existing()?;
        if name.contains(['(', ')', '<', '>']) {
            bail!("--name must not contain parentheses or angle brackets (they delimit the user id)");
        }
        let defaults = config::parse(&config::default_file(address, modes)).expect("default config is valid");
        let cert = keys::generate(name, modes, address, now, defaults.subkey_validity)?;
        self.write_new_home(&cert, address, modes)?;
        Ok(cert)
    }

    /// Creates a new home around an existing secret key (a backup made with
    /// `key export --secret`); address and modes come from its user id.
    pub fn init_from_key(&self, secret_key: &[u8], now: SystemTime) -> Result<Cert> {
        self.refuse_existing()?;
        let cert = Cert::from_bytes(secret_key).context("parsing the secret key")?;
        // A backup older than a subkey's life has no valid subkey left: it is restored all
        // the same, and the first round (or `key rotate`) adds one.
        let (address, _, modes) = crate::mixes::directory::identity(&cert, now)
            .map_err(|why| anyhow::anyhow!("the key is not a mix key: {why}"))?;
        // The primary's secret certifies new subkeys.
        if !cert.primary_key().key().has_secret() {
            bail!("the key has no secret primary key: export it with `key export --secret`");
        }
        self.write_new_home(&cert, &address, &modes)?;
        Ok(cert)
    }

    fn refuse_existing(&self) -> Result<()> {
        if self.config_path().exists() || self.secret_key_path().exists() {
            bail!("{} is already a mixtasyd home; refusing to overwrite it", self.dir.display());
        }
        Ok(())
    }

    fn write_new_home(&self, cert: &Cert, address: &MixAddress, modes: &Modes) -> Result<()> {
        fsutil::create_private_dir(&self.dir)?;
        fsutil::write_new(&self.secret_key_path(), &cert.as_tsk().to_vec()?, 0o600)?;
        // The default Maildir, so a fresh home can run rounds; an MTA's own Maildir
        // (setting `maildir`) is the MTA's to create.
        crate::batch::spool::Spool::create(&self.dir.join("Maildir"))?;
        fsutil::write_new(&self.config_path(), config::default_file(address, modes).as_bytes(), 0o600)?;
        fsutil::sync_dir(&self.dir)
    }

    pub fn config(&self) -> Result<Config> {
        config::load(&self.config_path())
    }

    /// The config with paths resolved against the home.
    pub fn resolved_config(&self) -> Result<Config> {
        Ok(self.config()?.resolve(&self.dir))
    }

    pub fn cert(&self) -> Result<Cert> {
        let path = self.secret_key_path();
        let bytes = fs::read(&path).with_context(|| format!("reading the mix key {}", path.display()))?;
        Cert::from_bytes(&bytes).with_context(|| format!("parsing the mix key {}", path.display()))
    }

    /// Replaces the key file with `cert` (secrets included). The old file is opened first,
    /// the new one renamed into place, then the old inode, still open, is overwritten with
    /// zeros and synced: destroyed secret subkeys do not linger in the old file's blocks,
    /// and no crash window leaves the home without a whole key file.
    pub fn save_cert(&self, cert: &Cert) -> Result<()> {
        use std::io::{Seek, Write};
        let path = self.secret_key_path();
        let old = fs::OpenOptions::new().write(true).open(&path).ok();
        fsutil::write_atomic(&path, &cert.as_tsk().to_vec()?, 0o600)?;
        if let Some(mut old) = old {
            let len = old.metadata().map(|m| m.len()).unwrap_or(0) as usize;
            old.seek(std::io::SeekFrom::Start(0))?;
            old.write_all(&vec![0u8; len])?;
            old.sync_all()?;
        }
        Ok(())
    }

    /// Rotates the mix key at `now` (D8). If anything changed, the publish flag is committed
    /// first, then the key saved, then the change counted: a crash at worst publishes an
    /// unchanged key once more, or loses a count, never a publication.
    /// Returns the key as it is now.
    pub fn rotate(
        &self,
        now: SystemTime,
        config: &Config,
        state: &mut crate::batch::state::State,
    ) -> Result<(Cert, keys::Rotation)> {
        let (cert, rotation) = keys::rotate(self.cert()?, now, config.subkey_validity)?;
        if rotation.changed() {
            state.set_meta(counters::meta::PUBLISH_PENDING, 1)?;
            self.save_cert(&cert)?;
            counters::bump(state.conn(), counters::KEY_ADDED, rotation.added as i64)?;
            counters::bump(state.conn(), counters::KEY_DESTROYED, rotation.destroyed as i64)?;
        }
        Ok((cert, rotation))
    }

    /// A key transition (`key transition`): a new key certified by the old primary, with
    /// `modes` and `name` (default: the current ones). Order: publish flag, key, then the
    /// config's `modes`: a crash after the key leaves the config's modes stale, which the
    /// next `key transition --modes` (or an edit) puts right; the key is never lost.
    /// Returns (old public key, new key).
    pub fn transition(&self, modes: Option<Modes>, name: Option<&str>, now: SystemTime) -> Result<(Cert, Cert)> {
        let config = self.config()?;
        let old = self.cert()?;
        let (address, old_name, old_modes) = crate::mixes::directory::identity(&old, now)
            .map_err(|why| anyhow::anyhow!("the mix key is not a mix key: {why}"))?;
        let name = name.unwrap_or(&old_name);
        if name.contains(['(', ')', '<', '>']) {
            bail!("--name must not contain parentheses or angle brackets (they delimit the user id)");
        }
        let modes = modes.unwrap_or(old_modes);
        let new = keys::transition(&old, name, &modes, &address, now, config.subkey_validity)?;
        self.replace_key(&new)?;
        if modes != config.modes {
            self.set_config_modes(&modes)?;
        }
        Ok((old.strip_secret_key_material(), new))
    }

    /// `key revoke`: revokes the mix key and puts a new one (same address, modes and name)
    /// in its place. Returns (revoked public key, new key).
    pub fn revoke_and_replace(&self, reason: &str, now: SystemTime) -> Result<(Cert, Cert)> {
        let config = self.config()?;
        let old = self.cert()?;
        let (address, name, modes) = crate::mixes::directory::identity(&old, now)
            .map_err(|why| anyhow::anyhow!("the mix key is not a mix key: {why}"))?;
        let revoked = keys::revoke(&old, reason, now)?.strip_secret_key_material();
        let new = keys::generate(&name, &modes, &address, now, config.subkey_validity)?;
        self.replace_key(&new)?;
        Ok((revoked, new))
    }

    /// Saves a new mix key, the publish flag committed first (as `rotate` does).
    fn replace_key(&self, new: &Cert) -> Result<()> {
        let state = crate::batch::state::State::open(&self.state_path())?;
        state.set_meta(counters::meta::PUBLISH_PENDING, 1)?;
        self.save_cert(new)
    }

    /// Rewrites the `modes` line of the config file, keeping every other line.
    fn set_config_modes(&self, modes: &Modes) -> Result<()> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let out: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("modes") && l.contains('=') {
                    format!("modes = \"{modes}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        config::parse(&out).context("the config with the new modes")?;
        fsutil::write_atomic(&path, out.as_bytes(), 0o600)
    }

    /// Refuses to act on a home that belongs to another user: what we wrote would belong to
    /// us, and the owner's next round could not open it (a root-owned `state.sqlite`). A home
    /// that does not exist yet is anyone's to create.
    pub fn check_owner(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::metadata(&self.dir) else { return Ok(()) };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            bail!(
                "{} belongs to {}, and this runs as {}: run node commands as its owner (e.g. runuser -u {} -- mixtasyd ...), or files made now would stop its rounds",
                self.dir.display(),
                user_name(meta.uid()),
                user_name(me),
                user_name(meta.uid())
            );
        }
        Ok(())
    }

    /// Loads what peeling needs.
    pub fn node(&self) -> Result<(Config, Node)> {
        let config = self.resolved_config()?;
        let node = node_of(&config, &self.cert()?)?;
        Ok((config, node))
    }
}

/// Records that the current mix key reached the keyserver at `now`: no publication is
/// pending any more.
pub fn record_published(state: &crate::batch::state::State, now: SystemTime) -> Result<()> {
    state.set_meta(counters::meta::PUBLISH_PENDING, 0)?;
    state.set_meta(counters::meta::LAST_PUBLISH, crate::batch::state::unix(now))
}

/// What peeling needs, from a loaded config and key.
pub fn node_of(config: &Config, cert: &Cert) -> Result<Node> {
    let ring = KeyRing::from_cert(cert, config.clock_skew)?;
    Ok(Node { address: config.address.clone(), modes: config.modes, ring })
}

/// The login name of `uid` (`uid N` when it has none), for messages about owners.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pw's strings.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
    format!("{name} (uid {uid})")
}

/// Lists whatever in `dir` is group- or world-accessible (the tests check the home with it).
pub fn loose_permissions(dir: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if fs::symlink_metadata(&d)?.permissions().mode() & 0o077 != 0 {
            out.push(d.clone());
        }
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.permissions().mode() & 0o077 != 0 {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}
