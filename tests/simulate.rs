//! `mixtasyd simulate` and the live figures through the real binary: the comparison table,
//! a sweep's SVG, the blending attack, bad input; each round's counts, `status`'s expected
//! entropy and delay, and `metrics_file` checked by Prometheus' own `promtool`.

use std::os::unix::fs::PermissionsExt;

use crate::round::lab;
use crate::util::*;

fn simulate(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = mixtasyd();
    c.arg("--home").arg(home).arg("simulate").args(args);
    run(c, b"")
}

#[test]
fn simulate_compares_sweeps_and_attacks() {
    let t = tempfile::tempdir().unwrap();
    let svg = t.path().join("threshold.svg");
    let out = simulate(
        &t.path().join("no-home"),
        &[
            "--arrivals",
            "10",
            "--rounds",
            "3000",
            "--seed",
            "7",
            "--sweep",
            "threshold=0..4/4",
            "--plot",
            svg.to_str().unwrap(),
            "--blending",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in ["this node 47/0/100%/15m", "Mixmaster 45/0/65%/15m", "Mixminion minimum 5/0/60%/30m"] {
        assert!(text.contains(row), "no row {row}:\n{text}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg ") && picture.trim_end().ends_with("</svg>"));
    assert_eq!(picture.matches("<circle").count(), 5 * 4, "five thresholds in four panels");
    // The strongest blending attacker isolates the target of a node without dummies.
    let bare = text.lines().find(|l| l.starts_with("this node without dummies")).expect("blending row");
    assert!(bare.trim_end().ends_with("100%"), "{bare}");

    // The same seed, the same figures.
    let again = simulate(&t.path().join("no-home"), &["--arrivals", "10", "--rounds", "3000", "--seed", "7"]);
    let first_table: Vec<&str> = text.lines().take(5).collect();
    assert_eq!(String::from_utf8_lossy(&again.stdout).lines().take(5).collect::<Vec<_>>(), first_table);
}

#[test]
fn simulate_uses_the_homes_settings_and_refuses_bad_input() {
    let net = lab(1);
    net.configure("mix1.test", "min_pool", "7");
    let home = net.home("mix1.test");
    let out = simulate(&home, &["--rounds", "500", "--set", "rate=0.5"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("this node 7/1/50%/15m"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let trace = net.dir.path().join("trace");
    std::fs::write(&trace, "4\n# quiet night\n0\nlots\n").unwrap();
    for (args, says) in [
        (vec!["--sweep", "pool=1..3"], "unknown parameter `pool`"),
        (vec!["--sweep", "min_pool=9..1"], "must run upwards"),
        (vec!["--set", "rate=2"], "rate: `2` must be a number from 0 to 1"),
        (vec!["--set", "dummy_time_p=1"], "below 1"),
        (vec!["--trace", trace.to_str().unwrap()], "trace: 4: `lots` is not a count of messages"),
        (vec!["--recorded"], "recorded no rounds yet"),
    ] {
        let out = simulate(&home, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says) && err.lines().count() == 1, "{args:?}: {err}");
    }
}

#[test]
fn rounds_record_counts_and_write_the_prometheus_file() {
    let mut net = lab(3);
    net.configure("mix1.test", "metrics_file", "\"metrics/mixtasyd.prom\"");
    net.nodes.retain(|n| n == "mix1.test");
    let home = net.home("mix1.test");
    std::fs::create_dir(home.join("metrics")).unwrap();
    for i in 0..10 {
        let o = format!("To: bob@rcpt.test\nSubject: m{i}\n\nbody {i}\n");
        let w = net.create(o.as_bytes(), &["--first-mix", "mix1.test"]);
        net.inject(&w[0]);
    }
    net.round("mix1.test");
    net.round("mix1.test");

    // The counts, by day only; the arrivals are what the counters say entered the pool.
    let db = rusqlite::Connection::open(home.join("state.sqlite")).unwrap();
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('rounds')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(columns, ["seq", "day", "arrivals", "departures", "pool", "dummies"]);
    let rows: Vec<(i64, i64, i64, i64)> = db
        .prepare("SELECT day, arrivals, departures, pool FROM rounds ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let day = net.now as i64 / 86400;
    assert_eq!(rows, [(day, 10, 10, 10), (day, 0, 0, 0)], "lab nodes fire the whole pool");
    let st = net.status("mix1.test");
    assert_eq!(st.get("intake.forwarded") + st.get("intake.final"), 10);
    assert!(st.0.contains("\"expected\":{\"rounds\":2,\"arrivals_per_round\":5.000,"), "{}", st.0);
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    let text = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(text.contains("expected     entropy ") && text.contains(" to an outside observer), "), "{text}");

    // The Prometheus file: as promtool reads it, readable by the exporter, counts only.
    let prom = home.join("metrics/mixtasyd.prom");
    let body = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777, 0o644);
    assert!(
        body.contains("mixtasyd_pool_sent_total 10\n")
            && body.contains("mixtasyd_expected_entropy ")
            && body.contains("mixtasyd_expected_entropy_outside "),
        "{body}"
    );
    for linking in ["@", "rcpt", "mix2", "mix3", "bob"] {
        assert!(!body.contains(linking), "the metrics file names {linking}:\n{body}");
    }
    let mut promtool = std::process::Command::new("promtool");
    promtool.args(["check", "metrics"]);
    let checked = run(promtool, body.as_bytes());
    assert!(
        checked.status.success(),
        "promtool (scripts/install-deps --test installs it): {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let leftovers: Vec<_> = std::fs::read_dir(home.join("metrics")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left beside it: {leftovers:?}");

    // A metrics_file that cannot be written fails the round with a clear line, after the
    // round's mail has gone and been recorded (nothing lost).
    net.configure("mix1.test", "metrics_file", "\"no-such-dir/m.prom\"");
    let w = net.create(b"To: bob@rcpt.test\n\nlate\n", &["--first-mix", "mix1.test"]);
    net.inject(&w[0]);
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let out = run(c, b"");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("metrics_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.status("mix1.test").get("pool.sent"), 11, "the round's mail left before the metrics file");
}

/// The largest gap between the empirical distribution functions of `a` and `b`: the
/// two-sample Kolmogorov–Smirnov statistic D.
fn ks_statistic(a: &[u64], b: &[u64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The critical D of the two-sample KS test at significance 0.001 (c(α) = √(−ln(α/2)/2)
/// = 1.949). With ties (delays are whole rounds) the test is conservative: a true
/// agreement is refused at most 0.1 % of the time.
fn ks_critical(n: usize, m: usize) -> f64 {
    1.949 * ((n + m) as f64 / (n * m) as f64).sqrt()
}

/// Issue 16: the simulator's delay distribution against the delays of a real network. Five
/// lab nodes (maildir transport, `--now`), each with the same pool (min_pool 4, threshold
/// 0, rate 0.5, no dummies), each given exactly 3 fresh one-hop messages a round for 60
/// rounds (each node is their exit: the pool wait is the delivery time in rounds). The
/// delays of the messages sent in rounds 10 to 39 (the pools have settled by then; later
/// ones keep the pools at their steady state) are compared with `mixtasyd simulate`'s
/// model of the same node under `Traffic::Trace([3])`, seeded, by a two-sample KS test at
/// 0.001. The same test must refuse the model shifted by one round (an off-by-one in the
/// intake would look like that), so that it can fail.
#[test]
fn simulated_delays_fit_a_real_network() {
    use mixtasy::node::simulate::{self as sim, Setting, Traffic};
    use rand::SeedableRng;
    const PER_ROUND: u64 = 3;
    let mut net = lab(5);
    for n in &net.nodes {
        for (k, v) in [("min_pool", "4"), ("threshold", "0"), ("rate", "0.5")] {
            net.configure(n, k, v);
        }
    }
    let mixes: Vec<_> = net.nodes.iter().map(|n| net.mix(n)).collect();
    let mut sent: Vec<(String, usize, Option<usize>)> = Vec::new();
    let (measured, inject_until) = (10..40, 60);
    let mut r = 0;
    while r < inject_until || sent.iter().any(|(_, at, d)| measured.contains(at) && d.is_none()) {
        assert!(r < 400, "measured messages still pooled after 400 rounds");
        if r < inject_until {
            for mix in &mixes {
                for _ in 0..PER_ROUND {
                    let rcpt = format!("r{}@rcpt.test", sent.len());
                    let original = format!("To: {rcpt}\nSubject: ks\n\nhow long?\n");
                    net.inject(&net.wrap_final_over(
                        mixtasy::format::message::Kind::Singlepart,
                        original.as_bytes(),
                        std::slice::from_ref(mix),
                    ));
                    sent.push((rcpt, r, None));
                }
            }
        }
        for n in &net.nodes {
            net.round(n);
        }
        for (rcpt, at, d) in sent.iter_mut().filter(|s| s.2.is_none()) {
            if net.mailbox(rcpt).join("new").read_dir().is_ok_and(|mut d| d.next().is_some()) {
                *d = Some(r - *at);
            }
        }
        r += 1;
        net.now += 60;
    }
    let real: Vec<u64> = sent.iter().filter(|s| measured.contains(&s.1)).map(|s| s.2.unwrap() as u64).collect();
    assert_eq!(real.len(), 5 * 30 * PER_ROUND as usize);

    let mut s = Setting::mixminion_minimum();
    s.pool = mixtasy::node::pool::Params { min_pool: 4, threshold: 0, rate: 0.5 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let report = sim::run(&s, &Traffic::Trace(vec![PER_ROUND]), 200, 2000, &mut rng);
    let model: Vec<u64> = report.delays.iter().map(|d| (d / s.interval as f64).floor() as u64).collect();
    let critical = ks_critical(real.len(), model.len());
    let d = ks_statistic(&real, &model);
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    eprintln!(
        "KS: D = {d:.4}, critical {critical:.4} at 0.001; mean wait real {:.3} model {:.3} rounds ({} and {} messages)",
        mean(&real),
        mean(&model),
        real.len(),
        model.len()
    );
    assert!(d < critical, "the simulator's delays do not fit the network's: D = {d:.4} >= {critical:.4}");
    let shifted: Vec<u64> = model.iter().map(|x| x + 1).collect();
    let d_shifted = ks_statistic(&real, &shifted);
    assert!(d_shifted > critical, "the test cannot tell a one-round shift: D = {d_shifted:.4}");
}
