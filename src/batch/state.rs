//! The node's durable state: one SQLite file, `HOME/state.sqlite`.
//!
//! It holds the replay cache, the pool, held multipart parts, the exit queue, counters and
//! the `done` ledger. One transaction per intake batch makes a batch's successors, replay
//! hashes and counts durable together; only then do spool files leave the Maildir.
//!
//! ## Crash ordering
//! A spool file is removed only after the transaction recording what became of it (its
//! successor or the count of its drop, plus a `done` row naming the file) has committed. A
//! crash before the commit loses nothing: the next round peels the file again. A crash after
//! it, before the unlink, is finished by the next round from the `done` row without peeling
//! or counting twice. A pool entry is deleted only after the transport accepted it; a crash
//! between the two sends it again: the next mix's replay cache drops that duplicate (same
//! inner layer, same Verification hash). Likewise a recipient of an exit-queue entry is
//! marked done (`exit_rcpt`) only after the transport accepted the mail for it: a crash in
//! between delivers the original twice to that one recipient, the one duplicate nothing
//! downstream can drop (the window is the time of one commit). The entry is deleted only
//! when no recipient waits.
//!
//! A final message is pooled like a forwarded one; when the pool draws it, one transaction
//! moves it from the pool into the exit queue, so it is in exactly one of the two at any
//! instant.
//!
//! ## Privacy
//! `secure_delete` overwrites deleted rows, so sent messages and expired replay hashes do not
//! linger in free pages, and the rollback journal (which holds the pages a transaction
//! changes, plaintext originals included) is deleted at each commit (`journal_mode`
//! DELETE; PERSIST would keep it on disk, and `tests/exitq.rs` finds the plaintext there).
//! Measured: with these two, one round after an original's last delivery no file of the
//! home holds any 32-byte run of it. Nothing stores arrival times of pool entries, and pool and exit-queue
//! rows have random ids (`random_id`), so neither the ids nor the table's rowid order tell
//! which arrived first. An exit-queue row keeps the time it was drawn: its retry deadline
//! (`exit_giveup`) needs it.
//!
//! ## Migrations
//! A list applied in order and tracked by `PRAGMA user_version` (cargo's scheme); never
//! reorder or remove one. Each program passes its own list (`open_with`): `MIGRATIONS` is
//! the mix node's; another program's list must create the tables the methods here use
//! (`counters`, `meta`, `done`, and `salt` for `abuse::hashed`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::batch::spool::Spool;

