//! Today's figures for `status`: how much each counter rose since 00:00 UTC.
//!
//! Before the first counter write of a UTC day (the first round, or `key rotate`), every
//! counter is copied into a snapshot for that day (`snapshot`). Nothing was counted
//! between midnight and that write, so the copy holds the values at 00:00, whenever the
//! round ran; `status` subtracts it from the counters (`today`). A day with no snapshot
//! yet had no counter write, so its figures are all 0.
//!
//! ## Privacy
//! Only whole-day aggregates are kept, no time of day: the snapshot row says on which day
//! the first write happened, not when, so it adds no per-round timing that could link a
//! round's input to its output. Snapshots older than `KEEP_DAYS` days are deleted.
//!
//! ## Clock
//! `now` comes from the caller (`--now` in tests). A clock that goes back never makes a
//! figure negative: `status` then counts from the newest snapshot and says so, and the next
//! write deletes the snapshots of days still to come (taken by a clock running ahead) and
//! takes today's if it is missing (not from midnight when no earlier day's is left).

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::Result;
use rusqlite::OptionalExtension;

use crate::batch::state::{unix, State};

/// Days of snapshots kept, today's included: a week back, for a look at yesterday's.
pub const KEEP_DAYS: i64 = 8;

/// The UTC day of `t`, in days since the epoch.
pub fn day_of(t: SystemTime) -> i64 {
    unix(t).div_euclid(86400)
}

/// Takes today's snapshot unless it exists; call before a command's first counter write.
/// One transaction: a crash leaves either the whole snapshot or none.
pub fn snapshot(state: &mut State, now: SystemTime) -> Result<()> {
    let today = day_of(now);
    let tx = state.transaction()?;
    tx.execute("DELETE FROM days WHERE day > ?1", [today])?;
    let taken: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM days WHERE day = ?1)", [today], |r| r.get(0))?;
    if !taken {
        // From midnight if an earlier day has a snapshot (every write since was preceded by
        // one), or if nothing was ever counted; else counts from before daily figures began
        // (an upgrade) may be in it.
        let earlier: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM days)", [], |r| r.get(0))?;
        let counted: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM counters WHERE value != 0)", [], |r| r.get(0))?;
        tx.execute("INSERT INTO days (day, midnight) VALUES (?1, ?2)", (today, earlier || !counted))?;
        tx.execute("INSERT INTO day_counters (day, name, value) SELECT ?1, name, value FROM counters", [today])?;
        tx.execute("DELETE FROM days WHERE day <= ?1", [today - KEEP_DAYS])?;
    }
    tx.commit()?;
    Ok(())
}

/// What today's figures count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// 00:00 UTC today.
    Midnight,
    /// Today's first round: the first after an upgrade, or after the clock went back.
    FirstRound,
    /// The newest snapshot, which is of a later day than the clock's today.
    ClockBehind { newest_day: i64 },
    /// No snapshot was ever taken (no round since daily figures began): the totals.
    Init,
}

impl Since {
    /// Its name in `status --json`.
    pub fn name(self) -> &'static str {
        match self {
            Since::Midnight => "midnight",
            Since::FirstRound => "first-round",
            Since::ClockBehind { .. } => "clock-behind",
            Since::Init => "init",
        }
    }
}

pub struct Today {
    pub since: Since,
    /// Every counter of `totals`, by how much it rose (never below 0).
    pub counters: Vec<(String, i64)>,
}

