//! Delivery time through a small network of default nodes (issue 13: "the guide gives
//! honest delivery times for a small network").
//!
//! A lab network of N real `mixtasyd` nodes (3 and 5), every one `middleman,exitpublic`,
//! wired like the tests' `Net::add_lab_node` (own Maildir, `maildir:` transport) and then
//! given back the DEFAULT pool and dummy settings (min_pool, threshold, rate, dummy_time_p,
//! dummy_flush_p, dummy_arrival_p, dummy_starved_p, read from `config::SETTINGS`). Time is simulated with `--now`, nothing
//! sleeps: every 15 minutes each node runs `mixtasyd --round` once, at a random offset in
//! the timer's `RandomizedDelaySec` (2 min), in time order. Every 6 hours the nodes import
//! each other's current keys, as `discovery_interval` does from a keyserver.
//!
//! Two batches of user mail, each message made by `mixtasy create --hops 4` (the real
//! binary, with the sender's directory refreshed just before) and dropped into the first
//! mix's Maildir:
//!  - cold: 4 at the start, into empty pools (an operator's first test on a new network);
//!  - warm: one every 6 hours from 24 h on (24, 30, 36, 42 h), in a network that has run on
//!    dummies alone: spread over a day, so over every age of the subkeys they are sealed to
//!    (a new one each day, valid two).
//!
//! A message's delivery time is from its injection to the first round after which its
//! recipient's Maildir holds it (so a resolution of one round, 15 min). A message still
//! undelivered 3 days after it was sent is reported as undelivered: by then every subkey it
//! was encrypted to has expired (subkey_validity 2d) and its secret is destroyed.
//!
//! Run with `cargo bench --bench latency` (release profile) or `scripts/bench`: 4 runs per
//! network size (about 25 s to 65 s each on two busy cores, most of it the dummies); `MIXTASY_BENCH_RUNS=N` for N.
//! The homes live in /dev/shm when it exists (TMPDIR wins if set): wall time only, the
//! simulated times do not depend on it.

#[path = "../tests/util.rs"]
mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::Rng;

use util::Net;

/// The timer's interval (units/*/mixtasyd.timer `OnCalendar=*:0/15`).
const TICK: u64 = 15 * 60;
/// The timer's `RandomizedDelaySec=2min`.
const JITTER: u64 = 120;
/// How often the nodes refresh their directories (`discovery_interval` default).
const DISCOVERY: u64 = 6 * 3600;
/// Dummies only before the first warm message.
const WARM_UP: u64 = 24 * 3600;
/// Between two warm messages.
const WARM_EVERY: u64 = 6 * 3600;
/// A message older than this is given up: every subkey it was encrypted to has expired.
const GIVE_UP: u64 = 3 * 24 * 3600;
/// Messages per batch.
const PER_BATCH: u64 = 4;
/// The pool and dummy settings restored to their defaults after `add_lab_node`.
const DEFAULTED: [&str; 7] =
    ["min_pool", "threshold", "rate", "dummy_time_p", "dummy_flush_p", "dummy_arrival_p", "dummy_starved_p"];

fn runs() -> usize {
    std::env::var("MIXTASY_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

fn default_of(name: &str) -> &'static str {
    mixtasy::node::config::SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.default)
        .unwrap_or_else(|| panic!("setting {name} has no default"))
}

/// One message in flight: its recipient (unique), batch and send time.
struct Sent {
    rcpt: String,
    batch: &'static str,
    at: u64,
    delivered: Option<u64>,
}

/// The outcome of one simulated network.
struct Run {
    nodes: usize,
    sent: Vec<Sent>,
    rounds: usize,
    wall: f64,
    /// Layers (dummies' included) dropped because their subkey had expired.
    expired: i64,
}

/// A network of `n` default nodes, started at `start`.
fn network(n: usize, start: u64) -> Net {
    let mut net = Net::new(start);
    for i in 1..=n {
        let fqdn = format!("mix{i}.test");
        net.add_lab_node(&fqdn, "middleman,exitpublic");
        for name in DEFAULTED {
            net.configure(&fqdn, name, default_of(name));
        }
    }
    net.introduce_nodes();
    net
}

/// Sends one original with `mixtasy create --hops 4` at `net.now`.
fn send(net: &Net, batch: &'static str, sent: &mut Vec<Sent>) {
    net.publish_all_to_client();
    let k = sent.len();
    let rcpt = format!("r{k}@rcpt.test");
    let original = format!("To: {rcpt}\nSubject: latency {batch} {k}\n\nhow long does this take?\n");
    for mail in net.create(original.as_bytes(), &["--hops", "4"]) {
        net.inject(&mail);
    }
    sent.push(Sent { rcpt, batch, at: net.now, delivered: None });
}

