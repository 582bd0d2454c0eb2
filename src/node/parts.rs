//! Held multipart parts (thesis 6.4.4): parts of one Mixtasy-ID wait until all n are
//! there, then are concatenated in order into the original for the exit queue.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::{params, Transaction};

use crate::batch::state::{unix, State};

#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Stored; the set is not complete yet.
    Waiting,
    /// A copy of a part already held (a resend with another hash): ignored.
    Duplicate,
    /// The last part arrived: the whole original, parts removed.
    Complete(Vec<u8>),
    /// The part contradicts the set (another total) or claims more than `max_parts`.
    Refused,
}

/// Holds one part inside the intake transaction.
pub fn hold(
    tx: &Transaction<'_>,
    id: &str,
    part: u32,
    total: u32,
    payload: &[u8],
    now: SystemTime,
    max_parts: u64,
) -> Result<Held> {
    if total as u64 > max_parts || part == 0 || part > total {
        return Ok(Held::Refused);
    }
    let other_total: Option<u32> = tx
        .query_row("SELECT total FROM parts WHERE mixtasy_id = ?1 AND total != ?2 LIMIT 1", params![id, total], |r| {
            r.get(0)
        })
        .ok();
    if other_total.is_some() {
        return Ok(Held::Refused);
    }
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO parts (mixtasy_id, part, total, first_seen, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, part, total, unix(now), payload],
    )?;
    if inserted == 0 {
        return Ok(Held::Duplicate);
    }
    let have: u32 = tx.query_row("SELECT count(*) FROM parts WHERE mixtasy_id = ?1", [id], |r| r.get(0))?;
    if have < total {
        return Ok(Held::Waiting);
    }
    let mut original = Vec::new();
    {
        let mut st = tx.prepare("SELECT payload FROM parts WHERE mixtasy_id = ?1 ORDER BY part")?;
        let rows = st.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
        for r in rows {
            original.extend_from_slice(&r?);
        }
    }
    tx.execute("DELETE FROM parts WHERE mixtasy_id = ?1", [id])?;
    Ok(Held::Complete(original))
}

/// Drops incomplete sets whose first part is older than `max_age`; returns how many parts.
pub fn expire(state: &mut State, now: SystemTime, max_age: Duration) -> Result<usize> {
    let cutoff = unix(now) - max_age.as_secs() as i64;
    let tx = state.transaction()?;
    let n = tx.execute(
        "DELETE FROM parts WHERE mixtasy_id IN (SELECT mixtasy_id FROM parts GROUP BY mixtasy_id HAVING min(first_seen) < ?1)",
        [cutoff],
    )?;
    crate::node::counters::bump(&tx, crate::node::counters::DROP_PARTS_EXPIRED, n as i64)?;
    tx.commit()?;
    Ok(n)
}

/// Past `max` held parts, drops whole sets, the one begun longest ago first, in the
/// caller's transaction (once per intake batch); returns how many parts went
/// (`drop.parts-over-cap`). Without it a sender of never-completed sets fills the state
/// for `part_expiry`.
pub fn cap(tx: &Transaction<'_>, max: u64) -> Result<usize> {
    let mut held: i64 = tx.query_row("SELECT count(*) FROM parts", [], |r| r.get(0))?;
    let mut dropped = 0;
    while held > max as i64 {
        let oldest: String = tx.query_row(
            "SELECT mixtasy_id FROM parts GROUP BY mixtasy_id ORDER BY min(first_seen), mixtasy_id LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let n = tx.execute("DELETE FROM parts WHERE mixtasy_id = ?1", [&oldest])?;
        held -= n as i64;
        dropped += n;
    }
    crate::node::counters::bump(tx, crate::node::counters::DROP_PARTS_OVER_CAP, dropped as i64)?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_in_order_and_refuse_contradictions() {
        let mut s = State::in_memory().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let tx = s.transaction().unwrap();
        assert_eq!(hold(&tx, "<a@m>", 3, 3, b"C", t, 10).unwrap(), Held::Waiting);
        assert_eq!(hold(&tx, "<a@m>", 1, 3, b"A", t, 10).unwrap(), Held::Waiting);
        assert_eq!(hold(&tx, "<a@m>", 1, 3, b"A", t, 10).unwrap(), Held::Duplicate);
        assert_eq!(hold(&tx, "<a@m>", 2, 4, b"B", t, 10).unwrap(), Held::Refused);
        assert_eq!(hold(&tx, "<a@m>", 2, 3, b"B", t, 10).unwrap(), Held::Complete(b"ABC".to_vec()));
        assert_eq!(hold(&tx, "<b@m>", 1, 11, b"x", t, 10).unwrap(), Held::Refused);
        assert_eq!(hold(&tx, "<c@m>", 1, 2, b"x", t, 10).unwrap(), Held::Waiting);
        tx.commit().unwrap();
        assert_eq!(expire(&mut s, t + Duration::from_secs(50), Duration::from_secs(60)).unwrap(), 0);
        assert_eq!(expire(&mut s, t + Duration::from_secs(61), Duration::from_secs(60)).unwrap(), 1);
        assert_eq!(s.counter("drop.parts-expired").unwrap(), 1);
    }

    #[test]
    fn over_the_cap_the_oldest_sets_go_whole() {
        let mut s = State::in_memory().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let tx = s.transaction().unwrap();
        hold(&tx, "<old@m>", 1, 3, b"A", t, 10).unwrap();
        hold(&tx, "<old@m>", 2, 3, b"B", t + Duration::from_secs(50), 10).unwrap();
        hold(&tx, "<new@m>", 1, 3, b"C", t + Duration::from_secs(10), 10).unwrap();
        hold(&tx, "<new@m>", 2, 3, b"D", t + Duration::from_secs(20), 10).unwrap();
        assert_eq!(cap(&tx, 4).unwrap(), 0);
        assert_eq!(cap(&tx, 3).unwrap(), 2, "the set begun first goes, both its parts");
        assert_eq!(hold(&tx, "<new@m>", 3, 3, b"E", t, 10).unwrap(), Held::Complete(b"CDE".to_vec()));
        tx.commit().unwrap();
        assert_eq!(s.counter("drop.parts-over-cap").unwrap(), 2);
    }
}
