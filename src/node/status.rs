//! `mixtasyd status`: what the node holds and what it has done, in counts only (no
//! addresses, ids, hashes, sizes or per-message times).

use std::time::SystemTime;

use anyhow::Result;

use crate::batch::spool::Spool;
use crate::batch::state::{from_unix, State};
use crate::mixes::keys;
use crate::node::daily::{Since, Today};
use crate::node::home::NodeHome;
use crate::util::clock::utc;

/// The version of `status --json`'s format: raised when a field changes meaning or goes
/// away (adding a field does not raise it).
pub const JSON_FORMAT: u32 = 1;

/// A round older than this means the timer is not running (it runs every 15 minutes).
const ROUND_OVERDUE: i64 = 3600;

/// A last round later than now by more than this means the clock went back (less may be a
/// round that started while `status` was starting).
const CLOCK_SLACK: i64 = 300;

pub struct Status {
    /// What is wrong, worst first; empty: healthy.
    pub problems: Vec<String>,
    /// Not wrong, but why mail may not leave yet (the pool waits for cover).
    pub waiting: Vec<String>,
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
    /// Totals since the state was created.
    pub counters: Vec<(String, i64)>,
    /// The UTC day of `now`, `YYYY-MM-DD`.
    pub date: String,
    /// How much each counter rose today (`daily`).
    pub today: Today,
    /// The entropy and delay the last days' recorded rates lead to (`metrics::expected`).
    pub expected: Option<crate::node::metrics::Expected>,
}

pub fn collect(home: &NodeHome, now: SystemTime) -> Result<Status> {
    let config = home.resolved_config()?;
    let cert = home.cert()?;
    let state = State::open(&home.state_path())?;
    let spool = Spool::open(&config.maildir).ok();
    let counters = state.counters()?;
    let today = crate::node::daily::today(&state, now, &counters)?;
    let spool_files = spool.as_ref().and_then(|s| s.walk().ok()).map_or(0, |w| w.count());
    let taken = counters.iter().any(|(n, v)| n == "intake.taken" && *v > 0);
    let secret: Vec<_> = cert.keys().subkeys().secret().map(|k| k.key().fingerprint()).collect();
    let mut s = Status {
        problems: Vec::new(),
        waiting: Vec::new(),
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
            let mut v: Vec<_> = keys::encryption_subkeys(&cert)
                .into_iter()
                .map(|(k, v)| (v.created, v.expires, secret.contains(&k.fingerprint())))
                .collect();
            v.sort();
            v
        },
        counters,
        date: crate::util::clock::date(now),
        today,
        expected: crate::node::metrics::expected(&state, &config)?,
    };
    s.judge(&config, &state, now)?;
    Ok(s)
}

impl Status {
    /// The verdict: what keeps the node from mixing, then why mail may be waiting.
    fn judge(&mut self, config: &crate::node::config::Config, state: &State, now: SystemTime) -> Result<()> {
        let now_s = crate::batch::state::unix(now);
        match self.last_round {
            None => self.problems.push("no round has run yet: start the timer (mixtasyd(8), TIMER)".into()),
            Some(t) => {
                let ago = now_s - crate::batch::state::unix(t);
                if ago > ROUND_OVERDUE {
                    self.problems.push(format!(
                        "the last round was {}h {}m ago: is the timer running? (it runs one every 15 minutes)",
                        ago / 3600,
                        ago / 60 % 60
                    ));
                } else if -ago > CLOCK_SLACK {
                    self.problems.push(format!(
                        "the clock reads {}, before the last round at {}: it went back (replay hashes and subkeys expire by the clock)",
                        utc(now),
                        utc(t)
                    ));
                }
            }
        }
        let kind = state.meta("transport_failed_kind")?.unwrap_or(0);
        if kind != 0 {
            self.problems.push(format!(
                "the last round could not hand mail to the MTA: {} (the round's line says why; `mixtasyd check` probes sendmail)",
                crate::batch::transport::TransportError::name_of_code(kind)
            ));
        }
        // The newest subkey with its secret, and whether a successor is due and missing.
        let newest = self.subkeys.iter().filter(|k| k.2).filter_map(|k| k.1).max();
        let day = config.subkey_validity.as_secs() as i64 / 4;
        match newest {
            None => self
                .problems
                .push("no subkey with its secret: nothing can be decrypted; run `mixtasyd key rotate`".into()),
            Some(e) if crate::batch::state::unix(e) <= now_s => self
                .problems
                .push("every subkey has expired: run a round or `mixtasyd key rotate`, then publish".into()),
            Some(e) if crate::batch::state::unix(e) - now_s < day => self.problems.push(format!(
                "the newest subkey expires at {} and has no successor: rounds are not rotating the key",
                utc(e)
            )),
            _ => {}
        }
        if self.quarantined > 0 {
            self.problems
                .push(format!("{} file(s) in .quarantine: peeling them crashed, a bug to report", self.quarantined));
        }
        let fires = config.min_pool + config.threshold;
        if (self.pool as u64) < fires {
            self.waiting.push(format!(
                "the pool holds {} message(s) and sends when it holds {fires} (min_pool {} + threshold {}): {} more, from traffic or dummies",
                self.pool,
                config.min_pool,
                config.threshold,
                fires - self.pool as u64
            ));
        }
        Ok(())
    }

