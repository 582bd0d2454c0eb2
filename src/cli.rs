//! What both command-line tools share: the clock option, the one error path (`report`:
//! only here does a failure become a line and an exit status), and the directory commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::mixes::directory::{self, Directory};
use crate::mixes::pingers::{self, Pinger, Pingers};
use crate::mixes::wkd;

/// The time to act at: now, or `--now UNIX_SECONDS` (hidden; for tests that use keys with
/// fixed validity, like the GnuPG test vectors).
pub fn now(fixed: Option<u64>) -> SystemTime {
    fixed.map_or_else(SystemTime::now, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

pub use crate::util::clock::utc;

/// The sysexits(3) statuses the programs use: the timer reads them from `--round`, mail
/// programs from `send` (which they call as their sendmail).
pub mod sysexits {
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    pub const TEMPFAIL: u8 = 75;
    pub const CONFIG: u8 = 78;
}

/// The exit status of any other failed command (clap's for a bad command line, too).
pub const EXIT_ERROR: u8 = 2;

/// A failure whose command chose its exit status (`exit_with`).
#[derive(Debug)]
struct Coded {
    code: u8,
    error: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Coded {}

/// `error`, to end the program with `code` (a sysexits status) instead of `EXIT_ERROR`.
pub fn exit_with(code: u8, error: anyhow::Error) -> anyhow::Error {
    Coded { code, error }.into()
}

/// What a failed command tells its user: one line (the whole context chain; `None` when the
/// reader of our output went away, as in `status | head`, which is no error of ours) and
/// the exit status. When the state database caused it, the line says what to do about it;
/// `state_db` names the file when the error does not.
pub fn report(err: &anyhow::Error, state_db: Option<&Path>) -> (Option<String>, u8) {
    let (err, code) = match err.downcast_ref::<Coded>() {
        Some(c) => (&c.error, c.code),
        None => (err, EXIT_ERROR),
    };
    if err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        return (None, 0);
    }
    (Some(explain(err, state_db)), code)
}

/// Ends a program: its exit status, or `report`'s line on stderr as `program: line` and its
/// status.
pub fn finish(program: &str, result: Result<ExitCode>, state_db: Option<&Path>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let (line, code) = report(&e, state_db);
            if let Some(line) = line {
                eprintln!("{program}: {line}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error's line, and when the state database caused it, what the operator does about
/// it (nothing a round committed is undone in any case).
fn explain(e: &anyhow::Error, state_db: Option<&Path>) -> String {
    use rusqlite::ErrorCode;
    let code = e.chain().find_map(|c| c.downcast_ref::<rusqlite::Error>()).and_then(|e| e.sqlite_error_code());
    let advice = match code {
        Some(ErrorCode::DiskFull) => "free space on its filesystem; the next round carries on",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds it locked (a backup? an sqlite3 shell?); the next round tries again"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            "it is damaged; restore it from a backup, or move it aside to start an empty one (see mixtasyd(8), FILES)"
        }
        _ => return format!("{e:#}"),
    };
    // The contexts down to SQLite's own words, without its numeric restatement of them.
    let mut text = Vec::new();
    for c in e.chain() {
        text.push(c.to_string());
        if c.is::<rusqlite::Error>() {
            break;
        }
    }
    let text = text.join(": ");
    match state_db.map(|p| p.display().to_string()) {
        Some(db) if !text.contains(&db) => format!("{text} (the state database {db}): {advice}"),
        _ => format!("{text}: {advice}"),
    }
}

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
/// as it was. One that refuses the search as too large (`TooManyResults`) is said so, and
/// the keyrings of the trusted `pingers` are taken instead (`pingers::discover`): all of
/// them or, on any failure, none, leaving the directory as it was.
pub fn directory_fetch(
    dir: &Directory,
    keyserver: &str,
    pingers: &[Pinger],
    now: SystemTime,
    wkd: Option<&wkd::Options>,
) -> Result<()> {
    let ks = crate::mixes::keyserver::Keyserver::new(keyserver, std::time::Duration::from_secs(60))?;
    let answer = pingers::discover(&ks, pingers, std::time::Duration::from_secs(60), now)?;
    if let pingers::Answer::Keyrings { refusal, from, .. } = &answer {
        println!("{refusal}: took the trusted pingers' keyrings instead");
        for (fpr, size) in from {
            println!("  keyring of pinger {fpr:X}: {size} bytes, signature good");
        }
    }
    let (report, pruned) = dir.refresh(answer.data(), now)?;
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
        println!("  removed {a}: revoked, or seen without a valid subkey for 7 days");
    }
    if let Some(options) = wkd {
        verify_wkd(dir, &report.stored, options, now)?;
    }
    Ok(())
}

/// `directory verify-wkd` (and `--wkd` on import and fetch): asks the WKD of each stored
/// exit mix's own domain which key it holds for the mix address and whether its WKD policy
/// file opts that key in (`mixtasy-exit: FINGERPRINT`), and records the answer with the
/// entry. A mix is the exit for its domain's recipients only while that record names its
/// key's exact fingerprint and is younger than `directory::WKD_MAX_AGE`. A failed lookup
/// changes nothing (the record ages out). First, every
/// conflict is put to its mix's own domain (a mix's address is mixtasy@its host): when the
/// domain's WKD holds exactly one of the keys in conflict, that key is chosen.
pub fn verify_wkd(
    dir: &Directory,
    only: &[crate::mixes::address::MixAddress],
    options: &wkd::Options,
    now: SystemTime,
) -> Result<()> {
    let client = wkd::Wkd::new(options, std::time::Duration::from_secs(30))?;
    let mut only = only.to_vec();
    for (address, fprs) in dir.conflicts()? {
        let found = match client.lookup(&address) {
            Ok(found) => found,
            Err(e) => {
                println!("wkd {address}: lookup failed, conflict stays: {e:#}");
                continue;
            }
        };
        let vouched: Vec<&String> =
            fprs.iter().filter(|f| found.iter().any(|c| c.fingerprint().to_hex() == **f)).collect();
        match vouched[..] {
            [one] => match dir.choose(one, now) {
                Ok(_) => {
                    println!("wkd {address}: the domain vouches for key {one}: conflict settled");
                    if !only.is_empty() {
                        only.push(address);
                    }
                }
                Err(e) => println!("wkd {address}: conflict stays: {e:#}"),
            },
            _ => println!("wkd {address}: the domain vouches for none of the keys in conflict: conflict stays"),
        }
    }
    for mix in dir.usable(now)? {
        if !mix.modes.exit() || !(only.is_empty() || only.contains(&mix.address)) {
            continue;
        }
        let fpr = mix.cert.fingerprint().to_hex();
        match client.lookup(&mix.address) {
            Ok(found) if found.iter().any(|c| c.fingerprint().to_hex() == fpr) => {
                match client.exit_policy(&mix.address) {
                    Ok(opted) if opted.contains(&fpr) => {
                        dir.set_wkd(&mix.address, Some(&fpr), now)?;
                        println!("wkd {}: the domain vouches for key {fpr}", mix.address);
                    }
                    Ok(_) => {
                        dir.set_wkd(&mix.address, None, now)?;
                        println!("wkd {}: the domain holds key {fpr} but its WKD policy file has no `mixtasy-exit: {fpr}`: not vouched", mix.address);
                    }
                    Err(e) => println!("wkd {}: policy lookup failed, record unchanged: {e:#}", mix.address),
                }
            }
            Ok(found) => {
                dir.set_wkd(&mix.address, None, now)?;
                match found.first() {
                    Some(other) => println!(
                        "wkd {}: the domain holds another key ({}): not vouched",
                        mix.address,
                        other.fingerprint().to_hex()
                    ),
                    None => println!("wkd {}: the domain holds no key: not vouched", mix.address),
                }
            }
            Err(e) => println!("wkd {}: lookup failed, record unchanged: {e:#}", mix.address),
        }
    }
    Ok(())
}

/// Before `create` or `send`: while the directory holds key conflicts, refuse (unless
/// `despite` is given), naming them. An attacker who uploads one impostor per honest mix
/// puts every honest mix of a new sender in conflict; paths would then be built silently
/// from whatever is left, perhaps only the attacker's mixes (review of issue 10).
pub fn refuse_conflicts(dir: &Directory, despite: bool) -> Result<()> {
    let conflicts = dir.conflicts()?;
    if conflicts.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = conflicts.keys().map(|a| a.to_string()).collect();
    if despite {
        eprintln!("mixtasy: warning: building paths without the mixes in conflict: {}", names.join(", "));
        return Ok(());
    }
    anyhow::bail!(
        "the directory has unresolved key conflicts ({}): another key may be hiding a mix; settle them with `directory fetch --wkd`, `directory verify-wkd` or `directory choose FINGERPRINT`, or pass --despite-conflicts",
        names.join(", ")
    )
}

/// `directory choose FPR`: ends a conflict with the key the user checked out of band.
pub fn directory_choose(dir: &Directory, fingerprint: &str, now: SystemTime) -> Result<()> {
    let address = dir.choose(fingerprint, now)?;
    println!("stored {address}: key {} chosen", fingerprint.replace(' ', "").to_ascii_uppercase());
    Ok(())
}

/// `directory list`: address, modes, expiry of the newest valid subkey, whether its domain
/// vouches for it (WKD), and with trusted pingers the median reliability and latency;
/// then every unresolved conflict.
pub fn directory_list(dir: &Directory, now: SystemTime) -> Result<()> {
    let usable = dir.usable(now)?;
    let vouched: Vec<_> = usable.iter().filter(|m| m.wkd).map(|m| m.address.clone()).collect();
    for (addr, cert) in dir.certs()? {
        match directory::check(&cert, now) {
            Ok(m) => {
                let wkd = if vouched.contains(&addr) { "  domain-vouched (WKD)" } else { "" };
                let rank = match usable.iter().find(|u| u.address == addr).and_then(|u| u.standing.as_ref()) {
                    Some(s) => format!(
                        "  reliability {:.2} %  latency {}:{:02}  ({} pinger{})",
                        s.reliability * 100.0,
                        s.latency.as_secs() / 3600,
                        s.latency.as_secs() / 60 % 60,
                        s.pingers,
                        if s.pingers == 1 { "" } else { "s" }
                    ),
                    None if dir.ranked() => "  unranked".into(),
                    None => String::new(),
                };
                println!(
                    "{addr}  {}  subkey expires {}{wkd}{rank}",
                    m.modes,
                    m.newest_expiry(now).map_or("never".into(), utc)
                )
            }
            Err(why) => println!("{addr}  unusable: {why}"),
        }
    }
    for (addr, fprs) in dir.conflicts()? {
        println!("{addr}  conflict: {} unrelated keys ({}), neither is used", fprs.len(), fprs.join(", "));
    }
    Ok(())
}

/// `directory trust-pinger KEYFILE [--url BASE]`: trusts a pinger's key for rankings (and
/// its published keyring for discovery).
pub fn trust_pinger(pingers: &Pingers, keyfile: &std::path::Path, url: Option<&str>, now: SystemTime) -> Result<()> {
    let key = std::fs::read(keyfile).with_context(|| format!("reading {}", keyfile.display()))?;
    let fpr = pingers.trust(&key, url, now).with_context(|| keyfile.display().to_string())?;
    println!("trusted pinger {fpr:X}{}", url.map(|u| format!(" at {u}")).unwrap_or_default());
    Ok(())
}

/// The trusted pingers, for `directory list`.
pub fn pingers_list(pingers: &[Pinger]) {
    for p in pingers {
        let uid = p
            .cert
            .userids()
            .next()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .unwrap_or_default();
        println!("pinger {:X}  {uid}  {}", p.cert.fingerprint(), p.url.as_deref().unwrap_or("(no URL)"));
    }
}
