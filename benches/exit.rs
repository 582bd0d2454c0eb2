//! Exit hygiene costs (issue 11): what a hostile sender can make an exit spend.
//!
//! 1. `exit::prepare` (header, recipients, footer) on a plain original and on crafted ones
//!    of the same size (thousands of distinct recipients within the header bound, a 70-dash
//!    boundary with a body of near-delimiter lines, both at once), at 256 KiB, 1 MiB and
//!    2 MiB: time must grow linearly with size (an original waiting at the exit is prepared
//!    every round). The crafted header costs a fixed few milliseconds (its bound).
//! 2. A plain and a crafted 1 MiB original through a whole network of five real nodes
//!    (`mixtasyd --round` on each, `maildir:` transport), created in process: the time from
//!    injection to delivery. The crafted/plain ratio must stay under 2 (asserted).
//! 3. One `mixtasyd --round` (the real binary) over a Maildir holding 3000 forged
//!    `destination-block` requests (1500 naming one victim, 1500 naming 1500 addresses),
//!    then the next round: the per-round cost of a request flood. Asserted: at most the
//!    daily cap of confirmations is sent.
//!
//! Run with `cargo bench --bench exit` (release profile).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mixtasy::batch::stamp::Stamp;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::modes::Modes;
use mixtasy::node::exit::{self, Policy};
use mixtasy::node::home::NodeHome;
use mixtasy::sender::create::{self, Options};

const MIXTASYD: &str = env!("CARGO_BIN_EXE_mixtasyd");
/// The target: a crafted original costs at most twice a plain one of its size.
const RATIO_TARGET: f64 = 2.0;

fn plain(size: usize) -> Vec<u8> {
    let mut m = b"To: bob@rcpt.test\nSubject: plain\n\n".to_vec();
    let mut i = 0;
    while m.len() < size {
        m.extend_from_slice(format!("plain line {i} of an ordinary mail, nothing special in it\n").as_bytes());
        i += 1;
    }
    m.truncate(size);
    m
}

/// `recipients` distinct addresses in To (folded), and, if `dashes`, a multipart body whose
/// boundary is 70 dashes and whose lines almost are its closing delimiter.
fn crafted(size: usize, recipients: usize, dashes: bool) -> Vec<u8> {
    let to: Vec<String> = (0..recipients.max(1)).map(|i| format!("r{i}@rcpt.test")).collect();
    let boundary = "-".repeat(70);
    let mut m = format!("To: {}\nSubject: crafted\n", to.join(",\n ")).into_bytes();
    if dashes {
        m.extend_from_slice(
            format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n--{boundary}\n\n")
                .as_bytes(),
        );
        let near = format!("--{boundary}-\n");
        while m.len() + near.len() + boundary.len() + 5 < size {
            m.extend_from_slice(near.as_bytes());
        }
        m.extend_from_slice(format!("--{boundary}--\n").as_bytes());
    } else {
        m.extend_from_slice(b"\n");
        let filler = plain(size.saturating_sub(m.len()) + 40);
        m.extend_from_slice(&filler[filler.windows(2).position(|w| w == b"\n\n").unwrap() + 2..]);
        m.truncate(size);
    }
    m
}

/// Best of `reps` timings of `exit::prepare`.
fn time_prepare(original: &[u8], reps: usize) -> Duration {
    let addr = MixAddress::for_fqdn("exit.test").unwrap();
    let policy = Policy {
        address: &addr,
        modes: Modes::parse("middleman,exitpublic").unwrap(),
        local_domains: &[],
        max_recipients: 5,
        operator: "postmaster@exit.test",
        from: "nobody@exit.test",
    };
    let stamp = Stamp::new(&addr, SystemTime::now(), &mut rand::rng());
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            let d = exit::prepare(original, &policy, &stamp).expect("deliverable");
            let e = t.elapsed();
            assert!(!d.recipients.is_empty() && d.recipients.len() <= 5);
            e
        })
        .min()
        .unwrap()
}

