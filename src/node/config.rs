//! `mixtasyd.toml`: one table of settings, from which come the commented default file
//! `init` writes, the validation `load` does, and the manual's list.
//!
//! Every setting is documented as `name (default)` plus why. An unknown name is an error
//! that names the file and line: a typo must not silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::batch::settings::{self, ConfigError, Setting};
use crate::mixes::address::MixAddress;
use crate::mixes::modes::Modes;

/// Every setting of `mixtasyd.toml`, in file order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "address",
        default: None,
        doc: "The mix address, mixtasy@FQDN. Mail for it is mix traffic; it is the From of
              everything this mix sends. Set by `init`, and part of the key's user id.",
    },
    Setting {
        name: "modes",
        default: None,
        doc: "Operation modes, comma separated: middleman (forward intermediate messages),
              exitpublic (deliver to anyone), exitprivate (deliver to local_domains only).
              Set by `init` and published in the key's user id: change both together.",
    },
    Setting {
        name: "maildir",
        default: Some("\"Maildir\""),
        doc: "The Maildir the MTA delivers mail for the mix address into (relative paths are
              relative to this home); if its parent exists, a round creates what is missing of it (0700), since the
              MTA may make it only at its first delivery. Every file in new/ and cur/ is taken by each round;
              mail that is not mix traffic is moved to its .operator folder, never deleted.",
    },
    Setting {
        name: "local_domains",
        default: Some("[]"),
        doc: "Domains an exitprivate mix delivers to (its own mailboxes). Recipients in other
              domains are dropped and counted. Ignored by an exitpublic mix.",
    },
    Setting {
        name: "min_pool",
        default: Some("47"),
        doc: "f_min of the timed dynamic pool: messages always kept back. Mixmaster ships 45,
              Debian 25, Mixminion 5 (and calls less insecure). 47 with the dummies below: more
              entropy than Mixmaster's shipped settings at no more mean delay from 5 to 50
              messages a round (mixtasyd simulate; the operator's guide has the table).",
    },
    Setting {
        name: "threshold",
        default: Some("0"),
        doc: "n of the timed dynamic pool: nothing leaves unless the pool holds at least
              n + f_min messages, so a trickle of single messages waits for cover. 0: the
              dummies below keep the pool moving.",
    },
    Setting {
        name: "rate",
        default: Some("1.0"),
        doc: "frac of the timed dynamic pool: when it fires, (m - f_min) * frac random messages
              leave (rounded down). 1: all over f_min, as Mixmaster sends below its 65 % cap;
              a smaller frac adds (1 - frac)/frac rounds of delay at any traffic (Debian's 25 %:
              3 rounds). Against a flood the arrival-triggered dummies keep the pool unknown.",
    },
    Setting {
        name: "dummy_time_p",
        default: Some("0.91"),
        doc: "Time-triggered dummies (thesis 6.6): before each round, k dummies join the pool,
              k geometric with P(k) = (1-p) p^k like Mixmaster's (mean p/(1-p): 10 a round;
              Mixmaster's OUTDUMMYP 90 gives 9). They are the cover an outside observer cannot
              tell from mail, and keep the pool moving when traffic is low. About 960 dummy
              mails a day: on a host with a mail quota, lower it (0.5: 1 a round) and keep
              dummy_starved_p. 0 turns them off.",
    },
    Setting {
        name: "dummy_flush_p",
        default: Some("0.3"),
        doc: "Flush-triggered dummies: with every non-empty send, k more go out at once, k
              geometric as above, so a flooded pool still emits messages unknown to the flooder.",
    },
    Setting {
        name: "dummy_arrival_p",
        default: Some("0.15"),
        doc: "Arrival-triggered dummies: for each message that enters the pool, k more dummies
              join it, k geometric as above (mean 0.18 a message; Mixmaster's INDUMMYP 10 gives
              0.11). Cover that grows with traffic, and with a flood. 0 turns them off.",
    },
    Setting {
        name: "dummy_starved_p",
        default: Some("0.75"),
        doc: "Time-triggered dummies while the pool is starved: when, with the round's arrivals, it
              holds fewer than min_pool + threshold (it would not fire), k is geometric with this p
              instead of dummy_time_p (mean 3 a round), so that a trickle of mail reaches its exit
              before its 2-day subkeys expire. It matters when dummy_time_p is lowered below it (a
              mail quota): with dummy_time_p 0.3, a 4-hop message at 1 message a round does so
              99.9 % of the time by simulation (95 % without). 0 (or at most dummy_time_p) turns
              it off.",
    },
    Setting {
        name: "max_size",
        default: Some("2097152"),
        doc: "Largest original (bytes) an exit delivers; larger reassembled messages are dropped
              and counted. The sender's tool refuses to create larger ones by default.",
    },
    Setting {
        name: "max_parts",
        default: Some("128"),
        doc: "Most parts one multipart message may have (about 2.5 MB); parts claiming more are
              dropped, so nobody can make the exit hold an endless set.",
    },
    Setting {
        name: "max_recipients",
        default: Some("5"),
        doc: "Most recipients (To and Cc; Bcc is dropped) one delivered message may have, like
              Mixmaster's MAXRECIPIENTS: the rest are dropped and counted.",
    },
    Setting {
        name: "recipient_quota",
        default: Some("100"),
        doc: "Most deliveries to one recipient address in 24 hours, like nymserv's daily limit,
              so the exit cannot be used to mail-bomb anyone. Counted by salted hash, kept one
              day. Block confirmations count too. 0: no quota.",
    },
    Setting {
        name: "over_quota",
        default: Some("\"wait\""),
        doc: "What happens to mail for a recipient over `recipient_quota`: \"wait\" keeps the
              whole mail queued until the quota has room again (or `exit_giveup`), \"drop\"
              leaves that recipient out. Either way it is counted.",
    },
    Setting {
        name: "part_expiry",
        default: Some("\"7d\""),
        doc: "How long the parts of an incomplete multipart message are held before they are
              dropped and counted. Also how long (rounded up to a day) an exit remembers the
              hashed Mixtasy-IDs it took, so that copies (mixtasy --copies) arrive once.",
    },
    Setting {
        name: "exit_giveup",
        default: Some("\"5d\""),
        doc: "How long an exit retries delivering an original whose transport keeps failing,
              counted from when the pool drew it, like an MTA's maximal_queue_lifetime; then
              it is dropped and counted.",
    },
    Setting {
        name: "transport",
        default: Some("\"sendmail\""),
        doc: "How mail leaves: \"sendmail\" (the program below, envelope sender = the mix
              address), or \"maildir:ROOT\" (labs, tests, the demo: each mail is delivered into
              the Maildir ROOT/<recipient address>/, created if needed).",
    },
    Setting {
        name: "sendmail",
        default: Some("\"/usr/sbin/sendmail\""),
        doc: "The sendmail program of the MTA. Any non-zero exit (75 EX_TEMPFAIL included) keeps
              the message for the next round.",
    },
    Setting {
        name: "sendmail_timeout",
        default: Some("\"2m\""),
        doc: "A sendmail that has not finished by then is killed and counts as a failure, so a
              hung MTA cannot stall the timer.",
    },
    Setting {
        name: "operator",
        default: Some("\"\""),
        doc: "Where recipients reach the operator, named in the header every delivered message
              carries. Empty: postmaster@ the mix's domain.",
    },
    Setting {
        name: "keyserver",
        default: Some("\"\""),
        doc: "An HKP keyserver, hkp://host[:port] (port 11371 by default). Each rotation publishes
              the public key there (a failed upload is retried next round, never delaying
              mixing), and the node discovers the other mixes there for its dummies. Empty: none.",
    },
    Setting {
        name: "discovery_interval",
        default: Some("\"6h\""),
        doc: "How often a round refreshes the node's directory from the keyserver.",
    },
    Setting {
        name: "subkey_validity",
        default: Some("\"2d\""),
        doc: "Lifetime of each encryption subkey. The thesis fixes two days: short enough for
              forward secrecy and a small replay cache, long enough to cross the network.",
    },
    Setting {
        name: "clock_skew",
        default: Some("\"1h\""),
        doc: "How far in the future a subkey's creation may lie and still decrypt: senders and
              mixes with clocks a little ahead of ours must not lose mail. Never extends expiry.",
    },
    Setting {
        name: "anonymous_from",
        default: Some("\"\""),
        doc: "The From of every original this exit delivers: the sender's own From never leaves
              (a display name the sender gave is kept, marked as anonymous). Empty:
              nobody@ the mix's domain.",
    },
    Setting {
        name: "block_confirmations_per_day",
        default: Some("50"),
        doc: "Most block confirmations the exit mails in 24 hours, whoever asks: forged
              destination-block requests cannot turn it into a mail cannon. Requests beyond
              it are dropped and counted; one address has at most one confirmation waiting.",
    },
    Setting {
        name: "subaddress_delimiter",
        default: Some("\"+\""),
        doc: "What separates a subaddress (bob+tag@) from the mailbox in local parts: a blocked
              address is blocked with every subaddress. Empty: no subaddresses.",
    },
    Setting {
        name: "max_exit_queue",
        default: Some("2000"),
        doc: "Most entries in the exit queue (originals the pool drew that wait for delivery,
              and the mix's own notices). Past it the oldest leave, counted: a transport down
              for days or a flood never grows the state without bound.",
    },
    Setting {
        name: "max_held_parts",
        default: Some("5000"),
        doc: "Most multipart parts held waiting for their set (about 100 MB). Past it the
              sets that began longest ago are dropped whole, counted.",
    },
    Setting {
        name: "max_operator",
        default: Some("1000"),
        doc: "Most mails kept in the Maildir's .operator folder. Past it the oldest are
              deleted, counted: mail anyone can send to the mix address must not fill the disk.",
    },
    Setting {
        name: "sendmail_round_limit",
        default: Some("\"5m\""),
        doc: "Most time one round spends in sendmails that fail (time out, exit non-zero). Once
              used up, the rest of the round's mail stays queued for the next round at once,
              so a hung or refusing MTA cannot hold a round past the unit's 30-minute timeout
              (a pool of 30 at a 2-minute sendmail_timeout would take an hour).",
    },
    Setting {
        name: "metrics_file",
        default: Some("\"\""),
        doc: "A file each round replaces (atomically) with the node's counters, queue sizes and
              expected entropy and delay in the Prometheus text format, for node_exporter's
              textfile collector (relative paths are relative to this home; mode 0644, counts
              only). Empty: none.",
    },
];

