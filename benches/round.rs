//! Throughput of one round: `mixtasyd --round` taking a spool of N valid wire messages into
//! its pool, beside copying the same N files (the I/O floor), with the round's peak RSS.
//!
//! Run with `cargo bench --bench round` (release profile) or `scripts/bench`. For each N a
//! fresh node home is made with the real binary (`mixtasyd init`), configured so the pool
//! does not fire and no dummies are made (intake → pool only), and N messages addressed to
//! it as first hop of a 4-hop path are created in process and staged as files. Then, one
//! after the other on the same files: the copy (timed), and the round (timed as a child
//! process, wall clock from spawn to exit, so start-up, key loading and SQLite are in it).
//! The bench asserts the round did the work (pool == N, spool empty) before reporting.
//! Each size is measured 3 times (fresh home each time): the best and the median are reported.
//! Set `MIXTASY_BENCH_QUICK=1` for a short smoke run (300 and 1000 messages);
//! `MIXTASY_BENCH_KEEP=1` keeps the homes and files for a look afterwards;
//! `MIXTASY_BENCH_MIXTASYD=PATH` times another build of mixtasyd (an older one, for a
//! before/after comparison on the same machine in the same hour).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::keys;
use mixtasy::mixes::modes::Modes;
use mixtasy::node::home::NodeHome;
use mixtasy::sender::create::{self, Options};

/// Targets from the issue.
const RATE_TARGET: f64 = 3000.0;
const RSS_TARGET_MIB: f64 = 64.0;
/// "Not growing with spool size": the larger spool's peak may exceed the smaller's by at
/// most this factor (allocator and SQLite page-cache noise), on top of being under the target.
const RSS_FLAT_FACTOR: f64 = 1.15;

/// The mixtasyd binary cargo built for this bench from the same sources (Cargo builds a
/// package's binaries for its benches and names them in `CARGO_BIN_EXE_<name>`; the bench
/// profile inherits release, so this is `target/release/mixtasyd`).
const MIXTASYD: &str = env!("CARGO_BIN_EXE_mixtasyd");

/// The binary timed: `MIXTASYD`, or the one `MIXTASY_BENCH_MIXTASYD` names.
fn mixtasyd_bin() -> std::path::PathBuf {
    std::env::var_os("MIXTASY_BENCH_MIXTASYD").filter(|v| !v.is_empty()).map_or_else(|| MIXTASYD.into(), Into::into)
}

const NODE: &str = "mixtasy@bench1.test";

