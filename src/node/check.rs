//! `mixtasyd check`: is this node set up to work? Settings, key, the home's owners and modes,
//! the address in DNS, the transport and the keyserver, one finding a line, worst first in
//! the exit status. It creates and changes nothing (no state database, no Maildir), so it is
//! safe to run as any user at any time, including as root before handing the home over.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::mixes::keys::KeyRing;
use crate::node::config::{Config, TransportKind};
use crate::node::home::{user_name, NodeHome};

/// How bad a finding is; the exit status of `check` is the worst one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Works, but something the operator should know (DNS could not be asked, no keyserver).
    Warn,
    /// The node cannot work (or its mail would be lost or refused) until this is fixed.
    Fail,
}

impl Level {
    /// `check`'s exit status for this worst level: 0, 1, 2.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    /// What was checked (`config`, `key`, `owner`, `mode`, `address`, `transport`, `keyserver`).
    pub what: &'static str,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.text)
    }
}

/// How long a probe (sendmail, keyserver) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

fn finding(level: Level, what: &'static str, text: impl Into<String>) -> Finding {
    Finding { level, what, text: text.into() }
}

/// Whether a host name is fully qualified: at least two labels and a top-level label that is
/// not all digits (`vm` or `localhost` is no address the rest of the world can reach).
pub fn qualified(fqdn: &str) -> bool {
    let fqdn = fqdn.trim_end_matches('.');
    crate::mixes::address::valid_fqdn(fqdn)
        && fqdn.rsplit_once('.').is_some_and(|(_, tld)| !tld.bytes().all(|b| b.is_ascii_digit()))
        && !fqdn.eq_ignore_ascii_case("localhost.localdomain")
}

/// Every check, in order. `probe` false skips what reaches out (DNS, sendmail, keyserver).
pub fn run(home: &NodeHome, now: SystemTime, probe: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if !home.dir.is_dir() {
        out.push(finding(Level::Fail, "home", format!("{} does not exist: run `mixtasyd init`", home.dir.display())));
        return out;
    }
    ownership(&home.dir, &mut out);
    let config = match home.resolved_config() {
        Ok(c) => {
            out.push(finding(Level::Ok, "config", format!("{} is valid", home.config_path().display())));
            c
        }
        Err(e) => {
            out.push(finding(Level::Fail, "config", format!("{e:#}")));
            return out;
        }
    };
    key(home, &config, now, &mut out);
    maildir(&config, &mut out);
    if probe {
        out.push(address(config.address.fqdn()));
        out.push(transport(&config));
        out.push(keyserver(&config));
    }
    out
}

/// Owners and modes: everything in the home belongs to the home's owner (a file made by a
/// command run as root stops the next round) and nothing is open to group or others.
fn ownership(dir: &Path, out: &mut Vec<Finding>) {
    let Ok(meta) = std::fs::metadata(dir) else { return };
    let owner = meta.uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me != owner {
        out.push(finding(
            Level::Warn,
            "owner",
            format!(
                "{} belongs to {}; checking as {}: node commands must run as {}",
                dir.display(),
                user_name(owner),
                user_name(me),
                user_name(owner)
            ),
        ));
    }
    let (mut foreign, mut loose) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(m) = std::fs::symlink_metadata(&d) {
            if m.permissions().mode() & 0o077 != 0 {
                loose.push(d.clone());
            }
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            out.push(finding(Level::Fail, "owner", format!("{} cannot be read", d.display())));
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.uid() != owner {
                foreign.push(format!("{} ({})", e.path().display(), user_name(m.uid())));
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.permissions().mode() & 0o077 != 0 {
                loose.push(e.path());
            }
        }
    }
    if foreign.is_empty() {
        out.push(finding(Level::Ok, "owner", format!("everything in the home belongs to {}", user_name(owner))));
    } else {
        foreign.sort();
        out.push(finding(
            Level::Fail,
            "owner",
            format!(
                "not {}'s, so a round cannot write them: {}; fix with chown -R {} {}",
                user_name(owner),
                foreign.join(", "),
                user_name(owner),
                dir.display()
            ),
        ));
    }
    if loose.is_empty() {
        out.push(finding(Level::Ok, "mode", "nothing in the home is open to group or others"));
    } else {
        loose.sort();
        let names: Vec<String> = loose.iter().map(|p| p.display().to_string()).collect();
        out.push(finding(
            Level::Fail,
            "mode",
            format!("open to group or others (want 0700 directories, 0600 files): {}", names.join(", ")),
        ));
    }
}

