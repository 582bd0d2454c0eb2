//! The replay cache (thesis 6.4.2, D6 step 5): Verification hashes of processed messages,
//! each kept until the subkey that decrypted it expires. After that, a replay cannot be
//! decrypted at all, so the entry can go: the cache never outgrows what valid keys accept.

use std::time::SystemTime;

use anyhow::Result;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::batch::state::{unix, State};
use crate::format::verification::Hash;

/// Whether `hash` was seen before.
pub fn seen(tx: &Transaction<'_>, hash: &Hash) -> Result<bool> {
    Ok(tx.query_row("SELECT 1 FROM replay WHERE hash = ?1", [&hash[..]], |_| Ok(())).optional()?.is_some())
}

/// Records `hash` until `expires` (a subkey without expiry keeps it for good).
pub fn insert(tx: &Transaction<'_>, hash: &Hash, expires: Option<SystemTime>) -> Result<()> {
    let until = expires.map_or(i64::MAX, unix);
    tx.execute("INSERT OR IGNORE INTO replay (hash, expires) VALUES (?1, ?2)", params![&hash[..], until])?;
    Ok(())
}

/// Forgets entries whose subkey has expired by `now`; returns how many.
pub fn purge(state: &mut State, now: SystemTime) -> Result<usize> {
    let tx = state.transaction()?;
    let n = tx.execute("DELETE FROM replay WHERE expires <= ?1", [unix(now)])?;
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seen_insert_purge() {
        let mut s = State::in_memory().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let tx = s.transaction().unwrap();
        assert!(!seen(&tx, &[1; 20]).unwrap());
        insert(&tx, &[1; 20], Some(t0)).unwrap();
        insert(&tx, &[2; 20], Some(t0 + Duration::from_secs(10))).unwrap();
        assert!(seen(&tx, &[1; 20]).unwrap());
        tx.commit().unwrap();
        assert_eq!(purge(&mut s, t0).unwrap(), 1);
        let tx = s.transaction().unwrap();
        assert!(!seen(&tx, &[1; 20]).unwrap());
        assert!(seen(&tx, &[2; 20]).unwrap());
    }
}