fn quick() -> bool {
    std::env::var_os("MIXTASY_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

fn environment() {
    let nproc = std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "?".into());
    let build = if cfg!(debug_assertions) {
        "DEBUG build (debug_assertions on: figures are meaningless)"
    } else {
        "release build (debug_assertions off)"
    };
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    println!("environment: nproc={nproc}; {build}; cpu: {cpu}; loadavg: {load}");
    println!("binary: {}", mixtasyd_bin().display());
}

/// Runs `mixtasyd --home HOME ARGS...` to completion; panics (with its stderr) on failure.
fn mixtasyd(home: &Path, args: &[&str]) -> String {
    let out = Command::new(mixtasyd_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running mixtasyd");
    assert!(
        out.status.success(),
        "mixtasyd {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Replaces the one line `key = ...` of a config file.
fn set_setting(text: &str, key: &str, value: &str) -> String {
    let mut hits = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix(key) {
            Some(rest) if rest.trim_start().starts_with('=') => {
                hits += 1;
                format!("{key} = {value}")
            }
            _ => l.to_string(),
        })
        .collect();
    assert_eq!(hits, 1, "setting `{key}` not found exactly once in mixtasyd.toml");
    lines.join("\n") + "\n"
}

/// A fresh node home made by the real binary, configured for intake -> pool only: a new
/// key (`init --address`), or the key of an earlier home (`init --key`), so the same staged
/// messages can be taken again by a home with fresh state.
fn make_home(home: &Path, key_of: Option<&Path>) {
    match key_of {
        None => mixtasyd(home, &["init", "--address", NODE, "--modes", "middleman,exitpublic"]),
        Some(other) => mixtasyd(home, &["init", "--key", other.join("secret-key.pgp").to_str().expect("UTF-8 path")]),
    };
    let cfg = home.join("mixtasyd.toml");
    let mut text = fs::read_to_string(&cfg).expect("reading mixtasyd.toml");
    let out = home.join("out");
    text = set_setting(&text, "transport", &format!("\"maildir:{}\"", out.display()));
    text = set_setting(&text, "min_pool", "1000000");
    text = set_setting(&text, "dummy_time_p", "0.0");
    text = set_setting(&text, "dummy_flush_p", "0.0");
    text = set_setting(&text, "dummy_starved_p", "0.0");
    text = set_setting(&text, "dummy_arrival_p", "0.0");
    fs::write(&cfg, text).expect("writing mixtasyd.toml");
    for sub in ["new", "cur", "tmp"] {
        assert!(home.join("Maildir").join(sub).is_dir(), "init made no Maildir/{sub}");
    }
}

/// Creates `n` wire messages whose first hop is the node of `home`, as files in `staging`,
/// on every core. Returns the file names (sorted, as a Maildir reader lists them).
fn stage(home: &Path, staging: &Path, n: usize) -> Vec<String> {
    let now = SystemTime::now();
    let node_cert = NodeHome::new(home.to_path_buf()).cert().expect("node cert").strip_secret_key_material();
    let node = directory::check(&node_cert, now).expect("the node's key passes D8");
    let node_address = MixAddress::parse(NODE).unwrap();
    assert_eq!(node.address, node_address);
    let modes = Modes::parse("middleman,exitpublic").unwrap();
    let mut mixes: Vec<Mix> = vec![node];
    for name in ["bench2", "bench3", "bench4"] {
        let address = MixAddress::for_fqdn(&format!("{name}.test")).unwrap();
        let cert = keys::generate(name, &modes, &address, now - Duration::from_secs(60), keys::SUBKEY_VALIDITY)
            .expect("generating a mix key");
        mixes.push(directory::check(&cert, now).expect("generated key passes D8"));
    }
    let opts = Options { first_mix: Some(node_address.clone()), hops: 4, ..Options::default() };
    let original = b"From: alice@sender.test\r\nTo: bob@rcpt.test\r\nSubject: bench\r\n\r\nHello Bob, this is a small singlepart original.\r\n";
    fs::create_dir_all(staging).unwrap();
    let stamp = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let names: Vec<String> = (0..n).map(|i| format!("{stamp}.M{i:06}P{}.bench1.test", std::process::id())).collect();
    let workers = std::thread::available_parallelism().map_or(1, |w| w.get());
    std::thread::scope(|s| {
        for w in 0..workers {
            let (mixes, opts, names, node_address) = (&mixes, &opts, &names, &node_address);
            s.spawn(move || {
                let mut rng = rand::rng();
                for name in names.iter().skip(w).step_by(workers) {
                    let msgs = create::create(original, mixes, opts, now, &mut rng).expect("create");
                    assert_eq!(msgs.len(), 1, "a small original is one singlepart message");
                    assert_eq!(&msgs[0].to, node_address, "the first hop is the node");
                    fs::write(staging.join(name), &msgs[0].mail).expect("writing a staged message");
                }
            });
        }
    });
    names
}

fn sync_dir(dir: &Path) {
    fs::File::open(dir).and_then(|d| d.sync_all()).expect("syncing a directory");
}

/// Writes dirty pages out, so no phase pays for the previous phase's writeback.
fn sync_all() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The I/O floor: copies the staged files into `dest` (read + write each, then one fsync
/// of the directory). Returns the elapsed time and the part of it the fsync took.
fn copy_floor(staging: &Path, names: &[String], dest: &Path) -> (Duration, Duration) {
    fs::create_dir_all(dest).unwrap();
    sync_dir(dest.parent().unwrap());
    sync_all();
    let t = Instant::now();
    for name in names {
        let data = fs::read(staging.join(name)).expect("reading a staged file");
        fs::write(dest.join(name), &data).expect("writing a copy");
    }
    let f = Instant::now();
    sync_dir(dest);
    (t.elapsed(), f.elapsed())
}

/// Runs `mixtasyd --home HOME --round`; returns its wall time, its peak RSS in KiB and its
/// stdout.
///
/// Peak RSS: the child is reaped with wait4(2), whose `struct rusage` is that one child's
/// (and its own waited-for descendants'; a round with the maildir transport spawns none).
/// Its `ru_maxrss` is the child's high-water resident set in KiB, the same figure as
/// VmHWM in /proc/PID/status at exit, without a polling thread's sampling gap. (getrusage
/// with RUSAGE_CHILDREN would not do: it is the maximum over every child this bench ever
/// waited for, `init` and `status` included, so it can only grow.)
fn timed_round(home: &Path, log: &Path) -> (Duration, u64, String) {
    let stdout = fs::File::create(log).unwrap();
    sync_all();
    let t = Instant::now();
    let child = Command::new(mixtasyd_bin())
        .arg("--home")
        .arg(home)
        .arg("--round")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning mixtasyd --round");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; both pointers are valid for writes.
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let elapsed = t.elapsed();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    // `child` was reaped by wait4 above; dropping a std Child neither waits nor kills.
    drop(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "mixtasyd --round failed (wait status {status:#x})"
    );
    (elapsed, usage.ru_maxrss as u64, fs::read_to_string(log).unwrap_or_default())
}

/// A number field of the flat JSON object `status --json` prints.
fn json_field(json: &str, key: &str) -> i64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("no `{key}` in status --json: {json}")) + pat.len();
    let digits: String = json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().unwrap_or_else(|_| panic!("`{key}` is not a number in status --json: {json}"))
}

/// One measurement: copy and round over the same N files, in the same repetition.
struct Rep {
    copy: Duration,
    copy_fsync: Duration,
    unlink: Duration,
    round: Duration,
    rss_kib: u64,
}

struct Row {
    n: usize,
    reps: Vec<Rep>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let k = v.len();
    if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    }
}

impl Row {
    fn copy_rates(&self) -> Vec<f64> {
        self.reps.iter().map(|r| self.n as f64 / r.copy.as_secs_f64()).collect()
    }
    fn round_rates(&self) -> Vec<f64> {
        self.reps.iter().map(|r| self.n as f64 / r.round.as_secs_f64()).collect()
    }
    /// The best repetition: what the machine does with the least interference.
    fn copy_best(&self) -> f64 {
        self.copy_rates().into_iter().fold(0.0, f64::max)
    }
    fn round_best(&self) -> f64 {
        self.round_rates().into_iter().fold(0.0, f64::max)
    }
    fn unlink_best(&self) -> f64 {
        self.reps.iter().map(|r| self.n as f64 / r.unlink.as_secs_f64()).fold(0.0, f64::max)
    }
    fn copy_median(&self) -> f64 {
        median(self.copy_rates())
    }
    fn round_median(&self) -> f64 {
        median(self.round_rates())
    }
    /// The highest peak of any repetition.
    fn rss_mib(&self) -> f64 {
        self.reps.iter().map(|r| r.rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
}

/// Runs the copy and the round over `names` once, in a fresh home holding `key_home`'s key.
fn measure(dir: &Path, key_home: &Path, staging: &Path, names: &[String], rep: usize) -> (Rep, String) {
    let n = names.len();
    // (a) The I/O floor; its copies are removed again.
    let floor_dir = dir.join(format!("copy{rep}"));
    let (copy, copy_fsync) = copy_floor(staging, names, &floor_dir);
    // Not part of the floor the issue asks for, but a round also removes every spool file it
    // took: the same number of unlinks of written-back files, timed for comparison.
    sync_all();
    let t = Instant::now();
    for name in names {
        fs::remove_file(floor_dir.join(name)).expect("removing a copy");
    }
    sync_dir(&floor_dir);
    let unlink = t.elapsed();
    fs::remove_dir_all(&floor_dir).unwrap();

    // (b) The round over the same files, placed into a fresh home's Maildir/new untimed.
    let home = dir.join(format!("home{rep}"));
    make_home(&home, Some(key_home));
    let new = home.join("Maildir").join("new");
    for name in names {
        fs::copy(staging.join(name), new.join(name)).expect("placing a spool file");
    }
    sync_dir(&new);
    let (round, rss_kib, log) = timed_round(&home, &dir.join(format!("round{rep}.log")));

    // The round must have done the work: every message pooled, nothing left behind.
    let status = mixtasyd(&home, &["status", "--json"]);
    let pool = json_field(&status, "pool");
    let spool = json_field(&status, "spool");
    let left = fs::read_dir(&new).unwrap().count() + fs::read_dir(home.join("Maildir").join("cur")).unwrap().count();
    assert_eq!(pool, n as i64, "round did not pool all {n} messages; its output: {}; status: {status}", log.trim());
    assert_eq!((spool, left), (0, 0), "round left spool files behind; its output: {}", log.trim());
    assert!(log.contains(&format!("took {n}, pooled {n},")), "unexpected round summary: {}", log.trim());
    if std::env::var_os("MIXTASY_BENCH_KEEP").is_none() {
        fs::remove_dir_all(&home).unwrap();
    }
    (Rep { copy, copy_fsync, unlink, round, rss_kib }, log.trim().to_string())
}

fn main() {
    let t_start = Instant::now();
    let (sizes, reps): (&[usize], usize) = if quick() { (&[300, 1000], 3) } else { (&[1000, 10000], 3) };
    println!("Mixtasy round benchmark: mixtasyd --round over N cv25519 wire messages (intake -> pool) vs copying the same files");
    environment();
    let tmp = tempfile::Builder::new().prefix("mixtasy-bench-round").tempdir().expect("temporary directory");
    let mut rows = Vec::new();
    // Smaller N first. Each N has its own key and staged files; each repetition its own home
    // (same key, fresh state), and copies then rounds the same files, so both see the same
    // machine state. The machine may be shared: best and median of the repetitions are reported.
    for &n in sizes {
        let dir = tmp.path().join(format!("n{n}"));
        let key_home = dir.join("key-home");
        let staging = dir.join("staging");
        fs::create_dir_all(&dir).unwrap();
        make_home(&key_home, None);
        let t = Instant::now();
        let names = stage(&key_home, &staging, n);
        let gen = t.elapsed();
        let mail_bytes = fs::metadata(staging.join(&names[0])).map(|m| m.len()).unwrap_or(0);
        println!("N={n}: staged {n} messages of {mail_bytes} bytes in {:.1} s (not timed)", gen.as_secs_f64());
        let mut row = Row { n, reps: Vec::new() };
        for rep in 0..reps {
            let (m, log) = measure(&dir, &key_home, &staging, &names, rep);
            println!(
                "  rep {}: copy {:.3} s (its fsync {:.3} s), unlink {:.3} s, round {:.3} s, peak RSS {:.1} MiB; {log}",
                rep + 1,
                m.copy.as_secs_f64(),
                m.copy_fsync.as_secs_f64(),
                m.unlink.as_secs_f64(),
                m.round.as_secs_f64(),
                m.rss_kib as f64 / 1024.0
            );
            row.reps.push(m);
        }
        rows.push(row);
        // Free the disk and page cache before the next size.
        if std::env::var_os("MIXTASY_BENCH_KEEP").is_none() {
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    if std::env::var_os("MIXTASY_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }

    println!();
    println!(
        "{:>7} {:>5} {:>12} {:>10} {:>12} {:>12} {:>10} {:>11} {:>13}",
        "N", "reps", "copy file/s", "(median)", "unlink f/s", "round msg/s", "(median)", "round/copy", "peak RSS MiB"
    );
    for r in &rows {
        println!(
            "{:>7} {:>5} {:>12.0} {:>10.0} {:>12.0} {:>12.0} {:>10.0} {:>11.3} {:>13.1}",
            r.n,
            r.reps.len(),
            r.copy_best(),
            r.copy_median(),
            r.unlink_best(),
            r.round_best(),
            r.round_median(),
            r.round_best() / r.copy_best(),
            r.rss_mib()
        );
    }
    println!("(rates: best repetition, median beside it; unlink f/s: removing the copies one by one after a sync;");
    println!(" round/copy: best round msg/s over best copy files/s;");
    println!(" round = the child's wall clock from spawn to exit; peak RSS = the highest of the repetitions)");
    println!();
    let big = rows.last().expect("at least one size");
    let small = &rows[0];
    // Judged on the best repetition: the machine may be shared, and other processes' CPU
    // and fsync load only ever slow a round down. The median is printed beside it.
    let slowest = rows.iter().map(Row::round_best).fold(f64::INFINITY, f64::min);
    let slowest_median = rows.iter().map(Row::round_median).fold(f64::INFINITY, f64::min);
    println!(
        "target: >= {RATE_TARGET:.0} msg/s: {} (slowest size: best {slowest:.0} msg/s, median {slowest_median:.0} msg/s)",
        if slowest >= RATE_TARGET { "met" } else { "NOT met" }
    );
    let rss_under = rows.iter().all(|r| r.rss_mib() < RSS_TARGET_MIB);
    let flat = big.rss_mib() <= small.rss_mib() * RSS_FLAT_FACTOR;
    println!(
        "RSS < {RSS_TARGET_MIB:.0} MiB and flat ({} vs {}): {} (peaks {:.1} and {:.1} MiB; flat = at most {:.0}% more)",
        small.n,
        big.n,
        if rss_under && flat { "met" } else { "NOT met" },
        small.rss_mib(),
        big.rss_mib(),
        (RSS_FLAT_FACTOR - 1.0) * 100.0
    );
    if quick() {
        println!("(quick run: 300 messages are less than one intake batch of 512, so the flatness check is weak)");
    }
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("total bench time {:.1} s; loadavg at the end: {load}", t_start.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
}