fn mixtasyd(home: &Path, args: &[&str]) -> String {
    let out = Command::new(MIXTASYD)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running mixtasyd");
    assert!(out.status.success(), "mixtasyd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn counter(json: &str, key: &str) -> i64 {
    let needle = format!("\"{key}\":");
    json.find(&needle).map_or(0, |i| {
        let rest = &json[i + needle.len()..];
        rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().unwrap_or(0)
    })
}

/// A node home made by the real binary, wired like the tests' lab network: it reads
/// `MAIL/mixtasy@FQDN`, delivers through `maildir:MAIL`, fires its whole pool every round,
/// makes no dummies. Returns its inbox.
fn lab_node(home: &Path, mail: &Path, fqdn: &str) -> std::path::PathBuf {
    mixtasyd(home, &["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", "middleman,exitpublic"]);
    let inbox = mail.join(format!("mixtasy@{fqdn}"));
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(inbox.join(sub)).unwrap();
    }
    let cfg = home.join("mixtasyd.toml");
    let text = fs::read_to_string(&cfg).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.split(" = ").next() {
            Some("maildir") => format!("maildir = {:?}", inbox.display().to_string()),
            Some("transport") => format!("transport = \"maildir:{}\"", mail.display()),
            Some("min_pool") => "min_pool = 0".to_string(),
            Some("threshold") => "threshold = 1".to_string(),
            Some("rate") => "rate = 1.0".to_string(),
            Some("dummy_time_p") => "dummy_time_p = 0.0".to_string(),
            Some("dummy_flush_p") => "dummy_flush_p = 0.0".to_string(),
            Some("dummy_starved_p") => "dummy_starved_p = 0.0".to_string(),
            Some("dummy_arrival_p") => "dummy_arrival_p = 0.0".to_string(),
            _ => l.to_string(),
        })
        .collect();
    fs::write(&cfg, text.join("\n") + "\n").unwrap();
    inbox
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Plain and crafted 1 MiB originals through five nodes, `reps` times each, alternating:
/// seconds from injection to delivery, best of each; returns the crafted/plain ratio.
fn network(reps: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mail = dir.path().join("mail");
    let now = SystemTime::now();
    let mut homes = Vec::new();
    let mut mixes: Vec<Mix> = Vec::new();
    for i in 1..=5 {
        let home = dir.path().join(format!("n{i}"));
        lab_node(&home, &mail, &format!("mix{i}.test"));
        let cert = NodeHome::new(home.clone()).cert().expect("node cert").strip_secret_key_material();
        mixes.push(directory::check(&cert, now).expect("the node's key passes D8"));
        homes.push(home);
    }
    let mut rng = rand::rng();
    let mut through = |original: &[u8], inbox: &Path, want: usize| -> f64 {
        for (i, w) in create::create(original, &mixes, &Options::default(), now, &mut rng)
            .expect("create")
            .into_iter()
            .enumerate()
        {
            fs::write(mail.join(w.to.as_str()).join("new").join(format!("w.{}.{i}", rand::random::<u64>())), &w.mail)
                .unwrap();
        }
        let t = Instant::now();
        for _ in 0..20 {
            for h in &homes {
                mixtasyd(h, &["--round"]);
            }
            if count(inbox) >= want {
                return t.elapsed().as_secs_f64();
            }
        }
        panic!("not delivered after 20 rounds of every node");
    };
    let (plain_o, crafted_o) = (plain(1 << 20), crafted(1 << 20, 4000, true));
    let (mut p, mut c) = (Vec::new(), Vec::new());
    for r in 1..=reps {
        p.push(through(&plain_o, &mail.join("bob@rcpt.test").join("new"), r));
        c.push(through(&crafted_o, &mail.join("r0@rcpt.test").join("new"), r));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let ratio = best(&c) / best(&p);
    println!("whole network, 1 MiB, 5 nodes (s, best of {reps}): plain {:.2} {p:.2?}, crafted {:.2} {c:.2?}; ratio {ratio:.2}", best(&p), best(&c));
    ratio
}

/// One round over 3000 forged block requests, and the round after it.
fn block_flood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("node");
    let new = lab_node(&home, &dir.path().join("mail"), "exit.test").join("new");
    for i in 0..3000 {
        let from = if i < 1500 { "victim@rcpt.test".to_string() } else { format!("victim{i}@rcpt.test") };
        let mail = format!(
            "Return-Path: <{from}>\nReceived: from forger.example\nFrom: {from}\nTo: mixtasy@exit.test\nSubject: destination-block\n\
             Date: Mon, 2 Mar 2026 10:00:00 +0000\nMessage-ID: <{i}@forger.example>\nX-Ad: buy now\n\nblock\n"
        );
        fs::write(new.join(format!("req.{i:05}")), mail).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        mixtasyd(&home, &["--round"]);
        times.push(t.elapsed().as_secs_f64());
    }
    let st = mixtasyd(&home, &["status", "--json"]);
    let sent = counter(&st, "block.notice-sent");
    println!(
        "3000 forged block requests: round {:.3} s, next rounds {:.3} s, {:.3} s; confirmations sent {sent}, waiting for one {}, over the cap {}, exit queue {}",
        times[0],
        times[1],
        times[2],
        counter(&st, "block.request-pending"),
        counter(&st, "block.request-over-cap"),
        counter(&st, "exit_queue")
    );
    assert!(sent <= 50, "more confirmations than the daily cap: {sent}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let build = if cfg!(debug_assertions) { "DEBUG build (figures are meaningless)" } else { "release build" };
    let load = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("environment: {build}; loadavg: {load}");
    println!("exit::prepare, best of 5 (ms): size, plain, 4000 recipients, dash boundary, both; worst/plain");
    for size in [256 << 10, 1 << 20, 2 << 20] {
        let p = time_prepare(&plain(size), 5).as_secs_f64() * 1e3;
        let kinds = [crafted(size, 4000, false), crafted(size, 1, true), crafted(size, 4000, true)];
        let times: Vec<f64> = kinds.iter().map(|k| time_prepare(k, 5).as_secs_f64() * 1e3).collect();
        let ratio = times.iter().copied().fold(0f64, f64::max) / p;
        println!("{:>5} KiB  {p:8.2}  {:8.2}  {:8.2}  {:8.2}  {ratio:.2}", size >> 10, times[0], times[1], times[2]);
    }
    let ratio = network(3);
    assert!(
        ratio <= RATIO_TARGET,
        "a crafted 1 MiB original costs {ratio:.2}x a plain one through the network (target {RATIO_TARGET}x)"
    );
    block_flood();
}
