//! The real thing (issue #5): five mixes behind one real Postfix, keys on a real SKS.
//!
//! One Postfix instance of the test's own (`postfix -c DIR`: own main.cf, master.cf without
//! any SMTP listener, own queue and log in a temporary directory, chroot off, no DNS, every
//! transport but virtual(8) set to `error:`) hosts the mix domains mix1.test … mix5.test and
//! the catch-all recipient domain rcpt.test as virtual mailbox domains. scripts/postfix-hookup
//! (root, virtual mailbox case) points each mix address at its node's Maildir. The nodes run
//! as the unprivileged user `mixtasy-test` (created if missing), read the Maildirs Postfix
//! fills and send with Postfix's /usr/sbin/sendmail; the sender fetches the directory from
//! SKS and submits with `mixtasy send`. Rounds run over all five nodes until the recipient's
//! Maildir holds every original.
//!
//! The only change outside the temporary directories: a non-root sendmail's postdrop reads
//! `alternate_config_directories` from /etc/postfix/main.cf, so the test adds its directory
//! there (creating the file if the system Postfix has none), under a lock on /etc/postfix,
//! and restores the file byte for byte when it ends, also on a panic.
//!
//! Needs root (Postfix is started by root; the mixes run as another user) and the Debian
//! packages postfix and sks (`scripts/install-deps --test`); without them it fails.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::*;

/// The unprivileged user the nodes (and the sender) run as.
pub(crate) const USER: &str = "mixtasy-test";
/// Three middlemen and two exits that deliver to anyone (rcpt.test has no mix of its own, so
/// senders pick an exitpublic mix; an exitprivate one would only serve its own domain).
pub(crate) const MIXES: [(&str, &str); 5] = [
    ("mix1.test", "middleman"),
    ("mix2.test", "middleman"),
    ("mix3.test", "middleman"),
    ("mix4.test", "middleman,exitpublic"),
    ("mix5.test", "middleman,exitpublic"),
];
pub(crate) const RCPT_DOMAIN: &str = "rcpt.test";
const BURST: usize = 200;
const MAIN_CF: &str = "/etc/postfix/main.cf";
/// First line of a /etc/postfix/main.cf this test wrote (one a killed run left is stale).
const MARK: &str = "# Written by mixtasyd's tests/postfix.rs for the length of the test";

pub(crate) fn hookup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postfix-hookup")
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `prog ARGS` (as the test runs) and asserts it succeeded.
pub(crate) fn cmd_ok(prog: &str, args: &[&str]) -> Output {
    let mut c = Command::new(prog);
    c.args(args);
    ok(c, b"")
}

/// The test user's uid and gid, creating the user if missing.
pub(crate) fn test_user() -> (u32, u32) {
    let exists = || Command::new("getent").args(["passwd", USER]).output().is_ok_and(|o| o.status.success());
    if !exists() {
        let mut c = Command::new("useradd");
        c.args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER]);
        let out = run(c, b"");
        // Another run may have created it meanwhile.
        assert!(out.status.success() || exists(), "useradd {USER} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let id = |flag: &str| -> u32 {
        let out = cmd_ok("id", &[flag, USER]);
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Every file below `dir`, recursively (none if it does not exist).
pub(crate) fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
        }
    }
    out
}

/// Lets a non-root sendmail use the test's configuration directory: postdrop accepts only
/// directories that /etc/postfix/main.cf lists in `alternate_config_directories`. Holds a
/// lock on /etc/postfix so that two runs never interleave, and restores the file on drop.
struct SystemMainCf {
    _lock: std::fs::File,
    original: Option<Vec<u8>>,
}

/// The lock on /etc/postfix that serialises the tests which change the host's Postfix set-up
/// or its users, in this and any other test process: this file's, and tests/deb.rs while the
/// package's user `mixtasy` exists (postfix-hookup refuses an alias that would take a user's
/// mail). Held until the file is dropped; waits at most 10 minutes.
pub(crate) fn lock_etc_postfix() -> std::fs::File {
    let lock = std::fs::File::open("/etc/postfix").expect("/etc/postfix (is Postfix installed?)");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match lock.try_lock() {
            Ok(()) => return lock,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("locking /etc/postfix (another Postfix test running for 10 minutes?): {e:?}"),
        }
    }
}

impl SystemMainCf {
    fn allow(conf: &Path) -> SystemMainCf {
        let lock = lock_etc_postfix();
        let original = match std::fs::read(MAIN_CF) {
            Ok(b) if b.starts_with(MARK.as_bytes()) => None,
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading {MAIN_CF}: {e}"),
        };
        let guard = SystemMainCf { _lock: lock, original };
        let conf = conf.display();
        match &guard.original {
            None => std::fs::write(
                MAIN_CF,
                format!(
                    "{MARK}; it lets postdrop accept the test's instance.\nalternate_config_directories = {conf}\n"
                ),
            )
            .unwrap(),
            Some(_) => {
                let now = cmd_ok("postconf", &["-c", "/etc/postfix", "-h", "alternate_config_directories"]);
                let now = String::from_utf8_lossy(&now.stdout).trim().to_string();
                let value = if now.is_empty() { conf.to_string() } else { format!("{now}, {conf}") };
                cmd_ok("postconf", &["-c", "/etc/postfix", "-e", &format!("alternate_config_directories = {value}")]);
            }
        }
        guard
    }
}

impl Drop for SystemMainCf {
    fn drop(&mut self) {
        let res = match &self.original {
            Some(bytes) => std::fs::write(MAIN_CF, bytes),
            None => std::fs::remove_file(MAIN_CF),
        };
        if let Err(e) = res {
            eprintln!("restoring {MAIN_CF}: {e}");
        }
    }
}

