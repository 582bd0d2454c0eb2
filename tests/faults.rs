//! Faults a node meets in production, through the real `mixtasyd --round`: a full disk under
//! the state, an unwritable, unreadable or vanished Maildir, a damaged or locked state
//! database, the clock jumping back and forward, sendmail missing or hanging, and rounds
//! started together.
//!
//! Each fault ends in one line on standard error, naming no address, file of a single
//! message or hash, and the documented exit status (74: the Maildir or the state could not
//! be read or written), or in a round that copes (exit 0). No valid message is lost: the
//! next healthy round carries on, and every valid message injected before or during the
//! fault is pooled by `a.test` exactly once and counted once (`intake.taken`,
//! `intake.forwarded`, no `drop.replay`, which a message taken twice would raise); most
//! tests then fire the pool and check that the exit `b.test` delivers each exactly once.
//!
//! The tests that mount filesystems (a small tmpfs, read-only bind mounts) need root, which
//! CI has; without it they fail saying so, never pass silently.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mixtasy::format::message::{self, Kind};
use mixtasy::mixes::directory::{self, Mix};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

use crate::util::*;

/// The mix every test message enters at, and the exit it leaves by.
const A: &str = "a.test";
const B: &str = "b.test";
const HOUR: u64 = 3600;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `a.test` (middleman) and `b.test` (exit) in the lab network: every round fires the
/// whole pool, no dummies.
fn add_pair(net: &mut Net) {
    net.add_lab_node(A, "middleman");
    net.add_lab_node(B, "exitpublic");
}

fn pair(now: u64) -> Net {
    let mut net = Net::new(now);
    add_pair(&mut net);
    net
}

fn tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The original for `tag`: one recipient of its own (the exit's per-recipient quota stays
/// out of the way), the tag as the Subject.
fn original(tag: &str) -> Vec<u8> {
    format!("To: {tag}@rcpt.test\nSubject: {tag}\n\n{tag}\n").into_bytes()
}

/// Wire mails along a.test → b.test, one per tag, made in this process as a sender at time
/// `at` would: each layer for the newest subkey valid then.
fn wires(net: &Net, at: u64, tags: &[String]) -> Vec<Vec<u8>> {
    let t = UNIX_EPOCH + Duration::from_secs(at);
    let mixes: Vec<Mix> = [A, B]
        .iter()
        .map(|f| directory::check(&Cert::from_bytes(&net.export(f, false)).unwrap(), t).unwrap())
        .collect();
    let path: Vec<&Mix> = mixes.iter().collect();
    let mut rng = rand::rng();
    tags.iter()
        .map(|tag| {
            let fin = message::build_final(&message::new_id(&mut rng), Kind::Singlepart, &original(tag), &mut rng);
            mixtasy::sender::create::wrap(fin, &path, None, t, &mut rng).unwrap().mail
        })
        .collect()
}

fn inject_all(net: &Net, mails: &[Vec<u8>]) {
    for m in mails {
        net.inject(m);
    }
}

/// Message files waiting in a node's Maildir.
fn spool_len(net: &Net, fqdn: &str) -> usize {
    let inbox = net.mailbox(&format!("mixtasy@{fqdn}"));
    ["new", "cur"].iter().map(|s| std::fs::read_dir(inbox.join(s)).map_or(0, |d| d.count())).sum()
}

/// `mixtasyd --round` for `fqdn` at time `at`, not judged.
fn round_at(net: &Net, fqdn: &str, at: u64) -> Output {
    let mut c = mixtasyd();
    c.arg("--home").arg(net.home(fqdn)).args(["--now", &at.to_string(), "--round"]);
    run(c, b"")
}

/// A round at `at` that must succeed; its summary line.
fn ok_round_at(net: &Net, fqdn: &str, at: u64) -> String {
    let o = round_at(net, fqdn, at);
    assert!(o.status.success(), "round at {fqdn} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A round that must fail with `code`: one line on standard error, nothing on standard
/// output; returns the line.
fn failed_round(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}\nstdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("mixtasyd: "), "{err}");
    assert!(out.stdout.is_empty(), "a failed round prints no summary: {}", String::from_utf8_lossy(&out.stdout));
    assert_private(&err);
    eprint!("faults: exit {code}: {err}");
    err
}

/// The privacy rule for what a node prints: no recipient address, no name of a single
/// message's file, no hash or key id.
fn assert_private(line: &str) {
    assert!(!line.contains("@rcpt.test"), "names an address: {line}");
    assert!(!line.contains("inject."), "names a message file: {line}");
    assert!(!line.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 16), "names a hash or key: {line}");
}

