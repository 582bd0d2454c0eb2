//! The per-recipient quota at the exit, like nymserv's daily chunk limit (nym.alias.net,
//! section 4.2): at most `recipient_quota` deliveries to one address per 24-hour window,
//! so that nobody can mail-bomb through the exit. The window starts with the first
//! delivery; rows are known by the salted address hash (`hashed::address_hash`) and
//! deleted when their window ends, so the state holds one day of counts and no address.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use crate::abuse::hashed::address_hash;
use crate::batch::state::unix;

pub const WINDOW: Duration = Duration::from_secs(86400);

/// What happens to mail for a recipient over the quota (`over_quota` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverQuota {
    /// The whole mail stays queued until every recipient has room (or `exit_giveup`).
    Wait,
    /// Recipients over the quota are left out; the mail goes to the others.
    Drop,
}

/// Deliveries to `address` in its current window.
pub fn used(conn: &rusqlite::Connection, address: &str, now: SystemTime) -> Result<u64> {
    let h = address_hash(conn, address)?;
    let row: Option<(i64, i64)> = conn
        .query_row("SELECT start, count FROM quota WHERE hash = ?1", [&h[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((start, count)) if unix(now) - start < WINDOW.as_secs() as i64 => count as u64,
        _ => 0,
    })
}

/// Whether one more delivery to `address` fits (`limit` 0: no quota).
pub fn has_room(conn: &rusqlite::Connection, address: &str, limit: u64, now: SystemTime) -> Result<bool> {
    Ok(limit == 0 || used(conn, address, now)? < limit)
}

/// Counts one delivery to `address`, in the transaction that records the delivery.
pub fn charge(conn: &rusqlite::Connection, address: &str, now: SystemTime) -> Result<()> {
    let h = address_hash(conn, address)?;
    let now = unix(now);
    conn.execute(
        "INSERT INTO quota (hash, start, count) VALUES (?1, ?2, 1)
         ON CONFLICT(hash) DO UPDATE SET
           count = CASE WHEN ?2 - start < ?3 THEN count + 1 ELSE 1 END,
           start = CASE WHEN ?2 - start < ?3 THEN start ELSE ?2 END",
        params![&h[..], now, WINDOW.as_secs() as i64],
    )?;
    Ok(())
}

/// Deletes the counts of windows that have ended.
pub fn purge(conn: &rusqlite::Connection, now: SystemTime) -> Result<()> {
    conn.execute("DELETE FROM quota WHERE start <= ?1", [unix(now) - WINDOW.as_secs() as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::state::State;

    #[test]
    fn a_window_of_24_hours() {
        let s = State::in_memory().unwrap();
        let c = s.conn();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(has_room(c, "bob@x.test", 2, t0).unwrap());
        charge(c, "bob@x.test", t0).unwrap();
        charge(c, "BOB@x.test", t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(used(c, "bob@x.test", t0 + Duration::from_secs(120)).unwrap(), 2);
        assert!(!has_room(c, "bob@x.test", 2, t0 + Duration::from_secs(120)).unwrap());
        assert!(has_room(c, "bob@x.test", 0, t0).unwrap(), "0 means no quota");
        assert!(has_room(c, "carol@x.test", 2, t0).unwrap());
        let next_day = t0 + WINDOW;
        assert!(has_room(c, "bob@x.test", 2, next_day).unwrap());
        charge(c, "bob@x.test", next_day).unwrap();
        assert_eq!(used(c, "bob@x.test", next_day).unwrap(), 1, "a new window starts");
        purge(c, next_day + WINDOW).unwrap();
        assert_eq!(s.conn().query_row("SELECT count(*) FROM quota", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }
}