pub use crate::batch::transport::TransportKind;

/// The settings, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub address: MixAddress,
    pub modes: Modes,
    pub maildir: PathBuf,
    pub local_domains: Vec<String>,
    pub min_pool: u64,
    pub threshold: u64,
    pub rate: f64,
    pub dummy_time_p: f64,
    pub dummy_flush_p: f64,
    pub dummy_starved_p: f64,
    pub dummy_arrival_p: f64,
    pub max_size: u64,
    pub max_parts: u64,
    pub max_recipients: u64,
    pub recipient_quota: u64,
    pub over_quota: crate::abuse::quota::OverQuota,
    pub part_expiry: Duration,
    pub exit_giveup: Duration,
    pub transport: TransportKind,
    pub sendmail: PathBuf,
    pub sendmail_timeout: Duration,
    pub operator: String,
    pub keyserver: Option<String>,
    pub discovery_interval: Duration,
    pub subkey_validity: Duration,
    pub clock_skew: Duration,
    pub anonymous_from: String,
    pub block_confirmations_per_day: u64,
    pub subaddress_delimiter: String,
    pub max_exit_queue: u64,
    pub max_held_parts: u64,
    pub max_operator: u64,
    pub sendmail_round_limit: Duration,
    pub metrics_file: Option<PathBuf>,
}