/// Delivers whatever a.test sent at the exit (one round of b.test at `at`) and checks that
/// every tag reached its recipient exactly once, and nothing else did.
fn assert_delivered_once(net: &Net, at: u64, want: &[String]) {
    ok_round_at(net, B, at);
    let mut got = Vec::new();
    for e in std::fs::read_dir(net.mail_root()).unwrap() {
        let dir = e.unwrap().path();
        if !dir.to_string_lossy().ends_with("@rcpt.test") {
            continue;
        }
        for f in std::fs::read_dir(dir.join("new")).unwrap() {
            let mail = std::fs::read(f.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&mail);
            got.push(text.lines().find_map(|l| l.strip_prefix("Subject: ")).expect("a Subject").trim().to_string());
        }
    }
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    let st = net.status(B);
    assert_eq!(st.get("exit_queue"), 0, "b.test delivered everything: {}", st.0);
    assert!(
        got == want,
        "delivered {} mails, want {}: missing {:?}, extra or twice {:?}",
        got.len(),
        want.len(),
        want.iter().filter(|t| !got.contains(t)).take(5).collect::<Vec<_>>(),
        got.iter()
            .enumerate()
            .filter(|(i, t)| !want.contains(t) || got[..*i].contains(t))
            .map(|(_, t)| t)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!((st.get("intake.final"), st.get("drop.replay")), (want.len() as i64, 0), "{}", st.0);
}

/// a.test took `n` files, each once, all valid and forwarded.
fn assert_taken_once(st: &Status, n: usize) {
    let n = n as i64;
    assert_eq!((st.get("intake.taken"), st.get("intake.forwarded"), st.get("drop.replay")), (n, n, 0), "{}", st.0);
}

fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{what} needs root: it mounts filesystems (CI runs the tests as root); run `cargo test` as root");
    }
}

/// A mount made for one test, undone when dropped (also when the test fails).
struct Mount {
    at: PathBuf,
}

impl Mount {
    fn new(args: &[&str], at: &Path) -> Mount {
        let o = Command::new("mount").args(args).arg(at).stdin(Stdio::null()).output().expect("running mount(8)");
        assert!(o.status.success(), "mount {args:?} {}: {}", at.display(), String::from_utf8_lossy(&o.stderr));
        Mount { at: at.to_path_buf() }
    }

    /// A tmpfs of `size` (mount(8) syntax) over `at`.
    fn tmpfs(at: &Path, size: &str) -> Mount {
        Mount::new(&["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"], at)
    }

    /// `at` itself, read-only: even root cannot write there.
    fn read_only(at: &Path) -> Mount {
        let m = Mount::new(&["--bind", at.to_str().unwrap()], at);
        let o = Command::new("mount").args(["-o", "remount,bind,ro"]).arg(at).stdin(Stdio::null()).output().unwrap();
        assert!(o.status.success(), "remounting {} read-only: {}", at.display(), String::from_utf8_lossy(&o.stderr));
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.at)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.at.display());
        }
    }
}

/// Bytes an unprivileged writer can still put on the filesystem of `p`.
fn free_bytes(p: &Path) -> u64 {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct it is given; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0, "statvfs {}", p.display());
    s.f_bavail as u64 * s.f_frsize as u64
}

/// Grows or shrinks the file `filler` until about `leave` bytes stay free beside it.
fn leave_free(filler: &Path, leave: u64) {
    let dir = filler.parent().unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(filler).unwrap();
    let free = free_bytes(dir);
    if free > leave {
        let mut more = free - leave;
        let chunk = vec![0u8; 1 << 20];
        while more > 0 {
            let n = more.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break; // full already
            }
            more -= n as u64;
        }
    } else {
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave - free)).unwrap();
    }
    f.sync_all().ok();
}

