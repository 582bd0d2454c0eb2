//! `mixtasyd status`: what the node holds and what it has done, in counts only (no
//! addresses, ids, hashes, sizes or per-message times).

use std::time::SystemTime;

use anyhow::Result;

use crate::clock::utc;
use crate::home::NodeHome;
use crate::keys;
use crate::spool::Spool;
use crate::state::{from_unix, State};

pub struct Status {
    pub address: String,
    pub modes: String,
    pub pool: i64,
    pub exit_queue: i64,
    pub held_parts: i64,
    pub held_sets: i64,
    pub replay_entries: i64,
    /// Addresses on the exit's blocklist.
    pub blocked: i64,
    pub operator_mail: usize,
    /// Files in `.quarantine`: peeling them panicked (a bug to report).
    pub quarantined: usize,
    pub spool: usize,
    /// Whether any mail ever reached the Maildir (it may not exist until the MTA's first
    /// delivery, which is no fault).
    pub received_mail: bool,
    pub last_round: Option<SystemTime>,
    /// Seconds between the last round and the one before it (a node that was off says so).
    pub last_gap: Option<i64>,
    pub last_publish: Option<SystemTime>,
    pub last_discovery: Option<SystemTime>,
    /// Creation and expiry of each encryption subkey, and whether its secret is held.
    pub subkeys: Vec<(SystemTime, Option<SystemTime>, bool)>,
    pub counters: Vec<(String, i64)>,
}

pub fn collect(home: &NodeHome) -> Result<Status> {
    let config = home.resolved_config()?;
    let cert = home.cert()?;
    let state = State::open(&home.state_path())?;
    let spool = Spool::open(&config.maildir).ok();
    let counters = state.counters()?;
    let spool_files = spool.as_ref().and_then(|s| s.walk().ok()).map_or(0, |w| w.count());
    let taken = counters.iter().any(|(n, v)| n == "intake.taken" && *v > 0);
    let secret: Vec<_> = cert.keys().subkeys().secret().map(|k| k.key().fingerprint()).collect();
    Ok(Status {
        address: config.address.to_string(),
        modes: config.modes.to_string(),
        pool: state.count("pool")?,
        exit_queue: state.count("exitq")?,
        held_parts: state.count("parts")?,
        held_sets: state.held_sets()?,
        replay_entries: state.count("replay")?,
        blocked: state.count("blocklist")?,
        operator_mail: spool.as_ref().map_or(0, |s| s.operator_count()),
        quarantined: spool.as_ref().map_or(0, |s| s.quarantine_count()),
        spool: spool_files,
        received_mail: taken || spool_files > 0,
        last_round: state.meta("last_round")?.map(from_unix),
        last_gap: state.meta("last_gap")?,
        last_publish: state.meta("last_publish")?.map(from_unix),
        last_discovery: state.meta("last_discovery")?.map(from_unix),
        subkeys: {
            let mut v: Vec<_> = keys::encryption_subkeys(&cert).into_iter().map(|(k, v)| (v.created, v.expires, secret.contains(&k.fingerprint()))).collect();
            v.sort();
            v
        },
        counters,
    })
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Status {
    pub fn text(&self) -> String {
        let mut o = format!("mix {} ({})\n", self.address, self.modes);
        o += &format!("spool        {}\npool         {}\nexit queue   {}\nheld parts   {} ({} messages)\nreplay cache {}\nblocklist    {}\noperator     {}\nquarantine   {}\n",
            self.spool, self.pool, self.exit_queue, self.held_parts, self.held_sets, self.replay_entries, self.blocked, self.operator_mail, self.quarantined);
        if !self.received_mail {
            o += "mail         none received yet (the MTA creates the Maildir at its first delivery)\n";
        }
        o += &format!("last round   {}\n", self.last_round.map_or("never".into(), utc));
        if let Some(gap) = self.last_gap {
            o += &format!("gap before   {}h {}m (time between the last two rounds)\n", gap / 3600, gap / 60 % 60);
        }
        o += &format!("last publish {}\nlast fetch   {}\n", self.last_publish.map_or("never".into(), utc), self.last_discovery.map_or("never".into(), utc));
        // Subkeys still held; the expired ones (one a day) as a count, or the list would grow.
        for (created, expires, _) in self.subkeys.iter().filter(|k| k.2) {
            o += &format!("subkey       created {}, expires {}\n", utc(*created), expires.map_or("never".into(), utc));
        }
        let destroyed = self.subkeys.iter().filter(|k| !k.2).count();
        if destroyed > 0 {
            o += &format!("expired      {destroyed} subkey(s), secrets destroyed\n");
        }
        o += "counters since init:\n";
        for (name, v) in &self.counters {
            o += &format!("  {name:<24} {v}\n");
        }
        o
    }

    pub fn json(&self) -> String {
        let counters: Vec<String> = self.counters.iter().map(|(n, v)| format!("{}:{v}", json_str(n))).collect();
        let subkeys: Vec<String> = self
            .subkeys
            .iter()
            .map(|(c, e, s)| format!("{{\"created\":{},\"expires\":{},\"secret\":{s}}}", secs(*c), e.map_or("null".into(), |e| secs(e).to_string())))
            .collect();
        format!(
            "{{\"address\":{},\"modes\":{},\"spool\":{},\"received_mail\":{},\"pool\":{},\"exit_queue\":{},\"held_parts\":{},\"held_sets\":{},\"replay_entries\":{},\"blocked\":{},\"operator_mail\":{},\"quarantined\":{},\"last_round\":{},\"last_gap\":{},\"last_publish\":{},\"last_discovery\":{},\"subkeys\":[{}],\"counters\":{{{}}}}}",
            json_str(&self.address), json_str(&self.modes), self.spool, self.received_mail, self.pool, self.exit_queue, self.held_parts, self.held_sets,
            self.replay_entries, self.blocked, self.operator_mail, self.quarantined, self.last_round.map_or("null".into(), |t| secs(t).to_string()), self.last_gap.map_or("null".into(), |g| g.to_string()), self.last_publish.map_or("null".into(), |t| secs(t).to_string()), self.last_discovery.map_or("null".into(), |t| secs(t).to_string()), subkeys.join(","), counters.join(",")
        )
    }
}