/// The test's Postfix instance. Dropping it stops it (`postfix stop`, then SIGKILL to the
/// master by PID if it is still there), restores /etc/postfix/main.cf and removes its files.
pub(crate) struct Postfix {
    /// Whether `postfix start` was tried: stop it then, whatever it said.
    started: bool,
    pub(crate) conf: PathBuf,
    queue: PathBuf,
    /// The catch-all Maildir of rcpt.test.
    rcpt: PathBuf,
    system_cf: Option<SystemMainCf>,
    pub(crate) root: tempfile::TempDir,
}

impl Postfix {
    fn start(uid: u32, gid: u32) -> Postfix {
        Postfix::start_with(uid, gid, &[])
    }

    /// Starts the lab's Postfix with `extra` lines at the end of its main.cf (a later line
    /// sets a parameter again), `ROOT` in them standing for the instance's directory.
    pub(crate) fn start_with(uid: u32, gid: u32, extra: &[&str]) -> Postfix {
        for bin in ["/usr/sbin/postfix", "/usr/sbin/postconf", "/usr/sbin/sendmail"] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} is missing: Postfix is not installed; run scripts/install-deps --test"
            );
        }
        let root = tempfile::tempdir().expect("temporary Postfix root");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = root.path().to_path_buf();
        let (conf, queue) = (r.join("conf"), r.join("queue"));
        std::fs::create_dir(&conf).unwrap();
        std::fs::create_dir(&queue).unwrap();
        // virtual(8) creates rcpt/Maildir/ as the user.
        std::fs::create_dir(r.join("rcpt")).unwrap();
        std::os::unix::fs::chown(r.join("rcpt"), Some(uid), Some(gid)).unwrap();
        // The packaged master.cf without its one network listener: mail enters by sendmail only.
        let dist = ["/usr/share/postfix/master.cf.dist", "/etc/postfix/master.cf.proto"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("Postfix's master.cf template (/usr/share/postfix/master.cf.dist)");
        let master: String = std::fs::read_to_string(dist)
            .unwrap()
            .lines()
            .map(|l| if l.starts_with("smtp ") && l.contains(" inet ") { format!("#{l}\n") } else { format!("{l}\n") })
            .collect();
        std::fs::write(conf.join("master.cf"), master).unwrap();
        let domains: Vec<&str> = MIXES.iter().map(|(f, _)| *f).chain([RCPT_DOMAIN]).collect();
        let nowhere = "error:the mixtasyd test lab delivers to its test domains only";
        let main = [
            "compatibility_level = 3.6".to_string(),
            format!("queue_directory = {}", queue.display()),
            format!("data_directory = {}", r.join("data").display()),
            "myhostname = lab.test".into(),
            "mydomain = lab.test".into(),
            "myorigin = lab.test".into(),
            "mydestination =".into(),
            "relay_domains =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "inet_interfaces = loopback-only".into(),
            "inet_protocols = ipv4".into(),
            "smtp_dns_support_level = disabled".into(),
            format!("default_transport = {nowhere}"),
            format!("relay_transport = {nowhere}"),
            format!("local_transport = {nowhere}"),
            "alias_maps =".into(),
            "alias_database =".into(),
            "biff = no".into(),
            "in_flow_delay = 0s".into(),
            format!("maillog_file = {}", r.join("maillog").display()),
            format!("maillog_file_prefixes = {}", r.display()),
            format!("virtual_mailbox_domains = {}", domains.join(" ")),
            format!("virtual_mailbox_base = {}", r.display()),
            format!("virtual_mailbox_maps = texthash:{}", conf.join("rcpt_vmailbox").display()),
            format!("virtual_uid_maps = static:{uid}"),
            format!("virtual_gid_maps = static:{gid}"),
        ];
        // An extra line replaces the line of its parameter: a parameter set twice makes
        // every Postfix program warn, postlogd included, which can fill its own socket and hang.
        let extra: Vec<String> = extra.iter().map(|l| l.replace("ROOT", &r.display().to_string())).collect();
        let name = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
        let mut main: Vec<String> = main.into_iter().filter(|l| !extra.iter().any(|e| name(e) == name(l))).collect();
        main.extend(extra);
        std::fs::write(conf.join("main.cf"), main.join("\n") + "\n").unwrap();
        std::fs::write(conf.join("rcpt_vmailbox"), format!("@{RCPT_DOMAIN} rcpt/Maildir/\n")).unwrap();
        let c = conf.to_str().unwrap().to_string();
        cmd_ok("postconf", &["-c", &c, "-F", "*/*/chroot = n"]);
        let system_cf = Some(SystemMainCf::allow(&conf));
        let mut pf = Postfix { started: false, rcpt: r.join("rcpt/Maildir"), conf, queue, system_cf, root };
        pf.started = true;
        let out = run(pf.postfix(&["start"]), b"");
        assert!(
            out.status.success(),
            "Postfix did not start (postfix -c {c} start): {}\n{}\nits log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        // Ready when pickup listens (bounded: 100 × 50 ms).
        for _ in 0..100 {
            if pf.queue.join("public/pickup").exists() {
                return pf;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Postfix started but public/pickup did not appear in 5 s; its log:\n{}", pf.log());
    }

    /// `postfix -c CONF ARGS`.
    fn postfix(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/sbin/postfix");
        c.arg("-c").arg(&self.conf).args(args);
        c
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("maillog")).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until nothing is in Postfix's maildrop, incoming or active queue: every mail
    /// handed to sendmail so far is delivered (or bounced). Bounded: 60 s.
    pub(crate) fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let busy: usize =
                ["maildrop", "incoming", "active"].iter().map(|q| files_below(&self.queue.join(q)).len()).sum();
            if busy == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Postfix still has {busy} mail(s) in its queues after 60 s; its log ends:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The files in rcpt.test's catch-all Maildir (new/), in name order.
    pub(crate) fn delivered(&self) -> Vec<Vec<u8>> {
        let mut files = files_below(&self.rcpt.join("new"));
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.started {
            let pid: Option<i32> =
                std::fs::read_to_string(self.queue.join("pid/master.pid")).ok().and_then(|p| p.trim().parse().ok());
            let _ = self.postfix(&["stop"]).output();
            if let Some(pid) = pid {
                // Gone, or a zombie waiting for a late PID 1 (bounded: 100 × 50 ms).
                let gone = || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
                for _ in 0..100 {
                    if gone() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !gone() {
                    eprintln!("Postfix master (pid {pid}) still there after postfix stop: SIGKILL");
                    // SAFETY: kill has no memory preconditions; pid is the master we started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        drop(self.system_cf.take());
    }
}

/// Five node homes, the sender's home and the Postfix lab; all commands of nodes and sender
/// run as USER.
pub(crate) struct Lab {
    pub(crate) net: Net,
    /// The binaries as USER can run them (copied into the lab if the build directory is
    /// not open to USER).
    mixtasyd: PathBuf,
    mixtasy: PathBuf,
    pub(crate) pinger: PathBuf,
}

impl Lab {
    pub(crate) fn new(uid: u32, gid: u32) -> Lab {
        let net = Net::new(0);
        std::fs::set_permissions(net.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["nodes", "client", "bin"] {
            std::fs::create_dir(net.dir.path().join(d)).unwrap();
            std::os::unix::fs::chown(net.dir.path().join(d), Some(uid), Some(gid)).unwrap();
        }
        let mut lab = Lab {
            net,
            mixtasyd: env!("CARGO_BIN_EXE_mixtasyd").into(),
            mixtasy: env!("CARGO_BIN_EXE_mixtasy").into(),
            pinger: env!("CARGO_BIN_EXE_mixtasy-pinger").into(),
        };
        if !lab.user_cmd(lab.mixtasyd.clone()).arg("--version").output().is_ok_and(|o| o.status.success()) {
            for b in [&mut lab.mixtasyd, &mut lab.mixtasy, &mut lab.pinger] {
                let to = lab.net.dir.path().join("bin").join(b.file_name().unwrap());
                std::fs::copy(&*b, &to).unwrap();
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
                *b = to;
            }
        }
        lab
    }

    /// `prog` run as USER (setpriv), in the lab directory.
    pub(crate) fn user_cmd(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"]).arg(prog).current_dir(self.net.dir.path());
        c
    }

    /// `mixtasyd --home HOME` for a node, as USER, with sendmail finding the test's Postfix.
    pub(crate) fn node(&self, pf: &Postfix, fqdn: &str) -> Command {
        let mut c = self.user_cmd(&self.mixtasyd);
        c.arg("--home").arg(self.net.home(fqdn)).env("MAIL_CONFIG", &pf.conf);
        c
    }

    /// `mixtasy --home CLIENT`, as USER, with sendmail finding the test's Postfix.
    pub(crate) fn sender(&self, pf: &Postfix) -> Command {
        let mut c = self.user_cmd(&self.mixtasy);
        c.arg("--home").arg(self.net.client_home()).env("MAIL_CONFIG", &pf.conf);
        c
    }

    pub(crate) fn round(&self, pf: &Postfix, fqdn: &str) -> String {
        let mut c = self.node(pf, fqdn);
        c.arg("--round");
        let line = String::from_utf8(ok(c, b"").stdout).unwrap();
        assert!(line.starts_with("mixtasyd: round:"), "{fqdn}: {line}");
        line
    }

    pub(crate) fn status(&self, pf: &Postfix, fqdn: &str) -> Status {
        let mut c = self.node(pf, fqdn);
        c.args(["status", "--json"]);
        Status(String::from_utf8(ok(c, b"").stdout).unwrap())
    }

    pub(crate) fn send(&self, pf: &Postfix, original: &[u8]) {
        let mut c = self.sender(pf);
        c.arg("send");
        ok(c, original);
    }

    /// Rounds over all five nodes, waiting for Postfix after each sweep, until `want`
    /// originals are in the recipient's Maildir. Bounded in sweeps and time. Returns the
    /// sweeps used.
    fn sweep_until(&self, pf: &Postfix, want: usize, max_sweeps: usize, max_time: Duration) -> usize {
        let start = Instant::now();
        for sweep in 1..=max_sweeps {
            for (fqdn, _) in MIXES {
                self.round(pf, fqdn);
            }
            pf.wait_idle();
            if pf.delivered().len() >= want {
                return sweep;
            }
            if start.elapsed() > max_time {
                break;
            }
        }
        let statuses: Vec<String> = MIXES.iter().map(|(f, _)| format!("{f}: {}", self.status(pf, f).0)).collect();
        panic!(
            "{} of {want} originals delivered after {max_sweeps} sweeps or {max_time:?}\n{}\nPostfix log ends:\n{}",
            pf.delivered().len(),
            statuses.join("\n"),
            pf.log_tail()
        );
    }
}

/// scripts/postfix-hookup as root for one node, against the test's Postfix.
pub(crate) fn hookup(lab: &Lab, pf: &Postfix, fqdn: &str, extra: &[&str]) -> Output {
    let mut c = Command::new(hookup_script());
    c.args(["--root", "--domain", fqdn, "--node-user", USER, "--home"])
        .arg(lab.net.home(fqdn))
        .arg("--config-dir")
        .arg(&pf.conf)
        .args(extra);
    run(c, b"")
}

/// The configuration files the hookup script touches, with their bytes.
pub(crate) fn conf_snapshot(pf: &Postfix) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = files_below(&pf.conf).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    v.sort();
    v
}

fn original(to: &str, subject: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!("To: {to}\nSubject: {subject}\n\n").into_bytes();
    let mut i = 0;
    while m.len() < body_len {
        m.extend_from_slice(format!("{subject} line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes());
        i += 1;
    }
    m
}

pub(crate) fn split_mail(mail: &[u8]) -> (&[u8], &[u8]) {
    let i = mail.windows(2).position(|w| w == b"\n\n").expect("a blank line after the header");
    (&mail[..i + 1], &mail[i + 2..])
}

/// Checks a delivered mail's header: it was sent by an exit (its Return-Path), names no
/// other mix, and holds only allowlisted fields, the exit's own From, Date, Message-ID and
/// Comments, and the trace Postfix adds when it delivers. Returns the exit.
fn exit_of(mail: &[u8]) -> String {
    let (header, _) = split_mail(mail);
    let header = String::from_utf8_lossy(header).to_ascii_lowercase();
    const EXIT_OWN: [&str; 4] = ["from", "date", "message-id", "comments"];
    const POSTFIX_TRACE: [&str; 4] = ["return-path", "x-original-to", "delivered-to", "received"];
    for name in header.lines().filter(|l| !l.starts_with([' ', '\t'])).map(|l| l.split(':').next().unwrap_or("")) {
        assert!(
            mixtasy::format::headers::allowed(name) || EXIT_OWN.contains(&name) || POSTFIX_TRACE.contains(&name),
            "delivered with {name}:, a field off the allowlist:\n{header}"
        );
    }
    assert!(header.lines().any(|l| l.starts_with("from: nobody@mix")), "the exit's anonymous From:\n{header}");
    assert!(
        header.lines().any(|l| l.starts_with("date: ") && l.ends_with(" +0000")),
        "the exit's Date, in UTC:\n{header}"
    );
    let exit = header
        .lines()
        .find_map(|l| l.strip_prefix("return-path: <mixtasy@"))
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or_else(|| panic!("no Return-Path of a mix:\n{header}"))
        .to_string();
    assert!(MIXES.iter().any(|(f, m)| *f == exit && m.contains("exit")), "delivered by {exit}, not an exit:\n{header}");
    for (f, _) in MIXES.iter().filter(|(f, _)| *f != exit) {
        assert!(!header.contains(f), "the header names {f}, a mix other than the exit {exit}:\n{header}");
    }
    assert!(header.contains("comments: this message was sent through the mixtasy anonymous"), "{header}");
    exit
}

/// Every `to=<…>` of Postfix's log: (address, relay, status).
pub(crate) fn log_deliveries(log: &str) -> Vec<(String, String, String)> {
    let field = |line: &str, name: &str| -> String {
        line.split(' ').find_map(|f| f.strip_prefix(name)).unwrap_or("").trim_end_matches(',').to_string()
    };
    log.lines()
        .filter_map(|l| {
            let i = l.find(" to=<")?;
            let addr = &l[i + 5..];
            let addr = &addr[..addr.find('>')?];
            Some((addr.to_ascii_lowercase(), field(l, "relay="), field(l, "status=")))
        })
        .collect()
}

#[test]
fn five_mixes_through_a_real_postfix() {
    let started = Instant::now();
    assert!(is_root(), "this test runs a real Postfix instance and the mixes as user {USER}: it must run as root (scripts/test as root, or sudo)");
    let (uid, gid) = test_user();
    let sks = Sks::start();
    let lab = Lab::new(uid, gid);
    for (fqdn, modes) in MIXES {
        let mut c = lab.node_raw(fqdn);
        c.args(["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", modes]);
        ok(c, b"");
        lab.net.configure(fqdn, "keyserver", &format!("{:?}", sks.url));
        // Small pool parameters: the whole pool leaves every round, so mail moves at least one
        // hop a sweep. Dummies stay at their defaults; the transport is the default sendmail.
        lab.net.configure(fqdn, "min_pool", "0");
        lab.net.configure(fqdn, "threshold", "1");
        lab.net.configure(fqdn, "rate", "1");
    }
    let pf = Postfix::start(uid, gid);

    // The hookup script: a dry run changes nothing; five real runs against the running
    // Postfix (which reload it); a second run changes nothing more.
    let before = conf_snapshot(&pf);
    let out = hookup(&lab, &pf, "mix1.test", &["--dry-run"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && said.contains("would set mixtasy@mix1.test -> "),
        "{}",
        describe(&Command::new("hookup --dry-run"), &out)
    );
    assert_eq!(conf_snapshot(&pf), before, "a dry run changed the configuration:\n{said}");
    for (fqdn, _) in MIXES {
        let out = hookup(&lab, &pf, fqdn, &[]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{}", describe(&Command::new(format!("hookup {fqdn}")), &out));
        assert!(said.contains("reload Postfix") && !said.contains("maildir ="), "{said}");
    }
    let hooked = conf_snapshot(&pf);
    let out = hookup(&lab, &pf, "mix3.test", &[]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && said.starts_with("nothing to change"), "second run:\n{said}");
    assert_eq!(conf_snapshot(&pf), hooked, "a second run changed the configuration");
    let out = hookup(&lab, &pf, "nowhere.test", &[]);
    assert_eq!(out.status.code(), Some(2), "a domain Postfix does not host is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a virtual mailbox domain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Keys to SKS; the sender discovers the five.
    for (fqdn, _) in MIXES {
        let mut c = lab.node(&pf, fqdn);
        c.args(["key", "publish"]);
        ok(c, b"");
    }
    let mut c = lab.sender(&pf);
    c.args(["directory", "fetch", "--keyserver", &sks.url]);
    let fetched = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert_eq!(fetched.lines().next(), Some("found 5, kept 5, refused 0"), "{fetched}");

    // Bounces: mail to an unknown user of a mix domain, from a middleman and from an exit,
    // bounces back into their Maildirs; the nodes move them to .operator and carry on.
    for from in ["mixtasy@mix2.test", "mixtasy@mix4.test"] {
        let mut c = lab.user_cmd("/usr/sbin/sendmail");
        c.env("MAIL_CONFIG", &pf.conf).args(["-i", "-f", from, "--", "nobody@mix1.test"]);
        ok(c, b"To: nobody@mix1.test\nSubject: provoke a bounce\n\nnobody is here\n");
    }

    // One short original to bob and one of 100 KB, which travels as a multipart message. The
    // short one carries what a mail client writes about its sender: none of it arrives.
    let mut single = b"User-Agent: NeoMutt/20250113\nMessage-ID: <1@alice-laptop.home.example>\nDate: Mon, 2 Mar 2026 10:00:00 +0200\n".to_vec();
    single.extend(original("Bob <bob@rcpt.test>", "through postfix", 2000));
    let big = original("Bob <bob@rcpt.test>", "multipart through postfix", 100 * 1024);
    lab.send(&pf, &single);
    lab.send(&pf, &big);
    let sweeps1 = lab.sweep_until(&pf, 2, 20, Duration::from_secs(120));
    let got = pf.delivered();
    assert_eq!(got.len(), 2);
    for m in &got {
        let text = String::from_utf8_lossy(m);
        assert!(!text.contains("alice-laptop") && !text.contains("NeoMutt"), "the sender's machine named:\n{text}");
    }
    let mut bodies: Vec<&[u8]> = got.iter().map(|m| strip_footer(split_mail(m).1)).collect();
    bodies.sort_by_key(|b| b.len());
    assert!(
        bodies[0] == split_mail(&single).1,
        "the short original's body differs:\n{}",
        String::from_utf8_lossy(&got[0])
    );
    assert!(
        bodies[1] == split_mail(&big).1,
        "the 100 KB original's body differs ({} bytes, want {})",
        bodies[1].len(),
        split_mail(&big).1.len()
    );
    let mut exits: BTreeSet<String> = got.iter().map(|m| exit_of(m)).collect();

    // A burst of 200 originals, sent by 8 senders at once, each to its own address of the
    // catch-all domain (one address would hit an exit's recipient_quota of 100 a day).
    let burst: Vec<Vec<u8>> = (0..BURST)
        .map(|i| original(&format!("<user{i}@{RCPT_DOMAIN}>"), &format!("burst {i}"), 300 + (i * 37) % 900))
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for chunk in burst.chunks(BURST / 8) {
            let (lab, pf) = (&lab, &pf);
            s.spawn(move || chunk.iter().for_each(|o| lab.send(pf, o)));
        }
    });
    let send_time = t.elapsed();
    let sweeps2 = lab.sweep_until(&pf, 2 + BURST, 30, Duration::from_secs(240));
    // Two more sweeps: nothing arrives twice, and the pools drain of everything but dummies.
    for _ in 0..2 {
        for (fqdn, _) in MIXES {
            lab.round(&pf, fqdn);
        }
        pf.wait_idle();
    }
    let got = pf.delivered();
    assert_eq!(got.len(), 2 + BURST, "every original exactly once");
    let mut want: Vec<&[u8]> = [&single, &big].into_iter().chain(&burst).map(|m| split_mail(m).1).collect();
    let mut have: Vec<&[u8]> = got.iter().map(|m| strip_footer(split_mail(m).1)).collect();
    want.sort();
    have.sort();
    assert!(have == want, "the delivered bodies are not the originals' bodies");
    exits.extend(got.iter().map(|m| exit_of(m)));
    assert_eq!(exits.len(), 2, "both exits delivered: {exits:?}");

    // Every node's counters add up; the exits delivered each original once; nothing was
    // damaged on the way through Postfix; the bounces went to .operator.
    let mut delivered = 0;
    let mut dummies = 0;
    let mut operator = 0;
    for (fqdn, modes) in MIXES {
        let st = lab.status(&pf, fqdn);
        assert_counters_add_up(&st);
        for bad in [
            "malformed",
            "verification",
            "tagged",
            "not-for-this-mix",
            "unknown-key",
            "expired-key",
            "replay",
            "mode",
            "oversized",
        ] {
            assert_eq!(st.get(&format!("drop.{bad}")), 0, "{fqdn}: drop.{bad}: {}", st.0);
        }
        assert_eq!((st.get("exit_queue"), st.get("held_parts")), (0, 0), "{fqdn}: {}", st.0);
        if !modes.contains("exit") {
            assert_eq!(st.get("exit.delivered"), 0, "{fqdn}: {}", st.0);
        }
        delivered += st.get("exit.delivered");
        dummies += st.get("dummy.pooled") + st.get("dummy.sent");
        operator += st.get("intake.operator");
        if fqdn == "mix2.test" || fqdn == "mix4.test" {
            assert_eq!(st.get("operator_mail"), 1, "{fqdn}: the bounce waits in .operator: {}", st.0);
        }
    }
    assert_eq!(delivered, 2 + BURST as i64, "exit.delivered over the exits");
    assert_eq!(operator, 2, "the two bounces, and nothing else, are operator mail");
    assert!(dummies > 0, "dummies ran");
    let assembled: i64 = MIXES.iter().map(|(f, _)| lab.status(&pf, f).get("exit.assembled")).sum();
    assert_eq!(assembled, 1, "the 100 KB original was reassembled once");

    // Postfix delivered to the test domains only, all by virtual(8); only the two provoked
    // mails bounced, and nothing was deferred.
    let log = pf.log();
    let deliveries = log_deliveries(&log);
    let domains: Vec<&str> = MIXES.iter().map(|(f, _)| *f).chain([RCPT_DOMAIN]).collect();
    for (addr, relay, status) in &deliveries {
        let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
        assert!(domains.contains(&domain), "Postfix delivered to {addr}, outside the test domains");
        assert_eq!(relay, "virtual", "{addr} went by {relay}");
        assert!(status == "sent" || (status == "bounced" && addr == "nobody@mix1.test"), "{addr}: status={status}");
    }
    let to_rcpt = deliveries.iter().filter(|(a, _, s)| a.ends_with("@rcpt.test") && s == "sent").count();
    assert_eq!(to_rcpt, 2 + BURST, "deliveries to rcpt.test in Postfix's log");
    let mixes = deliveries.iter().filter(|(a, _, _)| a.starts_with("mixtasy@")).count();
    eprintln!(
        "postfix lab: {} originals delivered by {exits:?}; {sweeps1} + {sweeps2} (+2) sweeps of 5 rounds; \
         burst handed to sendmail in {send_time:.1?}; Postfix delivered {} mails ({mixes} to mixes); \
         {dummies} dummies; {:.1?} in all",
        got.len(),
        deliveries.len(),
        started.elapsed()
    );
}

impl Lab {
    /// `mixtasyd --home HOME` as USER, before Postfix exists (init needs no sendmail).
    pub(crate) fn node_raw(&self, fqdn: &str) -> Command {
        let mut c = self.user_cmd(&self.mixtasyd);
        c.arg("--home").arg(self.net.home(fqdn));
        c
    }
}

/// The shared-host case: without root, the script appends the node's Maildir to ~/.forward
/// (keeping every other line, once), prints the alias the admin must add, and on a host that
/// delivers to ~/Maildir/ already prints the `maildir =` setting instead. Needs no Postfix
/// running, only its postconf.
#[test]
fn hookup_without_root_writes_forward_once() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let forward = h.join(".forward");
    std::fs::write(&forward, "\\me, me@elsewhere.example").unwrap();
    let empty_conf = h.join("postfix-empty");
    std::fs::create_dir(&empty_conf).unwrap();
    std::fs::write(empty_conf.join("main.cf"), "").unwrap();
    let script_out = |conf: &Path, extra: &[&str]| {
        let mut c = Command::new(hookup_script());
        c.arg("--user")
            .args(extra)
            .env("HOME", h)
            .env("MAIL_CONFIG", conf)
            .env_remove("MIXTASYD_HOME")
            .env_remove("XDG_STATE_HOME");
        run(c, b"")
    };
    let script = |conf: &Path, extra: &[&str]| {
        let out = script_out(conf, extra);
        assert!(out.status.success(), "{}", describe(&Command::new("postfix-hookup --user"), &out));
        String::from_utf8(out.stdout).unwrap()
    };
    let me = String::from_utf8(cmd_ok("id", &["-un"]).stdout).unwrap().trim().to_string();
    let maildir = format!("{}/.local/state/mixtasyd/Maildir/", h.display());

    // With address extensions: ~/.forward+mixtasy only; the account's own .forward untouched.
    let ext_conf = h.join("postfix-ext");
    std::fs::create_dir(&ext_conf).unwrap();
    std::fs::write(ext_conf.join("main.cf"), "recipient_delimiter = +\nhome_mailbox = Maildir/\n").unwrap();
    let ext_forward = h.join(".forward+mixtasy");
    let said = script(&ext_conf, &["--dry-run"]);
    assert!(said.contains(&format!("would append {maildir} to {}", ext_forward.display())), "{said}");
    assert!(!ext_forward.exists());
    let said = script(&ext_conf, &[]);
    assert!(said.contains(&format!("  mixtasy: {me}+mixtasy")), "{said}");
    assert_eq!(std::fs::read_to_string(&ext_forward).unwrap(), maildir.clone() + "\n");
    assert!(script(&ext_conf, &[]).contains("already delivers to"));
    assert_eq!(
        std::fs::read_to_string(&forward).unwrap(),
        "\\me, me@elsewhere.example",
        "the account's .forward is untouched"
    );
    // --remove takes back the file it made, and nothing else.
    let said = script(&ext_conf, &["--remove"]);
    assert!(said.contains(&format!("remove {maildir} from")), "{said}");
    assert!(!ext_forward.exists() && !h.join(".mixtasy-hookup").exists(), "{said}");
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), "\\me, me@elsewhere.example");
    // A ~/.forward+mixtasy that already delivers elsewhere is not taken.
    std::fs::write(&ext_forward, "someone@elsewhere.example\n").unwrap();
    let out = script_out(&ext_conf, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&Command::new("postfix-hookup --user"), &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("elsewhere"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&ext_forward).unwrap(), "someone@elsewhere.example\n");
    std::fs::remove_file(&ext_forward).unwrap();

    // Without them: ~/.forward takes all the account's mail, so not without asking: with no
    // terminal to ask on, only with --force; then with a warning, keeping its lines.
    let said = script(&empty_conf, &["--dry-run"]);
    assert!(said.contains(&format!("would append {maildir}")), "{said}");
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), "\\me, me@elsewhere.example");
    let out = script_out(&empty_conf, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&Command::new("postfix-hookup --user"), &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), "\\me, me@elsewhere.example", "not taken without asking");
    let said = script(&empty_conf, &["--force"]);
    assert!(said.contains("sends ALL your mail to the node"), "{said}");
    assert!(said.contains(&format!("  mixtasy: {me}")) || me == "mixtasy", "{said}");
    let want = format!("\\me, me@elsewhere.example\n{maildir}\n");
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), want);
    let said = script(&empty_conf, &[]);
    assert!(said.contains("already delivers to"), "{said}");
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), want, "a second run changes nothing");
    // --remove gives the .forward back byte for byte (it had no final newline).
    script(&empty_conf, &["--remove"]);
    assert_eq!(std::fs::read_to_string(&forward).unwrap(), "\\me, me@elsewhere.example");
    assert!(script(&empty_conf, &["--remove"]).contains("nothing to remove"));

    // A host that delivers to ~/Maildir/ without extensions: advice, no change.
    let maildir_conf = h.join("postfix-maildir");
    std::fs::create_dir(&maildir_conf).unwrap();
    std::fs::write(maildir_conf.join("main.cf"), "home_mailbox = Maildir/\n").unwrap();
    std::fs::remove_file(&forward).unwrap();
    let said = script(&maildir_conf, &[]);
    assert!(
        said.contains(&format!("maildir = \"{}/Maildir\"", h.display())) && said.contains("ALL your mail"),
        "{said}"
    );
    assert!(!forward.exists(), "no .forward where the host delivers to a Maildir");

    // Arguments are checked.
    for args in [
        &["--user", "--root"][..],
        &["--user", "--domain", "x.test"],
        &["--root"],
        &["--root", "--domain", "not a domain"],
        &["--bogus"],
    ] {
        let mut c = Command::new(hookup_script());
        c.args(args).env("HOME", h);
        let out = run(c, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("postfix-hookup: "), "{args:?}");
    }
}

