//! What both command-line tools share: the clock option and the directory commands.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::directory::{self, Directory};

/// The time to act at: now, or `--now UNIX_SECONDS` (hidden; for tests that use keys with
/// fixed validity, like the GnuPG test vectors).
pub fn now(fixed: Option<u64>) -> SystemTime {
    fixed.map_or_else(SystemTime::now, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

pub use crate::clock::utc;

/// `directory import`: prints one line per stored or refused cert. Fails (exit 2) only if
/// nothing at all was stored.
pub fn directory_import(dir: &Directory, files: &[PathBuf], now: SystemTime) -> Result<()> {
    let data = directory::read_inputs(files)?;
    let report = dir.import(&data, now)?;
    for a in &report.stored {
        println!("stored {a}");
    }
    for a in &report.kept_newer {
        println!("kept {a}: the stored key is newer");
    }
    for (what, why) in &report.refused {
        println!("refused {what}: {why}");
    }
    if report.stored.is_empty() && report.kept_newer.is_empty() {
        anyhow::bail!("no mix key imported ({} refused)", report.refused.len());
    }
    Ok(())
}

/// `directory list`: address, modes, expiry of the newest valid subkey.
pub fn directory_list(dir: &Directory, now: SystemTime) -> Result<()> {
    for (addr, cert) in dir.certs()? {
        match directory::check(&cert, now) {
            Ok(m) => println!("{addr}  {}  subkey expires {}", m.modes, m.newest_expiry(now).map_or("never".into(), utc)),
            Err(why) => println!("{addr}  unusable: {why}"),
        }
    }
    Ok(())
}