/// The commented file `init` writes: every setting with its default and why.
pub fn default_file(address: &MixAddress, modes: &Modes) -> String {
    settings::commented_file("mixtasyd.toml: settings of one Mixtasy mix node. See mixtasyd.toml(5).", SETTINGS, |s| {
        match s.name {
            "address" => Some(settings::quote(address.as_str())),
            "modes" => Some(settings::quote(&modes.to_string())),
            _ => None,
        }
    })
}

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    settings::load(path, parse)
}

/// Validates config text. Relative paths stay relative: the caller resolves them against
/// the home (`Config::resolve`).
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let r = settings::Reader::new(text, SETTINGS)?;
    let local_domains: Vec<String> = r
        .strings("local_domains", "domain names", crate::mixes::address::valid_fqdn)?
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let transport = TransportKind::parse(&r.string("transport")?)
        .ok_or_else(|| r.error("transport", "must be \"sendmail\" or \"maildir:ROOT\""))?;
    let address = MixAddress::parse(&r.string("address")?).map_err(|e| r.error("address", e))?;
    let operator = match r.string("operator")? {
        o if o.is_empty() => format!("postmaster@{}", address.fqdn()),
        o if o.contains('@') && !o.contains(['\r', '\n']) => o,
        _ => return Err(r.error("operator", "must be an email address")),
    };
    let config = Config {
        modes: Modes::parse(&r.string("modes")?).map_err(|e| r.error("modes", e))?,
        maildir: PathBuf::from(r.string("maildir")?),
        local_domains,
        min_pool: r.int("min_pool")?,
        threshold: r.int("threshold")?,
        rate: r.fraction("rate")?,
        dummy_time_p: r.fraction("dummy_time_p")?,
        dummy_flush_p: r.fraction("dummy_flush_p")?,
        dummy_starved_p: r.fraction("dummy_starved_p")?,
        dummy_arrival_p: r.fraction("dummy_arrival_p")?,
        max_size: r.int("max_size")?,
        max_parts: r.int("max_parts")?,
        max_recipients: r.int("max_recipients")?,
        recipient_quota: r.int("recipient_quota")?,
        over_quota: match r.string("over_quota")?.as_str() {
            "wait" => crate::abuse::quota::OverQuota::Wait,
            "drop" => crate::abuse::quota::OverQuota::Drop,
            _ => return Err(r.error("over_quota", "must be \"wait\" or \"drop\"")),
        },
        part_expiry: r.duration("part_expiry")?,
        exit_giveup: r.duration("exit_giveup")?,
        transport,
        sendmail: PathBuf::from(r.string("sendmail")?),
        sendmail_timeout: r.duration("sendmail_timeout")?,
        operator,
        keyserver: match r.string("keyserver")? {
            k if k.is_empty() => None,
            k => {
                crate::mixes::keyserver::Keyserver::new(&k, Duration::from_secs(1))
                    .map_err(|e| r.error("keyserver", e))?;
                Some(k)
            }
        },
        discovery_interval: r.duration("discovery_interval")?,
        subkey_validity: r.duration("subkey_validity")?,
        clock_skew: r.duration("clock_skew")?,
        anonymous_from: match r.string("anonymous_from")? {
            f if f.is_empty() => format!("nobody@{}", address.fqdn()),
            f if crate::mixes::address::plausible(&f) => f,
            _ => return Err(r.error("anonymous_from", "must be an email address, local@domain")),
        },
        block_confirmations_per_day: r.int("block_confirmations_per_day")?,
        subaddress_delimiter: match r.string("subaddress_delimiter")? {
            d if d.chars().count() <= 1 && !d.contains(['@', '"', ' ']) => d,
            _ => return Err(r.error("subaddress_delimiter", "must be one character (not @), or empty")),
        },
        max_exit_queue: r.int("max_exit_queue")?,
        max_held_parts: r.int("max_held_parts")?,
        max_operator: r.int("max_operator")?,
        sendmail_round_limit: r.duration("sendmail_round_limit")?,
        metrics_file: Some(PathBuf::from(r.string("metrics_file")?)).filter(|p| !p.as_os_str().is_empty()),
        address,
    };
    let dummies = [
        ("dummy_time_p", config.dummy_time_p),
        ("dummy_flush_p", config.dummy_flush_p),
        ("dummy_starved_p", config.dummy_starved_p),
        ("dummy_arrival_p", config.dummy_arrival_p),
    ];
    if let Some((name, _)) = dummies.iter().find(|(_, p)| *p >= 1.0) {
        return Err(r.error_plain(name, "dummy probabilities must be below 1 (1 would mean endless dummies)"));
    }
    Ok(config)
}

