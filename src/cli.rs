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

/// Formats a time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (H. Hinnant), proleptic Gregorian.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `directory import`: prints one line per stored or refused cert. Fails (exit 2) only if
/// nothing at all was stored.
pub fn directory_import(dir: &Directory, files: &[PathBuf], now: SystemTime) -> Result<()> {
    let data = directory::read_inputs(files)?;
    let report = dir.import(&data, now)?;
    for a in &report.stored {
        println!("stored {a}");
    }
    for (what, why) in &report.refused {
        println!("refused {what}: {why}");
    }
    if report.stored.is_empty() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn utc_format() {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1795392000);
        assert_eq!(super::utc(t), "2026-11-23 00:00:00 UTC");
    }
}