/// Today's figures at `now`, from the counters' `totals`. Reads only.
pub fn today(state: &State, now: SystemTime, totals: &[(String, i64)]) -> Result<Today> {
    let today = day_of(now);
    let conn = state.conn();
    let newest: Option<(i64, bool)> = conn
        .query_row("SELECT day, midnight FROM days ORDER BY day DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (since, base_day) = match newest {
        None => (Since::Init, None),
        Some((day, true)) if day == today => (Since::Midnight, Some(day)),
        Some((day, false)) if day == today => (Since::FirstRound, Some(day)),
        Some((day, _)) if day > today => (Since::ClockBehind { newest_day: day }, Some(day)),
        // No write yet today: nothing rose since midnight.
        Some(_) => (Since::Midnight, None),
    };
    let base: HashMap<String, i64> = match (since, base_day) {
        (Since::Init, _) => HashMap::new(),
        (_, None) => totals.iter().cloned().collect(),
        (_, Some(day)) => {
            let mut st = conn.prepare("SELECT name, value FROM day_counters WHERE day = ?1")?;
            let rows = st.query_map([day], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    let counters = totals.iter().map(|(n, v)| (n.clone(), (v - base.get(n).copied().unwrap_or(0)).max(0))).collect();
    Ok(Today { since, counters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: u64 = 86400;

    fn at(day: u64, secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * DAY + day * DAY + secs)
    }

    fn figure(state: &State, now: SystemTime, name: &str) -> (Since, i64) {
        let t = today(state, now, &state.counters().unwrap()).unwrap();
        (t.since, t.counters.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v))
    }

    #[test]
    fn counts_from_midnight_and_zero_before_the_first_write() {
        let mut s = State::in_memory().unwrap();
        assert_eq!(figure(&s, at(0, 0), "x").0, Since::Init);
        snapshot(&mut s, at(0, 3600)).unwrap();
        s.bump("x", 5).unwrap();
        assert_eq!(
            figure(&s, at(0, 7200), "x"),
            (Since::Midnight, 5),
            "first day of a new node: nothing counted before"
        );
        // The next day, before any round: 0; after one, only its counts.
        assert_eq!(figure(&s, at(1, 60), "x"), (Since::Midnight, 0));
        snapshot(&mut s, at(1, 50_000)).unwrap();
        s.bump("x", 2).unwrap();
        snapshot(&mut s, at(1, 60_000)).unwrap();
        s.bump("x", 1).unwrap();
        assert_eq!(figure(&s, at(1, 80_000), "x"), (Since::Midnight, 3));
        assert_eq!(s.counter("x").unwrap(), 8);
    }

    #[test]
    fn first_snapshot_after_an_upgrade_is_not_from_midnight() {
        let mut s = State::in_memory().unwrap();
        s.bump("x", 9).unwrap();
        assert_eq!(figure(&s, at(0, 0), "x"), (Since::Init, 9));
        snapshot(&mut s, at(0, 40_000)).unwrap();
        s.bump("x", 1).unwrap();
        assert_eq!(figure(&s, at(0, 50_000), "x"), (Since::FirstRound, 1));
        snapshot(&mut s, at(1, 10)).unwrap();
        assert_eq!(figure(&s, at(1, 20), "x"), (Since::Midnight, 0));
    }

    #[test]
    fn keeps_eight_days() {
        let mut s = State::in_memory().unwrap();
        for d in 0..20 {
            snapshot(&mut s, at(d, 100)).unwrap();
            s.bump("x", 1).unwrap();
        }
        let days: Vec<i64> = s
            .conn()
            .prepare("SELECT day FROM days ORDER BY day")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(days, (day_of(at(12, 0))..=day_of(at(19, 0))).collect::<Vec<_>>());
        let rows: i64 = s.conn().query_row("SELECT count(*) FROM day_counters", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 8, "purged days' counters go with them");
    }

    #[test]
    fn a_clock_going_back_gives_no_negative_figure() {
        let mut s = State::in_memory().unwrap();
        snapshot(&mut s, at(0, 100)).unwrap();
        s.bump("x", 4).unwrap();
        snapshot(&mut s, at(5, 100)).unwrap();
        s.bump("x", 2).unwrap();
        // The clock reads day 2: the newest snapshot (day 5) is the base.
        assert_eq!(figure(&s, at(2, 0), "x"), (Since::ClockBehind { newest_day: day_of(at(5, 0)) }, 2));
        // A write at day 2 drops day 5's snapshot and takes day 2's, not from midnight.
        snapshot(&mut s, at(2, 10)).unwrap();
        s.bump("x", 1).unwrap();
        assert_eq!(figure(&s, at(2, 20), "x"), (Since::Midnight, 1), "day 0's snapshot kept: midnight");
        // Only future snapshots: the new one cannot say it is from midnight.
        let mut s = State::in_memory().unwrap();
        s.bump("x", 3).unwrap();
        snapshot(&mut s, at(5, 100)).unwrap();
        snapshot(&mut s, at(2, 100)).unwrap();
        assert_eq!(figure(&s, at(2, 200), "x"), (Since::FirstRound, 0));
        // Before the epoch's day 0 and far ahead: no panic, no negative.
        assert!(figure(&s, SystemTime::UNIX_EPOCH, "x").1 >= 0);
    }
}