/// mixtasyd's migrations. Another program keeps its own list (`State::open_with`).
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE replay (hash BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
     CREATE INDEX replay_expires ON replay(expires);
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE pool (id INTEGER PRIMARY KEY, rcpt TEXT NOT NULL, mail BLOB NOT NULL);
     CREATE TABLE parts (mixtasy_id TEXT NOT NULL, part INTEGER NOT NULL, total INTEGER NOT NULL,
                         first_seen INTEGER NOT NULL, payload BLOB NOT NULL,
                         PRIMARY KEY (mixtasy_id, part)) WITHOUT ROWID;
     CREATE TABLE exitq (id INTEGER PRIMARY KEY, queued INTEGER NOT NULL, original BLOB NOT NULL);
     CREATE TABLE done (source TEXT PRIMARY KEY, action INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
    // 2: an exit-queue entry keeps the Date and Message-ID it is delivered with, so that a
    // delivery repeated after a crash is the same mail (recipients' software drops it).
    "ALTER TABLE exitq ADD COLUMN date INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE exitq ADD COLUMN message_id TEXT NOT NULL DEFAULT '';",
    // 3: exit abuse controls. The blocklist, the quota and pending block requests know an
    // address only by its salted hash (`hashed::address_hash`); exit-queue entries of kind 1
    // are the mix's own notices (block confirmations), not anonymous originals.
    "CREATE TABLE salt (id INTEGER PRIMARY KEY CHECK (id = 1), salt BLOB NOT NULL);
     CREATE TABLE blocklist (hash BLOB PRIMARY KEY) WITHOUT ROWID;
     CREATE TABLE block_pending (nonce BLOB PRIMARY KEY, addr BLOB NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE quota (hash BLOB PRIMARY KEY, start INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID;
     ALTER TABLE exitq ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;",
    // 4: the exit mixes (thesis 6.4.5): a pool row of kind 1 is a final message's original,
    // delivered by the exit when drawn; kind 0 a wire mail for `rcpt` (rcpt is '' on a
    // final). Row ids become random (`random_id`): SQLite's own are max+1, which numbers
    // rows in arrival order. Should two random ids collide here the migration fails whole
    // and the next run tries again with fresh ones.
    "ALTER TABLE pool ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
     UPDATE pool SET id = random();
     UPDATE exitq SET id = random();",
    // 5: exit hygiene (issue 11). `exit_rcpt`: what became of each recipient of an
    // exit-queue entry (`exit::Outcome`), by salted hash, so that one recipient failing
    // holds back nobody and a retry never sends twice to one already done; its rows leave
    // with the entry. `exit_sent`: salted hashes of the Message-IDs the exit delivered,
    // until a bounce of them could still arrive, so that bounces quoting an original are
    // destroyed, not kept in `.operator`.
    "CREATE TABLE exit_rcpt (entry INTEGER NOT NULL, hash BLOB NOT NULL, outcome INTEGER NOT NULL,
                             PRIMARY KEY (entry, hash)) WITHOUT ROWID;
     CREATE TABLE exit_sent (hash BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;",
    // 6 (issue 12, copies): the exit's Mixtasy-IDs already taken, as SHA-256 hashes, kept
    // for `part_expiry` (`copies`).
    "CREATE TABLE taken_ids (hash BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
     CREATE INDEX taken_ids_expires ON taken_ids(expires);",
    // 7 (issue 13, today's figures): a copy of every counter at the first counter write of
    // each UTC day (`daily`), kept for `daily::KEEP_DAYS` days. `midnight` is 0 when the
    // copy may not hold the values at 00:00 (the first one after an upgrade).
    "CREATE TABLE days (day INTEGER PRIMARY KEY, midnight INTEGER NOT NULL);
     CREATE TABLE day_counters (day INTEGER NOT NULL REFERENCES days(day) ON DELETE CASCADE,
                                name TEXT NOT NULL, value INTEGER NOT NULL,
                                PRIMARY KEY (day, name)) WITHOUT ROWID;",
    // 8 (issue 16, live figures): per-round counts for `node::metrics`, coarse on purpose:
    // the day (unix / 86400), not the time, and counts only (what entered the pool, what the
    // pool drew, its size when it fired, dummies made); kept 7 days. Nothing in a row names
    // or orders a message.
    "CREATE TABLE rounds (seq INTEGER PRIMARY KEY, day INTEGER NOT NULL, arrivals INTEGER NOT NULL,
                          departures INTEGER NOT NULL, pool INTEGER NOT NULL, dummies INTEGER NOT NULL);",
];

/// What to do with a spool file once its batch has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It was consumed (pooled, queued, held or dropped): remove it.
    Remove = 1,
    /// It is not mix traffic: move it to the `.operator` folder.
    ToOperator = 2,
    /// Peeling it panicked: move it to the `.quarantine` folder, out of every later round.
    Quarantine = 3,
}

impl Action {
    fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(Action::Remove),
            2 => Some(Action::ToOperator),
            3 => Some(Action::Quarantine),
            _ => None,
        }
    }
}

pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn from_unix(s: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s.max(0) as u64)
}

pub struct State {
    conn: Connection,
}

/// The ordered migrations of one program's store: each program over a Maildir has its own
/// schema and numbering, and the same scheme to apply them.
pub type Migrations = &'static [&'static str];