fn simulate(n: usize) -> Run {
    let wall = Instant::now();
    let start = util::VECTOR_NOW;
    let mut net = network(n, start);
    let mut rng = rand::rng();
    let mut sent = Vec::new();
    let mut rounds = 0;
    // (time, batch) of every message, in time order.
    let mut plan: Vec<(u64, &'static str)> = (0..PER_BATCH).map(|_| (start, "cold")).collect();
    plan.extend((0..PER_BATCH).map(|i| (start + WARM_UP + i * WARM_EVERY, "warm")));
    let mut plan = plan.into_iter().peekable();
    let mut tick = start;
    loop {
        while let Some((_, batch)) = plan.next_if(|(at, _)| *at <= tick) {
            net.now = tick;
            send(&net, batch, &mut sent);
        }
        if tick > start && (tick - start).is_multiple_of(DISCOVERY) {
            net.now = tick;
            net.introduce_nodes();
        }
        // Each node's round at its own jitter, in time order.
        let mut order: Vec<(u64, String)> =
            net.nodes.iter().map(|f| (rng.random_range(0..JITTER), f.clone())).collect();
        order.shuffle(&mut rng);
        order.sort_by_key(|(off, _)| *off);
        for (off, fqdn) in order {
            net.now = tick + off;
            net.round(&fqdn);
            rounds += 1;
            for s in sent.iter_mut().filter(|s| s.delivered.is_none()) {
                if !net.delivered(&s.rcpt).is_empty() {
                    s.delivered = Some(net.now - s.at);
                }
            }
        }
        tick += TICK;
        let pending = sent.iter().any(|s| s.delivered.is_none() && tick - s.at <= GIVE_UP);
        if plan.peek().is_none() && !pending {
            break;
        }
    }
    let expired = net.nodes.iter().map(|f| net.status(f).get("drop.expired-key")).sum();
    Run { nodes: n, sent, rounds, wall: wall.elapsed().as_secs_f64(), expired }
}

fn hours(secs: u64) -> f64 {
    secs as f64 / 3600.0
}

/// Median of sorted values (mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn summary(label: &str, delays: &mut [f64], sent: usize) {
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if delays.is_empty() {
        println!("{label:<18} delivered 0/{sent}");
        return;
    }
    println!(
        "{label:<18} delivered {:>2}/{sent:<2}  min {:>5.1} h  median {:>5.1} h  max {:>5.1} h",
        delays.len(),
        delays[0],
        median(delays),
        delays[delays.len() - 1]
    );
}

fn main() {
    let t_start = Instant::now();
    let runs = runs();
    // Every round fsyncs its spool and state: on tmpfs that costs nothing.
    if std::env::var_os("TMPDIR").is_none() && std::path::Path::new("/dev/shm").is_dir() {
        std::env::set_var("TMPDIR", "/dev/shm");
    }
    let build = if cfg!(debug_assertions) { "DEBUG build" } else { "release build" };
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("Mixtasy latency benchmark: default pool and dummies, rounds every 15 simulated minutes, 4-hop mail");
    println!(
        "settings: {}; {build}; loadavg {load}",
        DEFAULTED.iter().map(|n| format!("{n} {}", default_of(n))).collect::<Vec<_>>().join(", ")
    );
    println!(
        "per run: {PER_BATCH} messages cold (at the start), {PER_BATCH} warm (one every {} h from {} h on); a message is given up {} h after it was sent",
        WARM_EVERY / 3600,
        WARM_UP / 3600,
        GIVE_UP / 3600
    );
    let mut all: BTreeMap<(usize, &'static str), (Vec<f64>, usize)> = BTreeMap::new();
    for n in [3, 5] {
        for r in 1..=runs {
            let run = simulate(n);
            let per: Vec<String> = run
                .sent
                .iter()
                .map(|s| {
                    format!("{}:{}", &s.batch[..1], s.delivered.map_or("-".to_string(), |d| format!("{:.1}", hours(d))))
                })
                .collect();
            println!(
                "{} nodes, run {r}: {} rounds in {:.1} s; hours per message: {}; layers dropped for an expired subkey: {}",
                run.nodes,
                run.rounds,
                run.wall,
                per.join(" "),
                run.expired
            );
            let _ = std::io::stdout().flush();
            for s in &run.sent {
                let e = all.entry((n, s.batch)).or_default();
                e.1 += 1;
                if let Some(d) = s.delivered {
                    e.0.push(hours(d));
                }
            }
        }
    }
    println!();
    for ((n, batch), (delays, sent)) in all.iter_mut() {
        summary(&format!("{n} nodes, {batch}"), delays, *sent);
    }
    println!(
        "(delivery time: injection to the first round after which the recipient's Maildir holds it; resolution 15 min)"
    );
    println!("total bench time {:.1} s", t_start.elapsed().as_secs_f64());
}
