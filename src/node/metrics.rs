//! Live figures of a running node: each round's coarse counts (the `rounds` table of
//! `state`, kept 7 days), the entropy and delay they lead to (the simulator fed with them),
//! and the Prometheus text file for node_exporter's textfile collector (`metrics_file`).
//!
//! Privacy: a row holds the day and four counts of one round (what entered the pool, what
//! it drew, its size when it fired, the dummies made), all of which an observer of the
//! node's mail sees or can bound anyway; nothing names, sizes or orders a message.

use std::fmt::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rand::SeedableRng;

use crate::batch::state::{self, State};
use crate::node::config::Config;
use crate::node::home::NodeHome;
use crate::node::simulate::{self, Setting, Traffic};

/// How long rows are kept, and how far back the expected figures look.
pub const KEEP_DAYS: i64 = 7;

/// The timer's interval when the node has not yet measured one (`last_gap`).
const DEFAULT_INTERVAL: u64 = 900;

/// One round's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundCounts {
    /// Messages that entered the pool (forwarded mail and finals).
    pub arrivals: u64,
    /// Entries the pool drew (time-triggered dummies included).
    pub departures: u64,
    /// Pool size when it fired.
    pub pool: u64,
    /// Dummies made (time- and flush-triggered).
    pub dummies: u64,
}

/// Records a round and forgets rounds older than `KEEP_DAYS`.
pub fn record(state: &mut State, now: SystemTime, c: RoundCounts) -> Result<()> {
    let day = state::unix(now).div_euclid(86400);
    let tx = state.transaction()?;
    tx.execute(
        "INSERT INTO rounds (day, arrivals, departures, pool, dummies) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![day, c.arrivals as i64, c.departures as i64, c.pool as i64, c.dummies as i64],
    )?;
    tx.execute("DELETE FROM rounds WHERE day < ?1", [day - KEEP_DAYS])?;
    tx.commit().context("recording the round's counts")
}

