//! The pinger's store, `HOME/state.sqlite`, with `batch::state`'s file rules and its own
//! migrations: counters, meta, and one row per ping sent.
//!
//! A ping's row commits before the ping is handed to the transport (and is deleted when the
//! transport refuses it): a crash in between leaves a row for a ping never sent, which
//! counts against the mix once; the other order would leave a ping that returns unknown.
//! A returned ping's row gets its `returned` time in the transaction that counts it; only
//! then does its spool file leave. Rows older than `KEEP` are deleted: stats look 12 days back.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::batch::state::{unix, Migrations, State};

/// The pinger's migrations (its own numbering; never reorder or remove one).
pub const MIGRATIONS: Migrations = &[
    // 1: the first schema. `mix` and `next` are fingerprints (upper-case hex); `next` is ''
    // for a ping of one mix, the second mix of a chain ping otherwise. `id` is the random
    // ping id the payload carries.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE pings (id TEXT PRIMARY KEY, mix TEXT NOT NULL, next TEXT NOT NULL,
                         sent INTEGER NOT NULL, returned INTEGER) WITHOUT ROWID;
     CREATE INDEX pings_mix ON pings(mix, next, sent);",
];

/// How long ping rows are kept: the 12 days of the statistics and a day to spare.
pub const KEEP: Duration = Duration::from_secs(13 * 86400);

pub fn open(path: &std::path::Path) -> Result<State> {
    State::open_with(path, MIGRATIONS)
}

/// One ping as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub mix: String,
    /// '' for a single-mix ping.
    pub next: String,
    pub sent: i64,
    pub returned: Option<i64>,
}

/// What a returned ping turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Return {
    /// First return of a known ping: recorded.
    Fresh(Ping),
    /// Returned before: a replay (or a duplicate a mix sent twice).
    Again,
    /// No such ping (never sent, or older than `KEEP`).
    Unknown,
}

pub fn record_sent(tx: &Transaction<'_>, id: &str, mix: &str, next: &str, sent: SystemTime) -> Result<()> {
    tx.execute("INSERT INTO pings (id, mix, next, sent) VALUES (?1, ?2, ?3, ?4)", params![id, mix, next, unix(sent)])?;
    Ok(())
}

/// Forgets a ping the transport did not take.
pub fn forget(state: &State, id: &str) -> Result<()> {
    state.conn().execute("DELETE FROM pings WHERE id = ?1", [id])?;
    Ok(())
}

/// Marks a ping returned at `at`, inside the caller's transaction.
pub fn mark_returned(tx: &Transaction<'_>, id: &str, at: SystemTime) -> Result<Return> {
    let row = tx
        .query_row("SELECT mix, next, sent, returned FROM pings WHERE id = ?1", [id], |r| {
            Ok(Ping { mix: r.get(0)?, next: r.get(1)?, sent: r.get(2)?, returned: r.get(3)? })
        })
        .optional()?;
    Ok(match row {
        None => Return::Unknown,
        Some(p) if p.returned.is_some() => Return::Again,
        Some(mut p) => {
            // A return stamped before its send (a clock that went back) counts as instant.
            let at = unix(at).max(p.sent);
            tx.execute("UPDATE pings SET returned = ?2 WHERE id = ?1", params![id, at])?;
            p.returned = Some(at);
            Return::Fresh(p)
        }
    })
}

/// When `mix` (then `next`, '' for none) was last pinged.
pub fn last_sent(state: &State, mix: &str, next: &str) -> Result<Option<i64>> {
    Ok(state
        .conn()
        .query_row("SELECT max(sent) FROM pings WHERE mix = ?1 AND next = ?2", params![mix, next], |r| r.get(0))?)
}

/// Every ping sent after `since`.
pub fn since(state: &State, since: SystemTime) -> Result<Vec<Ping>> {
    let mut st = state.conn().prepare("SELECT mix, next, sent, returned FROM pings WHERE sent > ?1")?;
    let rows = st.query_map([unix(since)], |r| {
        Ok(Ping { mix: r.get(0)?, next: r.get(1)?, sent: r.get(2)?, returned: r.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes pings sent before `now - KEEP`; returns how many.
pub fn prune(state: &State, now: SystemTime) -> Result<usize> {
    Ok(state.conn().execute("DELETE FROM pings WHERE sent < ?1", [unix(now) - KEEP.as_secs() as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_returns_once() {
        let mut s = State::in_memory_with(MIGRATIONS).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tx = s.transaction().unwrap();
        record_sent(&tx, "abc", "F1", "", t0).unwrap();
        tx.commit().unwrap();
        assert_eq!(last_sent(&s, "F1", "").unwrap(), Some(unix(t0)));
        assert_eq!(last_sent(&s, "F1", "F2").unwrap(), None);
        let tx = s.transaction().unwrap();
        let r = mark_returned(&tx, "abc", t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(
            r,
            Return::Fresh(Ping { mix: "F1".into(), next: "".into(), sent: unix(t0), returned: Some(unix(t0) + 60) })
        );
        assert_eq!(mark_returned(&tx, "abc", t0).unwrap(), Return::Again);
        assert_eq!(mark_returned(&tx, "zzz", t0).unwrap(), Return::Unknown);
        tx.commit().unwrap();
        assert_eq!(prune(&s, t0 + KEEP).unwrap(), 0);
        assert_eq!(prune(&s, t0 + KEEP + Duration::from_secs(1)).unwrap(), 1);
    }
}