    /// `healthy`, or `unhealthy`, for the first line and for monitoring.
    pub fn verdict(&self) -> &'static str {
        if self.problems.is_empty() {
            "healthy"
        } else {
            "unhealthy"
        }
    }
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
        let mut o = format!("{}\n", self.verdict());
        for p in &self.problems {
            o += &format!("  problem: {p}\n");
        }
        for w in &self.waiting {
            o += &format!("  waiting: {w}\n");
        }
        o += &self.today_text();
        o += &format!("mix {} ({})\n", self.address, self.modes);
        o += &format!("spool        {}\npool         {}\nexit queue   {}\nheld parts   {} ({} messages)\nreplay cache {}\nblocklist    {}\noperator     {}\nquarantine   {}\n",
            self.spool, self.pool, self.exit_queue, self.held_parts, self.held_sets, self.replay_entries, self.blocked, self.operator_mail, self.quarantined);
        if !self.received_mail {
            o += "mail         none received yet (the MTA creates the Maildir at its first delivery)\n";
        }
        o += &format!("last round   {}\n", self.last_round.map_or("never".into(), utc));
        if let Some(gap) = self.last_gap {
            o += &format!("gap before   {}h {}m (time between the last two rounds)\n", gap / 3600, gap / 60 % 60);
        }
        o += &format!(
            "last publish {}\nlast fetch   {}\n",
            self.last_publish.map_or("never".into(), utc),
            self.last_discovery.map_or("never".into(), utc)
        );
        // Subkeys still held; the expired ones (one a day) as a count, or the list would grow.
        for (created, expires, _) in self.subkeys.iter().filter(|k| k.2) {
            o += &format!("subkey       created {}, expires {}\n", utc(*created), expires.map_or("never".into(), utc));
        }
        let destroyed = self.subkeys.iter().filter(|k| !k.2).count();
        if destroyed > 0 {
            o += &format!("expired      {destroyed} subkey(s), secrets destroyed\n");
        }
        if let Some(e) = &self.expected {
            let r = &e.report;
            o += &format!(
                "expected     entropy {:.2} bits ({:.2} to an outside observer), delay mean {} (95% under {}), from {:.1} messages a round over the last {} rounds (mixtasyd simulate --recorded)\n",
                r.entropy,
                r.entropy_outside,
                crate::node::simulate::minutes(r.delay_mean),
                crate::node::simulate::minutes(r.delay_p95),
                e.arrivals,
                e.rounds
            );
        }
        o += "counters since init:\n";
        for (name, v) in &self.counters {
            o += &format!("  {name:<24} {v}\n");
        }
        o
    }

    /// Today's section: what it counts from, then the counters that rose (all would repeat
    /// the totals' names with zeros).
    fn today_text(&self) -> String {
        let from = match self.today.since {
            Since::Midnight => "since 00:00".to_string(),
            Since::FirstRound => "since the first round today; earlier counts are in the totals only".to_string(),
            Since::ClockBehind { newest_day } => format!(
                "the clock is behind the newest daily snapshot, of {}: counts since that snapshot",
                crate::util::clock::date(from_unix(newest_day * 86400))
            ),
            Since::Init => "no daily snapshot yet (no round since daily figures began): counts since init".to_string(),
        };
        let mut o = format!("today {} UTC ({from}):\n", self.date);
        let moved: Vec<_> = self.today.counters.iter().filter(|(_, v)| *v != 0).collect();
        if moved.is_empty() {
            o += "  nothing counted yet\n";
        }
        for (name, v) in moved {
            o += &format!("  {name:<24} {v}\n");
        }
        o
    }

    pub fn json(&self) -> String {
        let object =
            |c: &[(String, i64)]| c.iter().map(|(n, v)| format!("{}:{v}", json_str(n))).collect::<Vec<_>>().join(",");
        let subkeys: Vec<String> = self
            .subkeys
            .iter()
            .map(|(c, e, s)| {
                format!(
                    "{{\"created\":{},\"expires\":{},\"secret\":{s}}}",
                    secs(*c),
                    e.map_or("null".into(), |e| secs(e).to_string())
                )
            })
            .collect();
        let expected = self.expected.as_ref().map_or("null".into(), |e| {
            format!("{{\"rounds\":{},\"arrivals_per_round\":{:.3},\"entropy_bits\":{:.3},\"entropy_outside_bits\":{:.3},\"delay_mean_seconds\":{:.0},\"delay_p95_seconds\":{:.0}}}", e.rounds, e.arrivals, e.report.entropy, e.report.entropy_outside, e.report.delay_mean, e.report.delay_p95)
        });
        let list = |v: &[String]| v.iter().map(|p| json_str(p)).collect::<Vec<_>>().join(",");
        format!(
            "{{\"format\":{JSON_FORMAT},\"verdict\":{},\"problems\":[{}],\"waiting\":[{}],\"address\":{},\"modes\":{},\"spool\":{},\"received_mail\":{},\"pool\":{},\"exit_queue\":{},\"held_parts\":{},\"held_sets\":{},\"replay_entries\":{},\"blocked\":{},\"operator_mail\":{},\"quarantined\":{},\"last_round\":{},\"last_gap\":{},\"last_publish\":{},\"last_discovery\":{},\"subkeys\":[{}],\"expected\":{},\"counters\":{{{}}},\"today\":{{\"date\":{},\"since\":{},\"counters\":{{{}}}}}}}",
            json_str(self.verdict()), list(&self.problems), list(&self.waiting), json_str(&self.address), json_str(&self.modes), self.spool, self.received_mail, self.pool, self.exit_queue, self.held_parts, self.held_sets,
            self.replay_entries, self.blocked, self.operator_mail, self.quarantined, self.last_round.map_or("null".into(), |t| secs(t).to_string()), self.last_gap.map_or("null".into(), |g| g.to_string()), self.last_publish.map_or("null".into(), |t| secs(t).to_string()), self.last_discovery.map_or("null".into(), |t| secs(t).to_string()), subkeys.join(","), expected, object(&self.counters),
            json_str(&self.date), json_str(self.today.since.name()), object(&self.today.counters)
        )
    }
}