impl Config {
    /// The transport these settings name.
    pub fn transport(&self) -> crate::batch::transport::Transport {
        crate::batch::transport::Transport::new(&self.transport, &self.sendmail, self.sendmail_timeout)
    }

    /// Makes relative paths relative to the home.
    pub fn resolve(mut self, home: &Path) -> Self {
        if self.maildir.is_relative() {
            self.maildir = home.join(&self.maildir);
        }
        if let Some(m) = self.metrics_file.as_mut().filter(|m| m.is_relative()) {
            *m = home.join(&*m);
        }
        if let TransportKind::Maildir(root) = &self.transport {
            if root.is_relative() {
                self.transport = TransportKind::Maildir(home.join(root));
            }
        }
        self
    }
}

/// Where the node's home is: `--home`, else `$MIXTASYD_HOME`, else
/// `$XDG_STATE_HOME/mixtasyd`, else `~/.local/state/mixtasyd`.
pub fn node_home(explicit: Option<PathBuf>) -> Result<PathBuf> {
    resolve_home(explicit, "MIXTASYD_HOME", "XDG_STATE_HOME", ".local/state", "mixtasyd")
}

/// Where the sender's home is: `--home`, else `$MIXTASY_HOME`, else
/// `$XDG_DATA_HOME/mixtasy`, else `~/.local/share/mixtasy`.
pub fn client_home(explicit: Option<PathBuf>) -> Result<PathBuf> {
    resolve_home(explicit, "MIXTASY_HOME", "XDG_DATA_HOME", ".local/share", "mixtasy")
}

/// Where the pinger's home is: `--home`, else `$MIXTASY_PINGER_HOME`, else
/// `$XDG_STATE_HOME/mixtasy-pinger`, else `~/.local/state/mixtasy-pinger`.
pub fn pinger_home(explicit: Option<PathBuf>) -> Result<PathBuf> {
    resolve_home(explicit, "MIXTASY_PINGER_HOME", "XDG_STATE_HOME", ".local/state", "mixtasy-pinger")
}