impl State {
    /// Opens (creating if needed, mode 0600) and migrates. A new
    /// database is made whole under a temporary name and then linked into place, so an
    /// existing file always holds the schema: an empty one (a truncated file) is refused,
    /// never started afresh, which would forget the replay cache and let replays through.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, MIGRATIONS)
    }

    /// `open` for a program with its own schema (the pinger): same file rules, its migrations.
    pub fn open_with(path: &Path, migrations: Migrations) -> Result<Self> {
        if !path.exists() {
            Self::create(path, migrations)
                .with_context(|| format!("creating the state database {}", path.display()))?;
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .with_context(|| format!("reading the state database {}", path.display()))?;
        if version == 0 {
            anyhow::bail!(
                "the state database {} is empty (truncated?), but it must hold the replay cache: restore it from a backup, or move it aside to start an empty one (see mixtasyd(8), FILES)",
                path.display()
            );
        }
        Self::setup(conn, migrations).with_context(|| format!("preparing the state database {}", path.display()))
    }

    /// Makes a new, migrated database at `path` unless one appears meanwhile (`status` may
    /// race a round): built under a unique temporary name, then hard-linked, which never
    /// replaces a file (renamed where the filesystem has no hard links).
    fn create(path: &Path, migrations: Migrations) -> Result<()> {
        let dir = path.parent().context("the state path has no directory")?;
        let name = path.file_name().context("the state path has no file name")?.to_string_lossy();
        let tmp = dir.join(format!(".{name}.new.{}.{:08x}", std::process::id(), rand::random::<u32>()));
        let made = (|| -> Result<()> {
            // 0600 whatever the umask: the file holds the pool and the replay cache (SQLite
            // gives its journal the same mode).
            crate::util::fsutil::write_new(&tmp, b"", 0o600)?;
            drop(Self::setup(Connection::open(&tmp)?, migrations)?);
            match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(_) if !path.exists() => Ok(std::fs::rename(&tmp, path)?),
                r => Ok(r?),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(
            dir.join(format!("{}-journal", tmp.file_name().unwrap_or_default().to_string_lossy())),
        );
        made?;
        crate::util::fsutil::sync_dir(dir)
    }

    /// An in-memory state, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with(MIGRATIONS)
    }

    /// An in-memory state of another program's schema, for tests.
    pub fn in_memory_with(migrations: Migrations) -> Result<Self> {
        Self::setup(Connection::open_in_memory()?, migrations)
    }

    fn setup(mut conn: Connection, migrations: Migrations) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // Rollback journal, not WAL: a home may sit on a network mount, and one process at
        // a time (the round lock) writes. FULL sync: a commit is the durability point.
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Pool rows are ~42 KB: 32 KiB pages store one in two pages instead of eleven. The
        // page size must be set first: a cache size in KiB is turned into a page count at
        // the page size of the moment (set the other way round, 8 MiB became 64).
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 0 {
            // Takes effect only on a database with no tables yet.
            conn.pragma_update(None, "page_size", 32768)?;
        }
        conn.pragma_update(None, "cache_size", -8192)?;
        if version > migrations.len() {
            anyhow::bail!("state database is from a newer mixtasyd, mixtasy-pinger or mixtasy-nymd (schema {version}); refusing to touch it");
        }
        if version < migrations.len() {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
            for m in &migrations[version..] {
                tx.execute_batch(m)?;
            }
            tx.pragma_update(None, "user_version", migrations.len())?;
            tx.commit()?;
        }
        Ok(State { conn })
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        Ok(self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    // --- done ledger ---

    /// Every spool file whose fate committed but whose action may not have happened.
    pub fn pending_actions(&self) -> Result<Vec<(String, Action)>> {
        let mut st = self.conn.prepare("SELECT source, action FROM done")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (s, a) = r?;
            out.push((s, Action::from_i64(a).context("unknown action in the done ledger")?));
        }
        Ok(out)
    }

    pub fn clear_done(&mut self) -> Result<()> {
        self.conn.execute("DELETE FROM done", [])?;
        Ok(())
    }

    // --- counters and meta ---

    pub fn counters(&self) -> Result<Vec<(String, i64)>> {
        let mut st = self.conn.prepare("SELECT name, value FROM counters ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn counter(&self, name: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    pub fn meta(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&self, key: &str, value: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// Adds to a counter in a transaction of its own.
    pub fn bump(&mut self, name: &str, by: i64) -> Result<()> {
        let tx = self.transaction()?;
        bump(&tx, name, by)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes one row of `queue` and adds to counters in one transaction: what left the
    /// state is counted exactly once, even if the process dies right after.
    pub fn remove_counted(&mut self, queue: Queue, id: i64, counters: &[(&str, i64)]) -> Result<()> {
        self.remove_counted_with(queue, id, counters, |_| Ok(()))
    }

    /// `remove_counted`, plus `also` in the same transaction (an exit delivery charges the
    /// recipients' quota with it).
    pub fn remove_counted_with(
        &mut self,
        queue: Queue,
        id: i64,
        counters: &[(&str, i64)],
        also: impl FnOnce(&Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        let tx = self.transaction()?;
        tx.execute(&format!("DELETE FROM {} WHERE id = ?1", queue.table()), [id])?;
        for (name, by) in counters {
            bump(&tx, name, *by)?;
        }
        also(&tx)?;
        tx.commit()?;
        Ok(())
    }

    // --- sizes, for status ---

    pub fn count(&self, table: &str) -> Result<i64> {
        debug_assert!(["replay", "pool", "parts", "exitq", "blocklist"].contains(&table));
        Ok(self.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
    }

    pub fn held_sets(&self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT count(DISTINCT mixtasy_id) FROM parts", [], |r| r.get(0))?)
    }
}

/// The tables whose rows are messages waiting to leave: they get random ids (`random_id`)
/// and leave one row at a time, counted (`State::remove_counted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `pool`: wire mails and finals waiting for the pool to draw them.
    Pool,
    /// `exitq`: drawn originals and the mix's own notices waiting for delivery.
    Exit,
    /// `outbox`: the nym server's mail waiting for its channel.
    Outbox,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Queue::Pool => "pool",
            Queue::Exit => "exitq",
            Queue::Outbox => "outbox",
        }
    }
}

/// A random row id not yet used in `queue`, for an insert in the same transaction:
/// SQLite's own ids are max+1, which would number rows in arrival order and store them in
/// that order. A collision (2^-64 a pair) just draws again.
pub fn random_id(conn: &Connection, queue: Queue, rng: &mut impl rand::Rng) -> Result<i64> {
    let table = queue.table();
    loop {
        let id: i64 = rng.random();
        let used: bool =
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1)"), [id], |r| r.get(0))?;
        if !used {
            return Ok(id);
        }
    }
}

/// Adds `by` to a counter, inside the caller's transaction when one is open on `conn`.
pub fn bump(conn: &Connection, name: &str, by: i64) -> Result<()> {
    if by != 0 {
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2",
            params![name, by],
        )?;
    }
    Ok(())
}

/// Finishes what a crash interrupted: every spool file whose fate committed (a `done` row)
/// but which is still in the spool gets its action now, then the ledger is emptied.
pub fn finish_pending(state: &mut State, spool: &Spool) -> Result<()> {
    let pending = state.pending_actions()?;
    if pending.is_empty() {
        return Ok(());
    }
    let present: std::collections::HashMap<String, std::path::PathBuf> =
        spool.list()?.into_iter().map(|e| (e.source, e.path)).collect();
    for (source, action) in pending {
        if let Some(path) = present.get(&source) {
            act(spool, path, action)?;
        }
    }
    spool.sync()?;
    state.clear_done()
}

/// Does what the ledger says to one spool file.
pub fn act(spool: &Spool, path: &Path, action: Action) -> Result<()> {
    match action {
        Action::Remove => spool.remove(path),
        Action::ToOperator => spool.to_operator(path),
        Action::Quarantine => spool.quarantine(path),
    }
}

/// Records that a spool file's fate committed.
pub fn record_done(tx: &Transaction<'_>, source: &str, action: Action) -> Result<()> {
    tx.execute("INSERT OR REPLACE INTO done (source, action) VALUES (?1, ?2)", params![source, action as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn migrations_and_counters() {
        let mut s = State::in_memory().unwrap();
        let tx = s.transaction().unwrap();
        bump(&tx, "drop.malformed", 2).unwrap();
        bump(&tx, "drop.malformed", 1).unwrap();
        record_done(&tx, "abc", Action::ToOperator).unwrap();
        tx.commit().unwrap();
        assert_eq!(s.counter("drop.malformed").unwrap(), 3);
        assert_eq!(s.pending_actions().unwrap(), vec![("abc".to_string(), Action::ToOperator)]);
        s.clear_done().unwrap();
        assert!(s.pending_actions().unwrap().is_empty());
        s.set_meta("last_round", 5).unwrap();
        s.set_meta("last_round", 6).unwrap();
        assert_eq!(s.meta("last_round").unwrap(), Some(6));
    }

    #[test]
    fn random_ids_skip_used_ones() {
        use rand::SeedableRng;
        let mut s = State::in_memory().unwrap();
        let first: i64 = rand::rngs::StdRng::seed_from_u64(7).random();
        let tx = s.transaction().unwrap();
        tx.execute("INSERT INTO pool (id, rcpt, mail) VALUES (?1, '', x'00')", [first]).unwrap();
        let id = random_id(&tx, Queue::Pool, &mut rand::rngs::StdRng::seed_from_u64(7)).unwrap();
        assert_ne!(id, first, "a used id is drawn again");
    }

    /// A database of schema 3 (sequential ids) is re-keyed by migration 4.
    #[test]
    fn migration_4_rekeys_old_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        for m in &MIGRATIONS[..3] {
            tx.execute_batch(m).unwrap();
        }
        tx.pragma_update(None, "user_version", 3).unwrap();
        for i in 0..50 {
            tx.execute("INSERT INTO pool (rcpt, mail) VALUES ('mixtasy@x.test', ?1)", [vec![i as u8]]).unwrap();
        }
        tx.commit().unwrap();
        let s = State::setup(conn, MIGRATIONS).unwrap();
        let ids: Vec<i64> = s
            .conn()
            .prepare("SELECT id FROM pool")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.iter().any(|&i| !(1..=50).contains(&i)), "old sequential ids kept: {ids:?}");
        assert_eq!(s.count("pool").unwrap(), 50);
    }

    #[test]
    fn reopening_keeps_data_and_refuses_newer_schema() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.sqlite");
        {
            let mut s = State::open(&p).unwrap();
            let tx = s.transaction().unwrap();
            bump(&tx, "x", 1).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(State::open(&p).unwrap().counter("x").unwrap(), 1);
        Connection::open(&p).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(State::open(&p).is_err());
    }
}
