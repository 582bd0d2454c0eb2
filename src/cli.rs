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

/// `directory fetch`: discovery from a keyserver, reported as found / kept / refused by
/// reason. A keyserver that is down or answers garbage is an error and the directory stays
/// as it was.
pub fn directory_fetch(dir: &Directory, keyserver: &str, now: SystemTime) -> Result<()> {
    let ks = crate::keyserver::Keyserver::new(keyserver, std::time::Duration::from_secs(60))?;
    let answer = ks.fetch_all()?;
    let (report, pruned) = dir.refresh(answer.as_deref(), now)?;
    let found = report.stored.len() + report.kept_newer.len() + report.refused.len();
    println!("found {found}, kept {}, refused {}", report.stored.len() + report.kept_newer.len(), report.refused.len());
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, why) in &report.refused {
        *reasons.entry(why.to_string()).or_default() += 1;
    }
    for (why, n) in reasons {
        println!("  refused {n}: {why}");
    }
    for a in pruned {
        println!("  removed {a}: no subkey valid now");
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