/// Mail to `addr` handed to the lab's Postfix (as root, from a local sender).
pub(crate) fn submit(pf: &Postfix, addr: &str, subject: &str) {
    let mut c = Command::new("/usr/sbin/sendmail");
    c.env("MAIL_CONFIG", &pf.conf).args(["-i", "-f", "tester@host.test", "--", addr]);
    ok(c, format!("To: {addr}\nSubject: {subject}\n\n{subject}\n").as_bytes());
}

/// The files in a Maildir's new/.
pub(crate) fn new_mail(maildir: &Path) -> usize {
    files_below(&maildir.join("new")).len()
}

/// Issue 13, the alias route: on a host whose Postfix delivers local mail through
/// /etc/aliases-style maps, the hook-up refuses to take over an existing `mixtasy` alias or to
/// point at a Maildir the node cannot write, then hooks up (mail for the node arrives, the
/// host's aliases keep working), and `--remove` gives back main.cf and the maps byte for
/// byte, after which mail to root and to an existing alias is still delivered and nothing is
/// deferred (the "alias database unavailable" of the old uninstall).
#[test]
fn hookup_alias_route_and_remove_keep_the_hosts_mail() {
    assert!(is_root(), "this test runs a real Postfix instance: it must run as root");
    let (uid, gid) = test_user();
    let lab = Lab::new(uid, gid);
    let fqdn = "host.test";
    let mut c = lab.node_raw(fqdn);
    c.args(["init", "--address", "mixtasy@host.test", "--modes", "middleman"]);
    ok(c, b"");
    // The host's own aliases: root's mail and a list go to Maildirs of their own; deliveries
    // from this root-owned file run as default_privs.
    let pf = Postfix::start_with(
        uid,
        gid,
        &[
            "mydestination = host.test, localhost",
            "local_transport = local",
            "alias_maps = hash:ROOT/conf/aliases",
            "alias_database = hash:ROOT/conf/aliases",
            "default_privs = mixtasy-test",
        ],
    );
    let boxes = pf.root.path().join("boxes");
    std::fs::create_dir(&boxes).unwrap();
    std::os::unix::fs::chown(&boxes, Some(uid), Some(gid)).unwrap();
    let (rootbox, listbox) = (boxes.join("root"), boxes.join("list"));
    let host_aliases =
        format!("postmaster: root@host.test\nroot: {}/\nlist: {}/\n", rootbox.display(), listbox.display());
    let aliases = pf.conf.join("aliases");
    let set_aliases = |text: &str| {
        std::fs::write(&aliases, text).unwrap();
        cmd_ok("postalias", &["-c", pf.conf.to_str().unwrap(), &format!("hash:{}", aliases.display())]);
    };
    let script = |extra: &[&str]| hookup(&lab, &pf, fqdn, extra);
    let refused = |out: &Output, why: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && err.contains(why),
            "want a refusal saying {why:?}\n{}",
            describe(&Command::new("postfix-hookup"), out)
        );
    };

    // An existing mixtasy alias is not taken over.
    set_aliases(&format!("{host_aliases}mixtasy: list\n"));
    let before = conf_snapshot(&pf);
    refused(&script(&[]), "already has an alias for mixtasy");
    assert_eq!(conf_snapshot(&pf), before, "a refused hook-up changed the configuration");
    set_aliases(&host_aliases);

    // A Maildir the node's user cannot write is refused, not reported as done.
    let before = conf_snapshot(&pf);
    let locked = pf.root.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let locked_maildir = locked.join("Maildir");
    refused(&script(&["--maildir", locked_maildir.to_str().unwrap()]), "cannot write");
    assert_eq!(conf_snapshot(&pf), before, "a refused hook-up changed the configuration");
    let main_before = std::fs::read(pf.conf.join("main.cf")).unwrap();

    // The hook-up, then a second run that changes nothing.
    let out = script(&[]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && said.contains("reload Postfix"), "{}", describe(&Command::new("hookup"), &out));
    let alias_maps = cmd_ok("postconf", &["-c", pf.conf.to_str().unwrap(), "-h", "alias_maps"]);
    let home = lab.net.home(fqdn);
    assert_eq!(
        String::from_utf8_lossy(&alias_maps.stdout).trim(),
        format!("hash:{}, hash:{}/aliases", aliases.display(), home.display()),
        "the node's map comes after the host's own"
    );
    let out = script(&[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("nothing to change"),
        "{}",
        describe(&Command::new("hookup again"), &out)
    );

    // Delivery: the node's address reaches its Maildir; the host's aliases still work.
    submit(&pf, "mixtasy@host.test", "for the node");
    submit(&pf, "root@host.test", "for root, hooked");
    submit(&pf, "list@host.test", "for the list, hooked");
    pf.wait_idle();
    assert_eq!(new_mail(&home.join("Maildir")), 1, "the node's mail; Postfix log:\n{}", pf.log_tail());
    assert_eq!((new_mail(&rootbox), new_mail(&listbox)), (1, 1), "Postfix log:\n{}", pf.log_tail());

    // The self-test: `check --send-probe` as the node's user sends through the lab's
    // sendmail (postdrop) and finds its probe in the Maildir, then removes it.
    let mut c = lab.node(&pf, fqdn);
    c.args(["check", "--send-probe"]);
    let out = run(c, b"");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let probe = said.lines().find(|l| l.contains("probe: ")).unwrap_or_else(|| panic!("no probe line:\n{said}"));
    assert!(probe.starts_with("ok ") && probe.contains("(removed)"), "{said}\nPostfix log:\n{}", pf.log_tail());
    assert_eq!(new_mail(&home.join("Maildir")), 1, "the probe was removed, the earlier mail kept");

    // --remove: main.cf and every map as before the hook-up, the node's alias file gone.
    let out = script(&["--remove", "--dry-run"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("would take"),
        "{}",
        describe(&Command::new("remove --dry-run"), &out)
    );
    let out = script(&["--remove"]);
    assert!(out.status.success(), "{}", describe(&Command::new("hookup --remove"), &out));
    assert_eq!(
        conf_snapshot(&pf),
        before,
        "--remove left the configuration different:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read(pf.conf.join("main.cf")).unwrap(), main_before);
    assert!(!home.join("aliases").exists() && !home.join("aliases.db").exists(), "the node's alias map is gone");
    let out = script(&["--remove"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("nothing to remove"),
        "{}",
        describe(&Command::new("remove again"), &out)
    );

    // Afterwards mail to root (directly and through postmaster) and to the list is delivered.
    submit(&pf, "root@host.test", "for root, removed");
    submit(&pf, "postmaster@host.test", "for postmaster, removed");
    submit(&pf, "list@host.test", "for the list, removed");
    pf.wait_idle();
    assert_eq!((new_mail(&rootbox), new_mail(&listbox)), (3, 2), "Postfix log:\n{}", pf.log_tail());
    let log = pf.log();
    assert!(!log.contains("status=deferred") && !log.contains("unavailable"), "mail was deferred:\n{}", pf.log_tail());
}

/// Issue 13, the virtual mailbox route: a Maildir virtual(8) could not write is refused; an
/// address that already has a mailbox is not taken; `--remove` of one node leaves the other's
/// delivery in place, and of the last one gives back main.cf and the maps byte for byte.
#[test]
fn hookup_virtual_route_refuses_and_removes() {
    assert!(is_root(), "this test runs a real Postfix instance: it must run as root");
    let (uid, gid) = test_user();
    let lab = Lab::new(uid, gid);
    for fqdn in ["mix1.test", "mix2.test"] {
        let mut c = lab.node_raw(fqdn);
        c.args(["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", "middleman"]);
        ok(c, b"");
    }
    let pf = Postfix::start(uid, gid);
    let before = conf_snapshot(&pf);
    let main_before = std::fs::read(pf.conf.join("main.cf")).unwrap();
    let refused = |out: &Output, why: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && err.contains(why),
            "want a refusal saying {why:?}\n{}",
            describe(&Command::new("postfix-hookup"), out)
        );
    };

    // A Maildir under a root-only directory: virtual(8) would fail with Permission denied.
    let locked = pf.root.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&hookup(&lab, &pf, "mix1.test", &["--maildir", locked.join("Maildir").to_str().unwrap()]), "cannot write");
    // An address that already has a mailbox (here: in the lab's own map).
    std::fs::write(
        pf.conf.join("rcpt_vmailbox"),
        format!("@{RCPT_DOMAIN} rcpt/Maildir/\nmixtasy@mix2.test rcpt/Maildir/\n"),
    )
    .unwrap();
    refused(&hookup(&lab, &pf, "mix2.test", &[]), "already has a mailbox");
    std::fs::write(pf.conf.join("rcpt_vmailbox"), format!("@{RCPT_DOMAIN} rcpt/Maildir/\n")).unwrap();
    assert_eq!(conf_snapshot(&pf), before, "a refused hook-up changed the configuration");

    for fqdn in ["mix1.test", "mix2.test"] {
        let out = hookup(&lab, &pf, fqdn, &[]);
        assert!(out.status.success(), "{}", describe(&Command::new(format!("hookup {fqdn}")), &out));
    }
    let out = hookup(&lab, &pf, "mix1.test", &["--remove"]);
    assert!(out.status.success(), "{}", describe(&Command::new("remove mix1"), &out));
    submit(&pf, "mixtasy@mix2.test", "mix2 still hooked");
    pf.wait_idle();
    assert_eq!(new_mail(&lab.net.home("mix2.test").join("Maildir")), 1, "Postfix log:\n{}", pf.log_tail());
    let vmailbox = std::fs::read_to_string(pf.conf.join("mixtasy_vmailbox")).unwrap();
    assert!(!vmailbox.contains("mix1.test") && vmailbox.contains("mixtasy@mix2.test"), "{vmailbox}");
    let out = hookup(&lab, &pf, "mix2.test", &["--remove"]);
    assert!(out.status.success(), "{}", describe(&Command::new("remove mix2"), &out));
    assert_eq!(
        conf_snapshot(&pf),
        before,
        "--remove left the configuration different:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read(pf.conf.join("main.cf")).unwrap(), main_before);
    // The lab's catch-all domain still receives.
    submit(&pf, "bob@rcpt.test", "after removal");
    pf.wait_idle();
    assert_eq!(pf.delivered().len(), 1, "Postfix log:\n{}", pf.log_tail());
    assert!(!pf.log().contains("status=deferred"), "mail was deferred:\n{}", pf.log_tail());
}
