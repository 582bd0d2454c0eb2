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
    let out = simulate(&t.path().join("no-home"), &["--arrivals", "10", "--rounds", "3000", "--seed", "7", "--sweep", "threshold=0..4/4", "--plot", svg.to_str().unwrap(), "--blending"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in ["this node 25/5/65%/15m", "Mixmaster 45/0/65%/15m", "Mixminion minimum 5/0/60%/30m"] {
        assert!(text.contains(row), "no row {row}:\n{text}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg ") && picture.trim_end().ends_with("</svg>"));
    assert_eq!(picture.matches("<circle").count(), 5 * 3, "five thresholds in three panels");
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("this node 7/1/50%/15m"), "{}", String::from_utf8_lossy(&out.stdout));
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
    let columns: Vec<String> = db.prepare("SELECT name FROM pragma_table_info('rounds')").unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(columns, ["seq", "day", "arrivals", "departures", "pool", "dummies"]);
    let rows: Vec<(i64, i64, i64, i64)> = db.prepare("SELECT day, arrivals, departures, pool FROM rounds ORDER BY seq").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(|r| r.unwrap()).collect();
    let day = net.now as i64 / 86400;
    assert_eq!(rows, [(day, 10, 10, 10), (day, 0, 0, 0)], "lab nodes fire the whole pool");
    let st = net.status("mix1.test");
    assert_eq!(st.get("intake.forwarded") + st.get("intake.final"), 10);
    assert!(st.0.contains("\"expected\":{\"rounds\":2,\"arrivals_per_round\":5.000,"), "{}", st.0);
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    let text = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(text.contains("expected     entropy "), "{text}");

    // The Prometheus file: as promtool reads it, readable by the exporter, counts only.
    let prom = home.join("metrics/mixtasyd.prom");
    let body = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777, 0o644);
    assert!(body.contains("mixtasyd_pool_sent_total 10\n") && body.contains("mixtasyd_expected_entropy "), "{body}");
    for linking in ["@", "rcpt", "mix2", "mix3", "bob"] {
        assert!(!body.contains(linking), "the metrics file names {linking}:\n{body}");
    }
    let mut promtool = std::process::Command::new("promtool");
    promtool.args(["check", "metrics"]);
    let checked = run(promtool, body.as_bytes());
    assert!(checked.status.success(), "promtool (scripts/install-deps --test installs it): {}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
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
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("metrics_file"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(net.status("mix1.test").get("pool.sent"), 11, "the round's mail left before the metrics file");
}
