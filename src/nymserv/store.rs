//! The nym server's state: `HOME/state.sqlite`, through `batch::state` with a schema of its
//! own (`MIGRATIONS`).
//!
//! It holds the nyms (name, key, settings, delivery, activity), waiting confirmations
//! (by the hash of their code), the replay cache of signed requests (by the hash of the
//! signature, kept 7 days), the outbox, the send@ blocklist and the block requests
//! waiting for their confirmation (`abuse::block`, salted hashes), counters and the `done`
//! ledger.
//!
//! ## Crash ordering
//! One transaction per spool file records what became of it (nym changes, outbox rows,
//! counts, a `done` row); only then does the file leave the Maildir. An outbox row is
//! deleted only after the transport (or the news server) accepted it: a crash in between
//! sends it twice, never loses it.
//!
//! ## Privacy
//! The delivery address of a `mixtasy:` nym is stored in clear: the server must know it
//! to deliver (doc/nym.md says so). Nothing links a nym to the mail that created it.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::batch::state::{from_unix, unix};

/// The nym server's schema; never reorder or remove one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema. `active` is 0 until the owner answered the first confirmation;
    // `pending_delivery` is a delivery change waiting for its confirmation.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE done (source TEXT PRIMARY KEY, action INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE salt (id INTEGER PRIMARY KEY CHECK (id = 1), salt BLOB NOT NULL);
     CREATE TABLE nyms (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, cert BLOB NOT NULL,
                        hsub TEXT NOT NULL DEFAULT '', symmetric TEXT NOT NULL DEFAULT '',
                        acksend INTEGER NOT NULL DEFAULT 1, delivery TEXT NOT NULL DEFAULT '',
                        active INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,
                        last_signed INTEGER NOT NULL, warned INTEGER NOT NULL DEFAULT 0,
                        sent_day INTEGER NOT NULL DEFAULT 0, sent_today INTEGER NOT NULL DEFAULT 0,
                        recv_day INTEGER NOT NULL DEFAULT 0, recv_cost INTEGER NOT NULL DEFAULT 0,
                        told INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
     CREATE TABLE confirm (hash BLOB PRIMARY KEY, name TEXT NOT NULL, delivery TEXT NOT NULL,
                           expires INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE replay (hash BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE blocklist (hash BLOB PRIMARY KEY) WITHOUT ROWID;
     CREATE TABLE outbox (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, rcpt TEXT NOT NULL, mail BLOB NOT NULL);",
    // 2: the key index, every key id and fingerprint (hex) of each nym's key, so that a
    // signed request finds its nym without parsing every nym's key (rows of nyms made
    // before it are filled by `backfill_keys`); and deleted names, held back from other
    // keys for `NAME_HELD`.
    "CREATE TABLE nym_keys (handle TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (handle, name)) WITHOUT ROWID;
     CREATE INDEX nym_keys_name ON nym_keys(name);
     CREATE TABLE deleted (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;",
    // 3: destination blocking at block@ (`abuse::block`, the exit's code): requests waiting
    // for their confirmation, by the hashes of nonce and address, as mixtasyd's table.
    "CREATE TABLE block_pending (nonce BLOB PRIMARY KEY, addr BLOB NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;",
];

/// How long a signature hash stays in the replay cache: as long as a signature is fresh.
pub const REPLAY_KEEP: Duration = Duration::from_secs(7 * 86400);
/// How long a confirmation code may be answered (nym.alias.net wipes them after 7 days).
pub const CONFIRM_KEEP: Duration = Duration::from_secs(7 * 86400);

/// How long the name of a deleted (or expired) nym is held back from every key but the one
/// that held it: mail its correspondents still send must not reach a newcomer who took the
/// name (nym.alias.net kept deleted names reserved for the same reason). A year: longer
/// than a nym may sit idle before it expires (120 days), so that correspondents who wrote
/// to it while it lived have long stopped.
pub const NAME_HELD: Duration = Duration::from_secs(365 * 86400);

/// At most this many nyms are tried for one signed request: a request naming many issuers
/// (one signature each) makes the server parse no more keys than this.
pub const MAX_CANDIDATES: usize = 4;

/// One nym as stored.
#[derive(Debug, Clone)]
pub struct Nym {
    pub name: String,
    pub fingerprint: String,
    pub cert: Vec<u8>,
    pub hsub: String,
    pub symmetric: String,
    pub acksend: bool,
    /// `newsgroup`, `mixtasy:ADDRESS`, or empty while no delivery was ever confirmed.
    pub delivery: String,
    pub active: bool,
    pub created: SystemTime,
    pub last_signed: SystemTime,
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Nym>> {
    Ok(conn
        .query_row(
            "SELECT name, fingerprint, cert, hsub, symmetric, acksend, delivery, active, created, last_signed FROM nyms WHERE name = ?1",
            [name],
            |r| {
                Ok(Nym {
                    name: r.get(0)?,
                    fingerprint: r.get(1)?,
                    cert: r.get(2)?,
                    hsub: r.get(3)?,
                    symmetric: r.get(4)?,
                    acksend: r.get::<_, i64>(5)? != 0,
                    delivery: r.get(6)?,
                    active: r.get::<_, i64>(7)? != 0,
                    created: from_unix(r.get(8)?),
                    last_signed: from_unix(r.get(9)?),
                })
            },
        )
        .optional()?)
}

/// The nym whose key has `fingerprint` (hex, upper case).
pub fn by_fingerprint(conn: &Connection, fingerprint: &str) -> Result<Option<Nym>> {
    let name: Option<String> =
        conn.query_row("SELECT name FROM nyms WHERE fingerprint = ?1", [fingerprint], |r| r.get(0)).optional()?;
    match name {
        Some(n) => get(conn, &n),
        None => Ok(None),
    }
}

/// Inserts or replaces a nym whole.
pub fn put(conn: &Connection, n: &Nym) -> Result<()> {
    conn.execute(
        "INSERT INTO nyms (name, fingerprint, cert, hsub, symmetric, acksend, delivery, active, created, last_signed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(name) DO UPDATE SET fingerprint = ?2, cert = ?3, hsub = ?4, symmetric = ?5, acksend = ?6,
           delivery = ?7, active = ?8, created = ?9, last_signed = ?10, warned = 0",
        params![
            n.name,
            n.fingerprint,
            n.cert,
            n.hsub,
            n.symmetric,
            n.acksend as i64,
            n.delivery,
            n.active as i64,
            unix(n.created),
            unix(n.last_signed)
        ],
    )?;
    Ok(())
}

/// Deletes `n` (its request, or expiry) and holds its name back for `NAME_HELD` from every
/// key but its own.
pub fn delete(conn: &Connection, n: &Nym, now: SystemTime) -> Result<()> {
    conn.execute("DELETE FROM nyms WHERE name = ?1", [&n.name])?;
    conn.execute("DELETE FROM confirm WHERE name = ?1", [&n.name])?;
    conn.execute("DELETE FROM nym_keys WHERE name = ?1", [&n.name])?;
    conn.execute(
        "INSERT OR REPLACE INTO deleted (name, fingerprint, until) VALUES (?1, ?2, ?3)",
        params![n.name, n.fingerprint, unix(now + NAME_HELD)],
    )?;
    Ok(())
}

/// If `name` belonged to a nym deleted less than `NAME_HELD` ago: the fingerprint of its key
/// and when the name is free again.
pub fn held(conn: &Connection, name: &str, now: SystemTime) -> Result<Option<(String, SystemTime)>> {
    Ok(conn
        .query_row(
            "SELECT fingerprint, until FROM deleted WHERE name = ?1 AND until > ?2",
            params![name, unix(now)],
            |r| Ok((r.get(0)?, from_unix(r.get(1)?))),
        )
        .optional()?)
}

/// The same key takes its deleted name back: the name is no longer held.
pub fn release(conn: &Connection, name: &str) -> Result<()> {
    conn.execute("DELETE FROM deleted WHERE name = ?1", [name])?;
    Ok(())
}

/// Records the key ids and fingerprints (`pgp::handles`) of `name`'s key, replacing what was
/// there: at create and at a key refresh, the only places a nym's key changes.
pub fn index_keys(conn: &Connection, name: &str, handles: &[String]) -> Result<()> {
    conn.execute("DELETE FROM nym_keys WHERE name = ?1", [name])?;
    let mut st = conn.prepare("INSERT OR IGNORE INTO nym_keys (handle, name) VALUES (?1, ?2)")?;
    for h in handles {
        st.execute(params![h, name])?;
    }
    Ok(())
}

/// The nyms whose key holds one of `handles` (upper-case hex key ids or fingerprints), at
/// most `MAX_CANDIDATES`: an index lookup, no key parsed.
pub fn by_handles(conn: &Connection, handles: &[String]) -> Result<Vec<Nym>> {
    let mut st = conn.prepare("SELECT DISTINCT name FROM nym_keys WHERE handle = ?1")?;
    let mut names: Vec<String> = Vec::new();
    for h in handles {
        for n in st.query_map([h], |r| r.get::<_, String>(0))? {
            let n = n?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names.truncate(MAX_CANDIDATES);
    let mut out = Vec::new();
    for n in names {
        out.extend(get(conn, &n)?);
    }
    Ok(out)
}

/// Fills the key index for nyms that have no rows in it (those made before migration 2):
/// `handles` reads a stored key. Run at each start; a no-op once every nym is indexed.
pub fn backfill_keys(conn: &Connection, handles: impl Fn(&[u8]) -> Result<Vec<String>>) -> Result<usize> {
    let rows: Vec<(String, Vec<u8>)> = conn
        .prepare("SELECT name, cert FROM nyms WHERE name NOT IN (SELECT name FROM nym_keys)")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, cert) in &rows {
        index_keys(conn, name, &handles(cert)?)?;
    }
    Ok(rows.len())
}

fn code_hash(code: &str) -> Vec<u8> {
    Sha256::digest(code.trim().to_ascii_lowercase().as_bytes()).to_vec()
}

/// Records a confirmation code for `delivery` of `name`; an older one waiting for the same
/// nym is replaced, so at most one confirmation per nym is ever pending.
pub fn add_confirmation(conn: &Connection, name: &str, delivery: &str, code: &str, now: SystemTime) -> Result<()> {
    conn.execute("DELETE FROM confirm WHERE name = ?1", [name])?;
    conn.execute(
        "INSERT INTO confirm (hash, name, delivery, expires) VALUES (?1, ?2, ?3, ?4)",
        params![code_hash(code), name, delivery, unix(now + CONFIRM_KEEP)],
    )?;
    Ok(())
}

/// Takes the confirmation `code` of `name` if it waits and has not expired: the delivery it
/// confirms.
pub fn take_confirmation(conn: &Connection, name: &str, code: &str, now: SystemTime) -> Result<Option<String>> {
    let h = code_hash(code);
    let got: Option<(String, i64)> = conn
        .query_row("SELECT delivery, expires FROM confirm WHERE hash = ?1 AND name = ?2", params![h, name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    conn.execute("DELETE FROM confirm WHERE hash = ?1 AND name = ?2", params![h, name])?;
    Ok(got.filter(|(_, e)| *e > unix(now)).map(|(d, _)| d))
}

/// Whether a confirmation to `delivery` is waiting (for any nym): then no other is sent
/// there, so an address nobody confirmed gets one mail however many nyms name it.
pub fn confirmation_waiting(conn: &Connection, delivery: &str, now: SystemTime) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM confirm WHERE delivery = ?1 AND expires > ?2)",
        params![delivery, unix(now)],
        |r| r.get(0),
    )?)
}

/// Every nym (for expiry).
pub fn all(conn: &Connection) -> Result<Vec<Nym>> {
    let names: Vec<String> =
        conn.prepare("SELECT name FROM nyms")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for n in names {
        out.extend(get(conn, &n)?);
    }
    Ok(out)
}

/// Records a signature hash; false if it was seen already (a replay).
pub fn first_use(conn: &Connection, sig_hash: &[u8; 32], now: SystemTime) -> Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO replay (hash, expires) VALUES (?1, ?2)",
        params![&sig_hash[..], unix(now + REPLAY_KEEP)],
    )?;
    Ok(n == 1)
}

/// Forgets expired signature hashes, confirmation codes and held names; deletes
/// never-confirmed nyms whose confirmation expired (their names are not held: they never
/// received mail).
pub fn purge(conn: &Connection, now: SystemTime) -> Result<()> {
    conn.execute("DELETE FROM replay WHERE expires <= ?1", [unix(now)])?;
    conn.execute(
        "DELETE FROM nyms WHERE active = 0 AND name NOT IN (SELECT name FROM confirm WHERE expires > ?1)",
        [unix(now)],
    )?;
    conn.execute("DELETE FROM confirm WHERE expires <= ?1", [unix(now)])?;
    conn.execute("DELETE FROM nym_keys WHERE name NOT IN (SELECT name FROM nyms)", [])?;
    conn.execute("DELETE FROM deleted WHERE until <= ?1", [unix(now)])?;
    Ok(())
}

/// Queues a mail for a channel (`news`, `smtp`) and recipient, in the caller's transaction.
pub fn queue(conn: &Connection, channel: &str, rcpt: &str, mail: &[u8]) -> Result<()> {
    let id = crate::batch::state::random_id(conn, crate::batch::state::Queue::Outbox, &mut rand::rng())?;
    conn.execute(
        "INSERT INTO outbox (id, channel, rcpt, mail) VALUES (?1, ?2, ?3, ?4)",
        params![id, channel, rcpt, mail],
    )?;
    Ok(())
}

/// One outbox row.
pub struct Queued {
    pub id: i64,
    pub channel: String,
    pub rcpt: String,
    pub mail: Vec<u8>,
}

pub fn outbox(conn: &Connection) -> Result<Vec<Queued>> {
    let mut st = conn.prepare("SELECT id, channel, rcpt, mail FROM outbox")?;
    let rows =
        st.query_map([], |r| Ok(Queued { id: r.get(0)?, channel: r.get(1)?, rcpt: r.get(2)?, mail: r.get(3)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::state::State;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn replay_cache_refuses_twice_until_purged() {
        let s = State::in_memory_with(MIGRATIONS).unwrap();
        let h = [7u8; 32];
        assert!(first_use(s.conn(), &h, t(1000)).unwrap());
        assert!(!first_use(s.conn(), &h, t(2000)).unwrap());
        purge(s.conn(), t(1000) + REPLAY_KEEP).unwrap();
        assert!(first_use(s.conn(), &h, t(1000) + REPLAY_KEEP).unwrap());
    }

    fn nym(name: &str, fingerprint: &str) -> Nym {
        Nym {
            name: name.into(),
            fingerprint: fingerprint.into(),
            cert: b"key".to_vec(),
            hsub: String::new(),
            symmetric: String::new(),
            acksend: true,
            delivery: "newsgroup".into(),
            active: true,
            created: t(0),
            last_signed: t(0),
        }
    }

    #[test]
    fn a_deleted_name_is_held_for_its_key_then_freed() {
        let s = State::in_memory_with(MIGRATIONS).unwrap();
        let n = nym("alice", "AA");
        put(s.conn(), &n).unwrap();
        index_keys(s.conn(), "alice", &["K1".into()]).unwrap();
        assert_eq!(by_handles(s.conn(), &["K1".into()]).unwrap().len(), 1);
        delete(s.conn(), &n, t(1000)).unwrap();
        assert!(get(s.conn(), "alice").unwrap().is_none());
        assert!(by_handles(s.conn(), &["K1".into()]).unwrap().is_empty(), "its keys find nothing");
        assert_eq!(held(s.conn(), "alice", t(2000)).unwrap().map(|h| h.0).as_deref(), Some("AA"));
        purge(s.conn(), t(1000) + NAME_HELD - Duration::from_secs(1)).unwrap();
        assert!(held(s.conn(), "alice", t(1000) + NAME_HELD - Duration::from_secs(1)).unwrap().is_some());
        purge(s.conn(), t(1000) + NAME_HELD).unwrap();
        assert!(held(s.conn(), "alice", t(1000)).unwrap().is_none(), "purged when the time is up");
    }

    /// Nyms stored before the key index (migration 2) are indexed at the next start.
    #[test]
    fn nyms_from_before_the_index_are_backfilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let s = State::open_with(&path, &MIGRATIONS[..1]).unwrap();
        put(s.conn(), &nym("alice", "AA")).unwrap();
        put(s.conn(), &nym("bob", "BB")).unwrap();
        drop(s);
        let s = State::open_with(&path, MIGRATIONS).unwrap();
        let handles = |c: &[u8]| Ok(vec![format!("{}-K", String::from_utf8_lossy(c))]);
        assert_eq!(backfill_keys(s.conn(), handles).unwrap(), 2);
        assert_eq!(by_handles(s.conn(), &["key-K".into()]).unwrap().len(), 2);
        assert_eq!(backfill_keys(s.conn(), handles).unwrap(), 0, "once");
    }

    #[test]
    fn a_code_confirms_once_and_only_its_nym() {
        let s = State::in_memory_with(MIGRATIONS).unwrap();
        add_confirmation(s.conn(), "alice", "newsgroup", "ABCD", t(0)).unwrap();
        assert_eq!(take_confirmation(s.conn(), "bob", "abcd", t(1)).unwrap(), None);
        add_confirmation(s.conn(), "alice", "newsgroup", "abcd", t(0)).unwrap();
        assert_eq!(take_confirmation(s.conn(), "alice", "abcd", t(1)).unwrap().as_deref(), Some("newsgroup"));
        assert_eq!(take_confirmation(s.conn(), "alice", "abcd", t(2)).unwrap(), None);
        add_confirmation(s.conn(), "alice", "newsgroup", "x", t(0)).unwrap();
        assert_eq!(take_confirmation(s.conn(), "alice", "x", t(0) + CONFIRM_KEEP).unwrap(), None, "expired");
    }
}