/// The key matches the config (address and modes are in its user id: senders go by the key)
/// and has a subkey to decrypt with.
fn key(home: &NodeHome, config: &Config, now: SystemTime, out: &mut Vec<Finding>) {
    let cert = match home.cert() {
        Ok(c) => c,
        Err(e) => return out.push(finding(Level::Fail, "key", format!("{e:#}"))),
    };
    match crate::mixes::directory::identity(&cert, now) {
        Err(why) => out.push(finding(Level::Fail, "key", format!("not a usable mix key: {why}"))),
        Ok((address, _, modes)) => {
            if address != config.address {
                out.push(finding(
                    Level::Fail,
                    "key",
                    format!("the key is for {address}, the config says {}", config.address),
                ));
            } else if modes != config.modes {
                out.push(finding(
                    Level::Fail,
                    "key",
                    format!("modes: the config says {}, the key's user id (what senders use) says {modes}; run `mixtasyd key transition --modes {}` or set modes = \"{modes}\"", config.modes, config.modes),
                ));
            } else {
                out.push(finding(Level::Ok, "key", format!("{address} ({modes}) as in the config")));
            }
        }
    }
    match KeyRing::from_cert(&cert, config.clock_skew) {
        Ok(ring) if ring.valid(now).next().is_some() => {
            out.push(finding(Level::Ok, "subkey", "a valid encryption subkey with its secret"))
        }
        Ok(_) => out.push(finding(
            Level::Warn,
            "subkey",
            "no valid encryption subkey: the next round (or `key rotate`) adds one",
        )),
        Err(e) => out.push(finding(Level::Fail, "subkey", format!("{e:#}"))),
    }
}

fn maildir(config: &Config, out: &mut Vec<Finding>) {
    let new = config.maildir.join("new");
    if new.is_dir() {
        out.push(finding(Level::Ok, "maildir", format!("{} exists", config.maildir.display())));
    } else {
        out.push(finding(
            Level::Warn,
            "maildir",
            format!(
                "{} has no new/ yet: nothing has been delivered there (see postfix-hookup)",
                config.maildir.display()
            ),
        ));
    }
}

/// The address's host is a FQDN that resolves (A or AAAA, through the system resolver; an
/// MX-only domain shows as not found: check it with `host -t mx`).
fn address(fqdn: &str) -> Finding {
    if !qualified(fqdn) {
        return finding(
            Level::Fail,
            "address",
            format!("{fqdn} is not a fully qualified domain name: no other host can mail it"),
        );
    }
    match resolve(fqdn) {
        Ok(()) => finding(Level::Ok, "address", format!("{fqdn} resolves")),
        Err(Resolve::NotFound) => finding(
            Level::Fail,
            "address",
            format!("{fqdn} has no A or AAAA record (if it has only an MX, check it with `host -t mx {fqdn}`)"),
        ),
        Err(Resolve::CannotAsk(why)) => {
            finding(Level::Warn, "address", format!("DNS could not be asked about {fqdn}: {why}"))
        }
    }
}

enum Resolve {
    NotFound,
    CannotAsk(String),
}

fn resolve(host: &str) -> Result<(), Resolve> {
    let c = std::ffi::CString::new(host).map_err(|_| Resolve::NotFound)?;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: c is a valid C string, hints may be null, res is an out-pointer freed below.
    let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), std::ptr::null(), &mut res) };
    if rc == 0 {
        // SAFETY: res came from a successful getaddrinfo.
        unsafe { libc::freeaddrinfo(res) };
        return Ok(());
    }
    if rc == libc::EAI_NONAME || rc == libc::EAI_NODATA {
        return Err(Resolve::NotFound);
    }
    // SAFETY: gai_strerror returns a static string.
    let why = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy().into_owned();
    Err(Resolve::CannotAsk(why))
}