/// The state database on a full filesystem. a.test's home is a 64 MiB tmpfs (inside a
/// larger one holding the rest of the test, so that fsync costs nothing); a filler file
/// leaves 0, then 1 MiB, 2 MiB... free, and each step runs a round over 300 messages (two
/// intake batches) until one round has committed a batch and then hit ENOSPC: the disk
/// full from the start, and full mid-way. Each failure is one line and 74, and after it
/// every message is either still in the Maildir or in the pool, never both, never gone.
/// Then the filler goes and a healthy round takes the rest; the pool then fires and the
/// exit delivers each message once.
#[test]
fn full_disk_under_the_state_loses_nothing() {
    require_root("full_disk_under_the_state_loses_nothing");
    let mut net = Net::new(now());
    let _world = Mount::tmpfs(net.dir.path(), "512m");
    let home = net.home(A);
    std::fs::create_dir_all(&home).unwrap();
    let _tmpfs = Mount::tmpfs(&home, "64m");
    add_pair(&mut net);
    net.configure(A, "threshold", "100000"); // a.test's pool keeps everything until the end
    net.round(A);
    let all = tags("full", 300);
    inject_all(&net, &wires(&net, net.now, &all));

    let filler = home.join("filler");
    let (mut full_from_start, mut full_midway) = (0, 0);
    for step in 0u64.. {
        assert!(step < 40, "no round committed a batch and then ran out of space");
        leave_free(&filler, step << 20);
        let o = round_at(&net, A, net.now);
        let st = net.status(A);
        let (spool, pool) = (spool_len(&net, A), st.get("pool") as usize);
        assert_eq!(spool + pool, all.len(), "every message in the Maildir or the pool, once: {}", st.0);
        assert_taken_once(&st, pool);
        if o.status.success() {
            panic!("a round succeeded with {step} MiB free before one failed mid-way");
        }
        let err = failed_round(&o, 74);
        assert!(err.contains("database or disk is full") || err.contains("No space left on device"), "{err}");
        assert!(err.contains("state.sqlite") && err.contains("free space"), "names the file and what to do: {err}");
        if pool == 0 {
            full_from_start += 1;
        } else {
            full_midway += 1;
            break;
        }
    }
    assert!(full_from_start > 0 && full_midway > 0, "{full_from_start} {full_midway}");

    // Space again: the next round takes the rest, each message once.
    std::fs::remove_file(&filler).unwrap();
    ok_round_at(&net, A, net.now);
    let st = net.status(A);
    assert_eq!((spool_len(&net, A), st.get("pool")), (0, all.len() as i64), "{}", st.0);
    assert_taken_once(&st, all.len());
    net.configure(A, "threshold", "1");
    net.round(A);
    assert_eq!(net.status(A).get("pool.sent"), all.len() as i64);
    assert_delivered_once(&net, net.now, &all);
}

/// A Maildir on a read-only mount: the round takes the batch (its fate commits), cannot
/// remove the files and stops with 74, naming the folder but no file. While it stays
/// read-only, rounds keep failing without peeling or counting those files again (the
/// `done` ledger); once writable, the next round removes them and sends everything once.
/// Mail that is not mix traffic reaches `.operator` once.
#[test]
fn read_only_maildir_stops_rounds_until_writable() {
    require_root("read_only_maildir_stops_rounds_until_writable");
    let net = pair(now());
    let all = tags("ro", 5);
    inject_all(&net, &wires(&net, net.now, &all));
    let inbox = net.mailbox(&format!("mixtasy@{A}"));
    std::fs::write(inbox.join("new/operator-mail"), b"From: someone@x.test\nSubject: hello\n\nhi\n").unwrap();
    let ro = Mount::read_only(&inbox);
    for _ in 0..2 {
        let err = failed_round(&round_at(&net, A, net.now), 74);
        assert!(err.contains("Read-only file system") && err.contains(&inbox.display().to_string()), "{err}");
        assert_eq!(spool_len(&net, A), all.len() + 1, "files stay where they are");
        let st = net.status(A);
        assert_eq!(
            (st.get("intake.taken"), st.get("intake.forwarded"), st.get("intake.operator")),
            (6, 5, 1),
            "taken once: {}",
            st.0
        );
        assert_eq!((st.get("pool"), st.get("drop.replay")), (5, 0));
    }
    drop(ro);
    net.round(A);
    let st = net.status(A);
    assert_eq!(
        (spool_len(&net, A), st.get("pool"), st.get("pool.sent"), st.get("intake.taken"), st.get("operator_mail")),
        (0, 0, 5, 6, 1),
        "{}",
        st.0
    );
    assert_delivered_once(&net, net.now, &all);
}

