//! What both command-line tools share: the clock option and the directory commands.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::directory::{self, Directory};
use crate::wkd;

/// The time to act at: now, or `--now UNIX_SECONDS` (hidden; for tests that use keys with
/// fixed validity, like the GnuPG test vectors).
pub fn now(fixed: Option<u64>) -> SystemTime {
    fixed.map_or_else(SystemTime::now, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

pub use crate::clock::utc;

/// What an import or fetch reports beyond stored and refused: replacements, keys kept out
/// by the established one, conflicts. Addresses are printed: this is the user's own
/// directory on their own terminal, never a node's log.
fn report_rules(report: &directory::ImportReport, indent: &str) {
    for (a, why) in &report.replaced {
        println!("{indent}replaced {a}: {why}");
    }
    for (a, fpr) in &report.kept_established {
        println!("{indent}ignored {a} key {fpr}: another key is established for it and does not certify this one");
    }
    for (a, fprs) in &report.conflicts {
        println!("{indent}conflict {a}: {} unrelated keys ({}), neither is used", fprs.len(), fprs.join(", "));
    }
}

/// `directory import`: prints one line per stored or refused cert. Fails (exit 2) only if
/// nothing at all was stored, kept or found in conflict.
pub fn directory_import(dir: &Directory, files: &[PathBuf], now: SystemTime, wkd: Option<&wkd::Options>) -> Result<()> {
    let data = directory::read_inputs(files)?;
    let report = dir.import(&data, now)?;
    for a in &report.stored {
        println!("stored {a}");
    }
    report_rules(&report, "");
    for (what, why) in &report.refused {
        println!("refused {what}: {why}");
    }
    if let Some(options) = wkd {
        verify_wkd(dir, &report.stored, options, now)?;
    }
    if report.stored.is_empty() && report.kept_established.is_empty() && report.conflicts.is_empty() {
        anyhow::bail!("no mix key imported ({} refused)", report.refused.len());
    }
    Ok(())
}

/// `directory fetch`: discovery from a keyserver, reported as found / kept / refused by
/// reason. A keyserver that is down or answers garbage is an error and the directory stays
/// as it was.
pub fn directory_fetch(dir: &Directory, keyserver: &str, now: SystemTime, wkd: Option<&wkd::Options>) -> Result<()> {
    let ks = crate::keyserver::Keyserver::new(keyserver, std::time::Duration::from_secs(60))?;
    let answer = ks.fetch_all()?;
    let (report, pruned) = dir.refresh(answer.as_deref(), now)?;
    let in_conflict: usize = report.conflicts.iter().map(|(_, f)| f.len()).sum();
    let found = report.stored.len() + report.kept_established.len() + in_conflict + report.refused.len();
    println!("found {found}, kept {}, refused {}", report.stored.len(), report.refused.len());
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, why) in &report.refused {
        *reasons.entry(why.to_string()).or_default() += 1;
    }
    for (why, n) in reasons {
        println!("  refused {n}: {why}");
    }
    report_rules(&report, "  ");
    for a in pruned {
        println!("  removed {a}: revoked, or no valid subkey for 7 days");
    }
    if let Some(options) = wkd {
        verify_wkd(dir, &report.stored, options, now)?;
    }
    Ok(())
}

/// `directory verify-wkd` (and `--wkd` on import and fetch): asks the WKD of each stored
/// exit mix's own domain which key it holds for the mix address, and records the answer
/// with the entry. A mix is the exit for its domain's recipients only while that record
/// names its key's exact fingerprint. A failed lookup changes nothing.
pub fn verify_wkd(dir: &Directory, only: &[crate::address::MixAddress], options: &wkd::Options, now: SystemTime) -> Result<()> {
    let client = wkd::Wkd::new(options, std::time::Duration::from_secs(30))?;
    for mix in dir.usable(now)? {
        if !mix.modes.exit() || !(only.is_empty() || only.contains(&mix.address)) {
            continue;
        }
        let fpr = mix.cert.fingerprint().to_hex();
        match client.lookup(&mix.address) {
            Ok(found) if found.iter().any(|c| c.fingerprint().to_hex() == fpr) => {
                dir.set_wkd(&mix.address, Some(&fpr))?;
                println!("wkd {}: the domain vouches for key {fpr}", mix.address);
            }
            Ok(found) => {
                dir.set_wkd(&mix.address, None)?;
                match found.first() {
                    Some(other) => println!("wkd {}: the domain holds another key ({}): not vouched", mix.address, other.fingerprint().to_hex()),
                    None => println!("wkd {}: the domain holds no key: not vouched", mix.address),
                }
            }
            Err(e) => println!("wkd {}: lookup failed, record unchanged: {e:#}", mix.address),
        }
    }
    Ok(())
}

/// `directory choose FPR`: ends a conflict with the key the user checked out of band.
pub fn directory_choose(dir: &Directory, fingerprint: &str, now: SystemTime) -> Result<()> {
    let address = dir.choose(fingerprint, now)?;
    println!("stored {address}: key {} chosen", fingerprint.replace(' ', "").to_ascii_uppercase());
    Ok(())
}

/// `directory list`: address, modes, expiry of the newest valid subkey, whether its domain
/// vouches for it (WKD); then every unresolved conflict.
pub fn directory_list(dir: &Directory, now: SystemTime) -> Result<()> {
    let vouched: Vec<_> = dir.usable(now)?.into_iter().filter(|m| m.wkd).map(|m| m.address).collect();
    for (addr, cert) in dir.certs()? {
        match directory::check(&cert, now) {
            Ok(m) => {
                let wkd = if vouched.contains(&addr) { "  domain-vouched (WKD)" } else { "" };
                println!("{addr}  {}  subkey expires {}{wkd}", m.modes, m.newest_expiry(now).map_or("never".into(), utc))
            }
            Err(why) => println!("{addr}  unusable: {why}"),
        }
    }
    for (addr, fprs) in dir.conflicts()? {
        println!("{addr}  conflict: {} unrelated keys ({}), neither is used", fprs.len(), fprs.join(", "));
    }
    Ok(())
}