/// The sendmail program runs and its MTA answers (`sendmail -bp` lists the queue: it needs
/// the MTA's queue manager, and sends nothing).
fn transport(config: &Config) -> Finding {
    match &config.transport {
        TransportKind::Maildir(root) => finding(
            Level::Warn,
            "transport",
            format!("maildir ({}): a lab setting, mail does not leave this host", root.display()),
        ),
        TransportKind::Sendmail => {
            let program = &config.sendmail;
            let Ok(c) = std::ffi::CString::new(program.as_os_str().as_encoded_bytes()) else {
                return finding(Level::Fail, "transport", "the sendmail setting is not a path");
            };
            // SAFETY: c is a valid C string.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
                return finding(
                    Level::Fail,
                    "transport",
                    format!("{} is missing or not executable: {}", program.display(), std::io::Error::last_os_error()),
                );
            }
            match probe_sendmail(program) {
                Ok(()) => {
                    finding(Level::Ok, "transport", format!("{} -bp runs and the MTA answers", program.display()))
                }
                Err(why) => finding(Level::Fail, "transport", format!("{} -bp: {why}", program.display())),
            }
        }
    }
}

fn probe_sendmail(program: &Path) -> Result<(), String> {
    let mut child = Command::new(program)
        .arg("-bp")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut stderr, 64 << 10), &mut buf);
        buf
    });
    let Some(status) = crate::batch::transport::wait_or_kill(&mut child, PROBE_TIMEOUT, Duration::from_millis(20))
    else {
        return Err(format!("no answer in {}s", PROBE_TIMEOUT.as_secs()));
    };
    let err = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let first = crate::batch::transport::first_line_scrubbed(&err);
    let code = status.code().map_or("killed by a signal".to_string(), |c| format!("exit status {c}"));
    Err(if first.is_empty() { code } else { format!("{code}: {first}") })
}

/// `check --send-probe`: hands one plain mail for the mix address to the node's own
/// transport (as a round would: envelope sender the mix address) and waits up to `wait` for
/// it in the Maildir. That proves what the static checks cannot: postdrop accepts the
/// node's mail, and the MTA routes the address into this Maildir. The probe file is removed
/// once found (else the next round would file it in `.operator`).
pub fn send_probe(config: &Config, wait: Duration) -> Finding {
    let token = format!("{:032x}", rand::random::<u128>());
    let mail = format!(
        "From: {a}\nTo: {a}\nSubject: mixtasyd check --send-probe\nX-Mixtasy-Probe: {token}\n\nA delivery test of mixtasyd check; it removes this mail when it arrives.\n",
        a = config.address
    );
    let started = Instant::now();
    let transport = config.transport();
    if let Err(e) = transport.send(Some(config.address.as_str()), &[config.address.to_string()], mail.as_bytes()) {
        return finding(Level::Fail, "probe", format!("the transport refused the probe: {e}"));
    }
    let handed = started.elapsed();
    let needle = format!("X-Mixtasy-Probe: {token}");
    while started.elapsed() < wait {
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(config.maildir.join(sub)) else { continue };
            for e in entries.flatten() {
                if std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)) {
                    let _ = std::fs::remove_file(e.path());
                    return finding(
                        Level::Ok,
                        "probe",
                        format!(
                            "handed to the MTA in {:.1}s, in {} after {:.1}s (removed)",
                            handed.as_secs_f64(),
                            config.maildir.display(),
                            started.elapsed().as_secs_f64()
                        ),
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    finding(
        Level::Fail,
        "probe",
        format!("the MTA took the probe but it did not reach {} in {}s: check the hook-up (postfix-hookup) and the MTA's log", config.maildir.display(), wait.as_secs()),
    )
}

fn keyserver(config: &Config) -> Finding {
    let Some(url) = &config.keyserver else {
        return finding(Level::Warn, "keyserver", "none set: senders get the key only by hand (`key export`)");
    };
    match crate::mixes::keyserver::Keyserver::new(url, PROBE_TIMEOUT).and_then(|k| k.fetch_all()) {
        Ok(_) => finding(Level::Ok, "keyserver", format!("{url} answers")),
        Err(e) => finding(Level::Warn, "keyserver", format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for good in ["mix.example.org", "a.b", "mix.example.org."] {
            assert!(qualified(good), "{good}");
        }
        for bad in ["vm", "localhost", "10.0.0.1", "", "-a.b", "localhost.localdomain"] {
            assert!(!qualified(bad), "{bad}");
        }
    }

    #[test]
    fn levels_order_and_codes() {
        assert!(Level::Fail > Level::Warn && Level::Warn > Level::Ok);
        assert_eq!((Level::Ok.exit_code(), Level::Warn.exit_code(), Level::Fail.exit_code()), (0, 1, 2));
    }
}