/// The recorded rounds, oldest first.
pub fn rounds(state: &State) -> Result<Vec<RoundCounts>> {
    let mut st = state.conn().prepare("SELECT arrivals, departures, pool, dummies FROM rounds ORDER BY seq")?;
    let rows = st.query_map([], |r| {
        Ok(RoundCounts {
            arrivals: r.get::<_, i64>(0)? as u64,
            departures: r.get::<_, i64>(1)? as u64,
            pool: r.get::<_, i64>(2)? as u64,
            dummies: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The node's recorded arrivals as a trace, for `simulate --recorded`.
pub fn recorded_traffic(home: &NodeHome) -> Result<Traffic> {
    let state = State::open(&home.state_path())?;
    let counts: Vec<u64> = rounds(&state)?.into_iter().map(|r| r.arrivals).collect();
    anyhow::ensure!(
        !counts.is_empty(),
        "this node has recorded no rounds yet (it records each round's counts for {KEEP_DAYS} days)"
    );
    Ok(Traffic::Trace(counts))
}

/// What the last days' rates lead to with the node's settings.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Rounds the figures come from.
    pub rounds: usize,
    /// Mean arrivals a round.
    pub arrivals: f64,
    pub report: simulate::Report,
}

/// The simulator fed with the recorded arrivals (a fixed seed: `status` says the same twice);
/// `None` before the first recorded round.
pub fn expected(state: &State, config: &Config) -> Result<Option<Expected>> {
    let rows = rounds(state)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let interval = state.meta("last_gap")?.filter(|g| *g > 0).map_or(DEFAULT_INTERVAL, |g| g as u64);
    let traffic = Traffic::Trace(rows.iter().map(|r| r.arrivals).collect());
    let setting = Setting::from_config("this node", config, interval);
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let report = simulate::run(&setting, &traffic, simulate::warmup(5000), 5000, &mut rng);
    Ok(Some(Expected { rounds: rows.len(), arrivals: traffic.mean(), report }))
}

/// The Prometheus text exposition of the node: every counter (as `mixtasyd_<name>_total`),
/// the table sizes, the last round's time and the expected figures.
pub fn prometheus(state: &State, expected: Option<&Expected>) -> Result<String> {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: f64| {
        let _ = write!(out, "# HELP mixtasyd_{name} {help}\n# TYPE mixtasyd_{name} gauge\nmixtasyd_{name} {v}\n");
    };
    gauge("pool_messages", "Messages in the pool.", state.count("pool")? as f64);
    gauge("exit_queue_messages", "Entries in the exit queue.", state.count("exitq")? as f64);
    gauge("held_parts", "Multipart parts held for their set.", state.count("parts")? as f64);
    gauge("replay_entries", "Hashes in the replay cache.", state.count("replay")? as f64);
    if let Some(t) = state.meta("last_round")? {
        gauge("last_round_timestamp_seconds", "When the last round ran (unix time).", t as f64);
    }
    if let Some(e) = expected {
        gauge("arrivals_per_round", "Mean messages entering the pool a round over the recorded rounds.", e.arrivals);
        gauge(
            "expected_entropy",
            "Expected anonymity-set entropy (in bits) of a leaving message at the recorded rates, to an observer who knows the dummies.",
            e.report.entropy,
        );
        gauge(
            "expected_entropy_outside",
            "The same to an outside observer, who cannot tell a dummy from mail.",
            e.report.entropy_outside,
        );
        gauge("expected_delay_seconds", "Expected mean delay of a message at the recorded rates.", e.report.delay_mean);
        gauge(
            "expected_delay_p95_seconds",
            "Expected 95th-percentile delay at the recorded rates.",
            e.report.delay_p95,
        );
    }
    for (name, value) in state.counters()? {
        let metric: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let _ = write!(out, "# HELP mixtasyd_{metric}_total The counter {name} (mixtasyd(8), COUNTERS).\n# TYPE mixtasyd_{metric}_total counter\nmixtasyd_{metric}_total {value}\n");
    }
    Ok(out)
}

/// Writes `metrics_file` atomically (a scrape never sees half a file), readable by the
/// exporter's user: it holds counts only.
pub fn write_file(path: &Path, state: &State, config: &Config) -> Result<()> {
    let text = prometheus(state, expected(state, config)?.as_ref())?;
    crate::util::fsutil::write_atomic(path, text.as_bytes(), 0o644).context("metrics_file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::node::config::parse("address = \"mixtasy@a.test\"\nmodes = \"middleman\"\n").unwrap()
    }

    #[test]
    fn rounds_are_kept_a_week_in_order() {
        let mut s = State::in_memory().unwrap();
        let day0 = state::from_unix(100 * 86400);
        record(&mut s, day0, RoundCounts { arrivals: 3, departures: 0, pool: 3, dummies: 1 }).unwrap();
        for i in 1..=3u64 {
            record(
                &mut s,
                state::from_unix((100 + KEEP_DAYS) * 86400 + i as i64),
                RoundCounts { arrivals: i, ..Default::default() },
            )
            .unwrap();
        }
        assert_eq!(
            rounds(&s).unwrap().iter().map(|r| r.arrivals).collect::<Vec<_>>(),
            [3, 1, 2, 3],
            "day 100 is kept 7 days"
        );
        record(&mut s, state::from_unix((101 + KEEP_DAYS) * 86400), RoundCounts::default()).unwrap();
        assert_eq!(rounds(&s).unwrap().len(), 4, "the first day left");
    }

    /// The expected figures follow the recorded traffic: more arrivals, more entropy.
    #[test]
    fn expected_follows_the_rates() {
        let mut s = State::in_memory().unwrap();
        let c = config();
        assert!(expected(&s, &c).unwrap().is_none());
        for _ in 0..50 {
            record(&mut s, state::from_unix(86400), RoundCounts { arrivals: 2, ..Default::default() }).unwrap();
        }
        let low = expected(&s, &c).unwrap().unwrap();
        for _ in 0..450 {
            record(&mut s, state::from_unix(86400), RoundCounts { arrivals: 40, ..Default::default() }).unwrap();
        }
        let high = expected(&s, &c).unwrap().unwrap();
        assert_eq!((low.rounds, low.arrivals), (50, 2.0));
        assert!(high.report.entropy > low.report.entropy + 1.0, "{low:?} {high:?}");
        assert!(high.report.delay_mean < low.report.delay_mean);
    }

    #[test]
    fn prometheus_names() {
        let mut s = State::in_memory().unwrap();
        s.bump("drop.bad-hash", 2).unwrap();
        let text = prometheus(&s, None).unwrap();
        assert!(
            text.contains("# TYPE mixtasyd_drop_bad_hash_total counter\nmixtasyd_drop_bad_hash_total 2\n"),
            "{text}"
        );
        assert!(text.contains("mixtasyd_pool_messages 0\n") && !text.contains("expected_entropy"));
    }
}