/// An unreadable Maildir (mode 000, the node without root's capabilities, as a node runs):
/// 74 and one line; the pool and the key are untouched. One deleted between rounds is made
/// again, empty (issue 12: Postfix makes a Maildir only at its first delivery, so a missing
/// one means no mail yet; `status` says so while no mail ever came, which is how a wrong
/// `maildir` setting shows). Then the next round carries on.
#[test]
fn unreadable_maildir_stops_rounds_and_a_deleted_one_is_made_again() {
    use std::os::unix::fs::PermissionsExt;
    let net = pair(now());
    net.configure(A, "threshold", "100000");
    let first = tags("before", 3);
    inject_all(&net, &wires(&net, net.now, &first));
    net.round(A);
    let inbox = net.mailbox(&format!("mixtasy@{A}"));

    // Unreadable: root would read it anyway, so as root the round runs without any
    // capability (still the owner of the home).
    let later = tags("unreadable", 2);
    inject_all(&net, &wires(&net, net.now, &later));
    std::fs::set_permissions(inbox.join("new"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let mut c = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--inh-caps=-all", "--bounding-set=-all", "--"]).arg(env!("CARGO_BIN_EXE_mixtasyd"));
        c
    } else {
        mixtasyd()
    };
    c.arg("--home").arg(net.home(A)).args(["--now", &net.now.to_string(), "--round"]);
    let o = run(c, b"");
    std::fs::set_permissions(inbox.join("new"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = failed_round(&o, 74);
    assert!(err.contains("cannot read the Maildir") && err.contains("Permission denied"), "{err}");
    assert_eq!((spool_len(&net, A), net.status(A).get("pool")), (2, 3));

    // Deleted, with what it held (the operator's doing: the two messages still in it are
    // gone with it): the round makes it again, empty; the pool stays.
    std::fs::remove_dir_all(&inbox).unwrap();
    net.round(A);
    let st = net.status(A);
    assert_eq!((st.get("pool"), st.get("spool")), (3, 0), "{}", st.0);
    for sub in ["new", "cur", "tmp"] {
        assert_eq!(std::fs::metadata(inbox.join(sub)).unwrap().permissions().mode() & 0o777, 0o700, "{sub}");
    }

    let last = tags("after", 2);
    inject_all(&net, &wires(&net, net.now, &last));
    net.configure(A, "threshold", "1");
    net.round(A);
    let st = net.status(A);
    assert_eq!((st.get("pool"), st.get("pool.sent")), (0, 5), "{}", st.0);
    assert_taken_once(&st, 5);
    assert_delivered_once(&net, net.now, &[first, last].concat());
}

/// The Maildir renamed away while a round runs (as `mv` or a restore would), right after
/// the first of its five intake batches committed (the round is stopped with SIGSTOP
/// for the rename, so that it cannot finish first; four batches to go leave a busy
/// machine time to stop it before the end): the round reads nothing more, fails
/// with 74 and one line, and leaves its ledger. Renamed back, the next round finishes what
/// the ledger records without peeling those files again and takes the rest: each message
/// pooled once.
#[test]
fn maildir_vanishing_during_a_round_loses_nothing() {
    let net = pair(now());
    net.configure(A, "threshold", "100000");
    let all = tags("vanish", 1200);
    inject_all(&net, &wires(&net, net.now, &all));
    let inbox = net.mailbox(&format!("mixtasy@{A}"));
    let gone = inbox.with_extension("gone");
    let spool = mixtasy::batch::spool::Spool::open(&inbox).unwrap();
    let mut c = net.node_cmd(A);
    c.arg("--round").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(60);
    // A file leaves the spool only after its batch committed; which files the first batch
    // takes is the directory's order, so watch the count, not one file.
    while spool.list().map_or(all.len(), |l| l.len()) >= all.len() {
        assert!(Instant::now() < deadline, "the first batch never committed");
        std::thread::yield_now();
    }
    // SAFETY: kill(2) on our own child, not yet reaped (its pid cannot have been reused).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stat = format!("/proc/{pid}/stat");
    // Stopped ('T'), or already gone ('Z': the assertions below say it finished too soon).
    while !std::fs::read_to_string(&stat).unwrap().rsplit(')').next().unwrap().trim_start().starts_with(['T', 'Z']) {
        std::thread::yield_now();
    }
    std::fs::rename(&inbox, &gone).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = failed_round(&o, 74);
    assert!(err.contains(&inbox.display().to_string()), "{err}");
    let st = net.status(A);
    let pooled = st.get("pool") as usize;
    assert!(pooled >= 1 && pooled < all.len(), "the round stopped mid-way: {}", st.0);
    assert_taken_once(&st, pooled);

    std::fs::rename(&gone, &inbox).unwrap();
    net.round(A);
    let st = net.status(A);
    assert_eq!((spool_len(&net, A), st.get("pool")), (0, all.len() as i64), "{}", st.0);
    assert_taken_once(&st, all.len());
}

/// A damaged `state.sqlite`: garbage over its header, truncated to nothing, truncated to
/// half. Each time the round refuses with 74 and one line naming the file and what to do,
/// touches neither the file nor the Maildir, and never starts an empty state in its place
/// (an empty replay cache would let replays through). Restored from a backup, the next
/// round carries on and the replay the backup remembers is still refused; moved aside, the
/// next round starts afresh as the line says.
#[test]
fn damaged_state_database_is_refused_never_started_afresh() {
    let net = pair(now());
    net.configure(A, "threshold", "100000");
    let first = tags("kept", 3);
    let first_wires = wires(&net, net.now, &first);
    inject_all(&net, &first_wires);
    net.round(A);
    let db = net.home(A).join("state.sqlite");
    let backup = std::fs::read(&db).unwrap();
    let second = tags("waiting", 3);
    inject_all(&net, &wires(&net, net.now, &second));
    net.inject(&first_wires[0]);

    let garbage = |b: &mut Vec<u8>| b[..64].copy_from_slice(&[0x5a; 64]);
    let empty = |b: &mut Vec<u8>| b.clear();
    let half = |b: &mut Vec<u8>| b.truncate(b.len() / 2);
    for (what, damage) in [("garbage header", &garbage as &dyn Fn(&mut Vec<u8>)), ("empty", &empty), ("half", &half)] {
        let mut bytes = backup.clone();
        damage(&mut bytes);
        std::fs::write(&db, &bytes).unwrap();
        let err = failed_round(&round_at(&net, A, net.now), 74);
        assert!(
            err.contains(&db.display().to_string()) && err.contains("restore it from a backup, or move it aside"),
            "{what}: {err}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}: the damaged file is left as it was");
        assert_eq!(spool_len(&net, A), 4, "{what}: the Maildir is untouched");
    }

    std::fs::write(&db, &backup).unwrap();
    net.round(A);
    let st = net.status(A);
    assert_eq!(
        (spool_len(&net, A), st.get("pool"), st.get("intake.forwarded"), st.get("drop.replay")),
        (0, 6, 6, 1),
        "{}",
        st.0
    );
    net.configure(A, "threshold", "1");
    net.round(A);
    assert_delivered_once(&net, net.now, &[first, second.clone()].concat());

    // Moved aside: a new state, as the line says (and mixtasyd(8) warns what it forgets).
    let third = tags("fresh", 2);
    inject_all(&net, &wires(&net, net.now, &third));
    std::fs::write(&db, b"").unwrap();
    failed_round(&round_at(&net, A, net.now), 74);
    std::fs::rename(&db, db.with_extension("damaged")).unwrap();
    net.round(A);
    let st = net.status(A);
    assert_eq!((st.get("pool.sent"), st.get("replay_entries")), (2, 2), "{}", st.0);
    assert_taken_once(&st, 2);
    assert_delivered_once(&net, net.now, &[tags("kept", 3), second, third].concat());
}

/// Another process holds `state.sqlite` in an exclusive transaction (a backup, an sqlite3
/// shell): the round waits its busy timeout, then fails with 74 and one line, the Maildir
/// untouched. Released, the next round carries on.
#[test]
fn locked_state_database_fails_the_round_until_released() {
    let net = pair(now());
    net.round(A);
    let all = tags("locked", 3);
    inject_all(&net, &wires(&net, net.now, &all));
    let db = rusqlite::Connection::open(net.home(A).join("state.sqlite")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = failed_round(&round_at(&net, A, net.now), 74);
    assert!(err.contains("database is locked") && err.contains("state.sqlite") && err.contains("next round"), "{err}");
    assert_eq!(spool_len(&net, A), 3);
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    net.round(A);
    let st = net.status(A);
    assert_eq!((spool_len(&net, A), st.get("pool.sent")), (0, 3), "{}", st.0);
    assert_taken_once(&st, 3);
    assert_delivered_once(&net, net.now, &all);
}

/// The encryption subkeys in `status --json`: how many, and how many still have a secret.
fn subkeys(st: &Status) -> (usize, usize) {
    let list = &st.0[st.0.find("\"subkeys\":[").expect("subkeys")..];
    let list = &list[..list.find(']').unwrap()];
    (list.matches("\"created\"").count(), list.matches("\"secret\":true").count())
}

/// a.test's clock jumps back a day, then forward a week (`--now`); b.test's runs on.
///
/// Back: the replay cache still refuses replays (it forgets a hash only when its subkey
/// expires, and no expiry passed); messages for a subkey valid at both times are taken
/// and sent in the same round, not stalled; no key is destroyed and no subkey added, round
/// after round. (A message for the subkey made after the time the clock fell back to is
/// dropped as `expired-key`, as `clock_skew` says: counted, not lost silently.)
/// Forward: both subkeys have expired, their secrets are destroyed and one new subkey is
/// added, not one per round; messages for them count as `expired-key`; the replay cache
/// empties; the pool held across the jump flushes.
#[test]
fn clock_jumping_back_and_forward() {
    let t0 = 1_900_000_000u64;
    let net = pair(t0);
    ok_round_at(&net, A, t0);
    // 12 h: three messages for the first subkey S1.
    let s1 = tags("s1", 3);
    let s1_wires = wires(&net, t0 + 12 * HOUR, &s1);
    inject_all(&net, &s1_wires);
    ok_round_at(&net, A, t0 + 12 * HOUR);
    // 24 h: rotation adds S2; at 25 h three messages for it, and two kept for later.
    ok_round_at(&net, A, t0 + 24 * HOUR);
    let s2 = tags("s2", 3);
    let s2_wires = wires(&net, t0 + 25 * HOUR, &s2);
    let late = wires(&net, t0 + 25 * HOUR, &tags("late", 2));
    inject_all(&net, &s2_wires);
    ok_round_at(&net, A, t0 + 25 * HOUR);
    let st = net.status(A);
    assert_eq!((st.get("key.added"), st.get("pool.sent"), subkeys(&st)), (1, 6, (2, 2)), "{}", st.0);

    // Back a day, to 1 h: replays of S1 and S2 messages, and new messages for S1.
    let back = t0 + HOUR;
    let s1_back = tags("back", 3);
    inject_all(&net, &s1_wires);
    net.inject(&s2_wires[0]);
    inject_all(&net, &wires(&net, back, &s1_back));
    ok_round_at(&net, A, back);
    let st = net.status(A);
    assert_eq!((st.get("drop.replay"), st.get("drop.expired-key"), st.get("intake.forwarded")), (3, 1, 9), "{}", st.0);
    assert_eq!((st.get("pool"), st.get("pool.sent")), (0, 9), "not stalled: {}", st.0);
    for h in 2..6 {
        ok_round_at(&net, A, t0 + h * HOUR);
    }
    let st = net.status(A);
    assert_eq!(
        (st.get("key.added"), st.get("key.destroyed"), subkeys(&st)),
        (1, 0, (2, 2)),
        "no key made or destroyed: {}",
        st.0
    );

    // The clock is right again at 26 h; three messages for S2 wait in the pool.
    let held = tags("held", 3);
    net.configure(A, "threshold", "100000");
    inject_all(&net, &wires(&net, t0 + 26 * HOUR, &held));
    ok_round_at(&net, A, t0 + 26 * HOUR);
    assert_eq!(net.status(A).get("pool"), 3);

    // Forward a week: the late messages and a replay arrive for subkeys long expired.
    let week = t0 + 26 * HOUR + 7 * 24 * HOUR;
    inject_all(&net, &late);
    net.inject(&s1_wires[1]);
    net.configure(A, "threshold", "1");
    for h in 0..3 {
        ok_round_at(&net, A, week + h * HOUR);
    }
    let st = net.status(A);
    assert_eq!((st.get("key.added"), st.get("key.destroyed"), subkeys(&st)), (2, 2, (3, 1)), "{}", st.0);
    assert_eq!((st.get("drop.expired-key"), st.get("replay_entries")), (4, 0), "{}", st.0);
    assert_eq!(
        (st.get("pool"), st.get("pool.sent"), st.get("intake.forwarded"), st.get("drop.replay")),
        (0, 12, 12, 3),
        "{}",
        st.0
    );
    assert_delivered_once(&net, t0 + 27 * HOUR, &[s1, s2, s1_back, held].concat());
}

/// A sendmail script at `path`.
fn script(path: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{:?}", path.display().to_string())
}

/// sendmail missing, then hanging past `sendmail_timeout`, then failing (tests/round.rs has
/// each alone): every round exits 0 and keeps the pool; a hung sendmail costs the round the
/// timeout per message, no more. The next healthy sendmail sends each message once.
#[test]
fn sendmail_missing_hanging_failing_then_healthy() {
    let net = pair(now());
    net.configure(A, "transport", "\"sendmail\"");
    net.configure(A, "sendmail_timeout", "\"1s\"");
    let mut all = Vec::new();
    let hang = script(&net.dir.path().join("sendmail-hang"), "exec sleep 30");
    let fail = script(&net.dir.path().join("sendmail-fail"), "cat >/dev/null; exit 75");
    for (i, sendmail) in ["\"/nonexistent/sendmail\"", &hang, &fail].into_iter().enumerate() {
        net.configure(A, "sendmail", sendmail);
        let batch = tags(&format!("sendmail{i}"), 1);
        inject_all(&net, &wires(&net, net.now, &batch));
        all.extend(batch);
        let t = Instant::now();
        net.round(A);
        let st = net.status(A);
        assert_eq!((st.get("pool"), st.get("pool.sent")), (all.len() as i64, 0), "{}", st.0);
        assert!(t.elapsed() < Duration::from_secs(20), "a round with a hung sendmail took {:?}", t.elapsed());
    }
    assert_eq!(net.status(A).get("pool.deferred"), 1 + 2 + 3);
    // A healthy MTA: delivers into the lab Maildir of the recipient.
    let ok = script(
        &net.dir.path().join("sendmail-ok"),
        &format!("for rcpt; do :; done\nd={:?}/\"$rcpt\"\nf=$(date +%s%N).$$\nmkdir -p \"$d/tmp\" \"$d/new\" && cat > \"$d/tmp/$f\" && mv \"$d/tmp/$f\" \"$d/new/$f\"", net.mail_root().display().to_string()),
    );
    net.configure(A, "sendmail", &ok);
    net.round(A);
    let st = net.status(A);
    assert_eq!((st.get("pool"), st.get("pool.sent")), (0, 3), "{}", st.0);
    assert_taken_once(&st, 3);
    assert_delivered_once(&net, net.now, &all);
}

/// A round that finds the lock held does nothing (tests/round.rs); here the next one
/// carries on, and three rounds started at once over 300 messages (two intake batches)
/// take each exactly once between them. Then the pool fires and the exit delivers each once.
#[test]
fn rounds_started_together_take_each_message_once() {
    let net = pair(now());
    net.configure(A, "threshold", "100000");
    let all = tags("together", 300);
    inject_all(&net, &wires(&net, net.now, &all));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(net.home(A).join("round.lock"))
        .unwrap();
    lock.lock().unwrap();
    assert!(net.round(A).contains("another round is running"));
    assert_eq!(spool_len(&net, A), all.len(), "a busy round touches nothing");
    drop(lock);
    let children: Vec<_> = (0..3)
        .map(|_| {
            let mut c = net.node_cmd(A);
            c.arg("--round").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && (out.contains("round: took") || out.contains("another round is running")),
            "{out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    net.round(A);
    let st = net.status(A);
    assert_eq!((spool_len(&net, A), st.get("pool")), (0, all.len() as i64), "{}", st.0);
    assert_taken_once(&st, all.len());
}
