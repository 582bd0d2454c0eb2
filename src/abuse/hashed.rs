//! Salted address hashes: how the blocklist, the quota and the exit's per-recipient and
//! sent-id records know an address or id without storing it. One salt per node, made on
//! first use.

use anyhow::Result;
use rand::RngCore;
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

/// The node's salt for address hashes, made on first use: a stolen state file does not
/// answer "is this address blocked?" from a table made for another mix.
fn salt(tx: &rusqlite::Connection) -> Result<Vec<u8>> {
    if let Some(s) = tx.query_row("SELECT salt FROM salt WHERE id = 1", [], |r| r.get(0)).optional()? {
        return Ok(s);
    }
    let mut s = vec![0u8; 32];
    rand::rng().fill_bytes(&mut s);
    tx.execute("INSERT INTO salt (id, salt) VALUES (1, ?1)", [&s])?;
    Ok(s)
}

/// The salted hash the blocklist and the quota know an address by (case folded).
pub fn address_hash(conn: &rusqlite::Connection, address: &str) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(salt(conn)?);
    h.update(address.to_ascii_lowercase().as_bytes());
    Ok(h.finalize().into())
}
