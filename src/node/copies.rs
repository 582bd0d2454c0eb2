//! Copies at the exit (issue 12): a sender may send every part N times over independent
//! paths (`mixtasy send --copies N`), all with one Mixtasy-ID and one exit. The exit takes
//! the first complete original and drops every later copy of it.
//!
//! Ids are remembered only as SHA-256 hashes, and only for `part_expiry` (rounded up to a
//! whole UTC day, so that a row does not tell when the round that took its original ran):
//! as long as the parts holder would wait for a missing part, which bounds how late a copy
//! can still matter. A copy later still is dropped by the next mix's replay cache or, if it took
//! another path, delivered a second time: a duplicate, never a loss.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::{params, Transaction};
use sha2::{Digest, Sha256};

use crate::batch::state::{unix, State};

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Whether an original with this Mixtasy-ID was already taken (pooled for delivery).
pub fn taken(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    Ok(tx.query_row("SELECT 1 FROM taken_ids WHERE hash = ?1", params![hash(id).as_slice()], |_| Ok(())).is_ok())
}

/// Remembers that the original with this Mixtasy-ID was taken, in the transaction that
/// pools it, for at least `keep` (the `part_expiry` setting), until the next UTC midnight.
pub fn remember(tx: &Transaction<'_>, id: &str, now: SystemTime, keep: Duration) -> Result<()> {
    const DAY: i64 = 86_400;
    let expires = (unix(now + keep) + DAY - 1).div_euclid(DAY) * DAY;
    tx.execute(
        "INSERT OR REPLACE INTO taken_ids (hash, expires) VALUES (?1, ?2)",
        params![hash(id).as_slice(), expires],
    )?;
    Ok(())
}

/// Forgets ids whose time is over.
pub fn purge(state: &mut State, now: SystemTime) -> Result<()> {
    state.conn().execute("DELETE FROM taken_ids WHERE expires <= ?1", params![unix(now)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_a_while_then_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let mut st = State::open(&t.path().join("s.sqlite")).unwrap();
        // 1_800_000_000 is 2027-01-15 08:00 UTC; with an hour kept, forgotten at midnight.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 86_400 * 86_400 + 86_400);
        let keep = Duration::from_secs(3600);
        let tx = st.transaction().unwrap();
        assert!(!taken(&tx, "<a@mixtasy>").unwrap());
        remember(&tx, "<a@mixtasy>", now, keep).unwrap();
        assert!(taken(&tx, "<a@mixtasy>").unwrap());
        assert!(!taken(&tx, "<b@mixtasy>").unwrap());
        tx.commit().unwrap();
        let stored: Vec<u8> = st.conn().query_row("SELECT hash FROM taken_ids", [], |r| r.get(0)).unwrap();
        assert!(!stored.windows(3).any(|w| w == b"<a@"), "only a hash is stored");
        let expires: i64 = st.conn().query_row("SELECT expires FROM taken_ids", [], |r| r.get(0)).unwrap();
        assert_eq!(expires % 86_400, 0, "a day, not the round's time");
        purge(&mut st, midnight - Duration::from_secs(1)).unwrap();
        assert!(taken(&st.transaction().unwrap(), "<a@mixtasy>").unwrap());
        purge(&mut st, midnight).unwrap();
        assert!(!taken(&st.transaction().unwrap(), "<a@mixtasy>").unwrap());
    }
}