fn resolve_home(explicit: Option<PathBuf>, var: &str, xdg: &str, fallback: &str, name: &str) -> Result<PathBuf> {
    let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(p) = explicit.or_else(|| nonempty(var)) {
        return Ok(p);
    }
    if let Some(x) = nonempty(xdg) {
        return Ok(x.join(name));
    }
    let home = nonempty("HOME").ok_or_else(|| anyhow!("no home directory: set --home, ${var} or $HOME"))?;
    Ok(home.join(fallback).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        let a = MixAddress::for_fqdn("mix.test").unwrap();
        let m = Modes::parse("middleman,exitpublic").unwrap();
        let text = default_file(&a, &m);
        for s in SETTINGS {
            assert!(text.contains(&format!("\n{} = ", s.name)), "{} missing from the default file", s.name);
        }
        let c = parse(&text).unwrap();
        assert_eq!(c.address, a);
        assert_eq!(c.modes, m);
        assert_eq!(c.subkey_validity, Duration::from_secs(2 * 86400));
        assert_eq!(c.clock_skew, Duration::from_secs(3600));
        assert_eq!((c.min_pool, c.threshold, c.rate), (47, 0, 1.0));
        assert_eq!((c.dummy_time_p, c.dummy_arrival_p, c.dummy_starved_p), (0.91, 0.15, 0.75));
        assert_eq!(c.transport, TransportKind::Sendmail);
        assert_eq!(c.operator, "postmaster@mix.test");
        assert!(c.local_domains.is_empty());
        assert_eq!(
            (c.anonymous_from.as_str(), c.block_confirmations_per_day, c.subaddress_delimiter.as_str()),
            ("nobody@mix.test", 50, "+")
        );
        assert_eq!((c.max_exit_queue, c.max_held_parts, c.max_operator), (2000, 5000, 1000));
    }

    #[test]
    fn typed_values() {
        let base = "address = \"mixtasy@a.test\"\nmodes = \"middleman\"\n";
        let c = parse(&format!("{base}transport = \"maildir:out\"\nrate = 1\nlocal_domains = [\"A.test\"]\n")).unwrap();
        assert_eq!(c.transport, TransportKind::Maildir("out".into()));
        assert_eq!(c.rate, 1.0);
        assert_eq!(c.local_domains, ["a.test"]);
        assert_eq!(c.resolve(Path::new("/h")).transport, TransportKind::Maildir("/h/out".into()));
        assert!(parse(&format!("{base}rate = 1.5\n")).unwrap_err().to_string().starts_with("3: `rate`"));
        assert!(parse(&format!("{base}min_pool = -1\n")).unwrap_err().to_string().starts_with("3: `min_pool`"));
        assert!(parse(&format!("{base}transport = \"smtp\"\n")).unwrap_err().to_string().starts_with("3: `transport`"));
        assert!(parse(&format!("{base}dummy_time_p = 1\n")).is_err());
        assert!(parse(&format!("{base}dummy_starved_p = 1\n")).unwrap_err().to_string().contains("below 1"));
        assert!(parse(&format!("{base}anonymous_from = \"not an address\"\n"))
            .unwrap_err()
            .to_string()
            .starts_with("3: `anonymous_from`"));
        assert!(parse(&format!("{base}subaddress_delimiter = \"@\"\n"))
            .unwrap_err()
            .to_string()
            .starts_with("3: `subaddress_delimiter`"));
        assert_eq!(parse(&format!("{base}subaddress_delimiter = \"\"\n")).unwrap().subaddress_delimiter, "");
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("address = \"mixtasy@a.test\"\nmodes = \"middleman\"\nclok_skew = \"1h\"\n").unwrap_err();
        assert_eq!(err.to_string(), "3: unknown setting `clok_skew`");
        let err = parse("address = \"mixtasy@a.test\"\nmodes = \"middleman,warp\"\n").unwrap_err();
        assert!(err.to_string().starts_with("2: `modes`: unknown mode `warp`"), "{err}");
        let err = parse("address = \"mixtasy@a.test\"\nmodes = \"middleman\"\nclock_skew = \"soon\"\n").unwrap_err();
        assert!(err.to_string().starts_with("3: `clock_skew`"), "{err}");
        let err = parse("address = \"mixtasy@a.test\"\nmodes = [\n").unwrap_err();
        assert!(err.to_string().starts_with("2: ") || err.to_string().starts_with("3: "), "{err}");
        assert!(parse("modes = \"middleman\"\n").unwrap_err().to_string().contains("required setting `address`"));
    }
}
