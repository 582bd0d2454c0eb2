//! The nym server's settings: `HOME/mixtasy-nymd.toml`, documented in mixtasy-nymd(8).
//! Every setting has a default but `domain`; unknown settings are refused, so a typo is
//! an error, not a silently ignored line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::batch::settings::{self, ConfigError, Setting};
use crate::batch::transport::{Transport, TransportKind};

/// The local part that takes block requests and the replies to their confirmations
/// (`blocking`).
pub const BLOCK: &str = "block";
/// The local part of the envelope sender of everything the server sends (`blocking`).
pub const BOUNCES: &str = "bounces";

/// Local parts nobody may take: the server's own and the ones RFC 2142 gives to people.
pub const RESERVED: &[&str] = &[
    "config",
    "send",
    BLOCK,
    BOUNCES,
    "url",
    "confirm",
    "postmaster",
    "abuse",
    "root",
    "admin",
    "hostmaster",
    "webmaster",
    "mailer-daemon",
    "nobody",
    "noc",
    "security",
];

/// The reserved local parts that belong to people (RFC 2142): mail to them is kept for
/// the operator in the Maildir's `.operator` folder, never dropped, so that postmaster@ and
/// abuse@ of the nym domain reach someone.
pub const OPERATOR: &[&str] = &["postmaster", "abuse", "root", "admin", "hostmaster", "webmaster", "noc", "security"];

/// The most mails `.operator` keeps (the oldest go first): anyone can mail the domain.
pub const MAX_OPERATOR: u64 = 1000;

/// Every setting of `mixtasy-nymd.toml`, in file order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "domain",
        default: None,
        doc: "The nym domain: Postfix delivers every address of it into `maildir`. Set by `init`.",
    },
    Setting { name: "maildir", default: Some("\"Maildir\""), doc: "The Maildir Postfix fills (relative to the home)." },
    Setting {
        name: "transport",
        default: Some("\"sendmail\""),
        doc: "How mail leaves: \"sendmail\" or \"maildir:ROOT\" (a lab).",
    },
    Setting { name: "sendmail", default: Some("\"/usr/sbin/sendmail\""), doc: "The sendmail program." },
    Setting {
        name: "news",
        default: Some("\"nntp://127.0.0.1:119/alt.anonymous.messages\""),
        doc: "Where `newsgroup` nyms' mail is posted: \"nntp://HOST:PORT/GROUP\" or \"maildir:DIR\" (a lab).",
    },
    Setting {
        name: "reserved",
        default: Some("[]"),
        doc: "Local parts refused besides the built-in ones (config, send, postmaster, abuse, ...).",
    },
    Setting {
        name: "sends_per_day",
        default: Some("50"),
        doc: "Mails a nym may send a UTC day; past it, sending stops until the next day.",
    },
    Setting { name: "max_recipients", default: Some("10"), doc: "Recipients (To and Cc) of one sent mail." },
    Setting { name: "max_size", default: Some("524288"), doc: "Largest mail sent or received, bytes." },
    Setting {
        name: "inbound_budget",
        default: Some("512"),
        doc: "Inbound cost units a nym may receive a day (1 + size/32 KiB a mail).",
    },
    Setting { name: "hops", default: Some("4"), doc: "Hops of the paths for `mixtasy:` deliveries (4 at least)." },
    Setting {
        name: "block_confirmations_per_day",
        default: Some("50"),
        doc: "Most destination-block confirmations mailed in 24 hours, whoever asks at block@.",
    },
    Setting {
        name: "subaddress_delimiter",
        default: Some("\"+\""),
        doc: "What separates a subaddress (bob+tag@) from the mailbox: a block covers them all.",
    },
];

/// Where inbound mail for `newsgroup` nyms is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// NNTP POST to `host:port`, group `group`.
    Nntp { addr: String, group: String },
    /// One file an article in a Maildir (a lab setting; `mixtasy nym fetch --from maildir:DIR` reads it).
    Maildir(PathBuf),
}

impl News {
    /// `nntp://HOST:PORT/GROUP` or `maildir:DIR`; also `mixtasy nym fetch --from`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(root) = s.strip_prefix("maildir:").filter(|r| !r.is_empty()) {
            return Some(News::Maildir(root.into()));
        }
        let rest = s.strip_prefix("nntp://")?;
        let (addr, group) = rest.split_once('/')?;
        let group_ok = !group.is_empty() && group.chars().all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c));
        (addr.contains(':') && group_ok).then(|| News::Nntp { addr: addr.into(), group: group.into() })
    }

    /// The group name articles carry in `Newsgroups:`.
    pub fn group(&self) -> &str {
        match self {
            News::Nntp { group, .. } => group,
            News::Maildir(_) => "alt.anonymous.messages",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The nym domain: nyms are `name@domain`, the server `config@domain` and `send@domain`.
    pub domain: String,
    pub maildir: PathBuf,
    pub transport: TransportKind,
    pub sendmail: PathBuf,
    pub news: News,
    /// Local parts refused besides `RESERVED`.
    pub reserved: Vec<String>,
    pub sends_per_day: u64,
    pub max_recipients: usize,
    pub max_size: usize,
    /// Inbound cost units a nym may receive a day (a mail costs 1 + size/32 KiB).
    pub inbound_budget: u64,
    /// Hops of the paths for `mixtasy:` deliveries.
    pub hops: usize,
    /// Most block confirmations mailed in 24 hours (`abuse::block::Limits`).
    pub block_confirmations_per_day: u64,
    /// What separates a subaddress from the mailbox: a block covers every subaddress.
    pub subaddress_delimiter: String,
}

/// The commented file `init` writes.
pub fn default_file(domain: &str) -> String {
    settings::commented_file(
        "mixtasy-nymd.toml: settings of a Mixtasy nym server. See mixtasy-nymd(8).",
        SETTINGS,
        |s| (s.name == "domain").then(|| settings::quote(domain)),
    )
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let r = settings::Reader::new(text, SETTINGS)?;
    let domain = r.string("domain")?.to_ascii_lowercase();
    if !crate::mixes::address::valid_fqdn(&domain) {
        return Err(r.error("domain", "must be a domain name"));
    }
    let transport = TransportKind::parse(&r.string("transport")?)
        .ok_or_else(|| r.error("transport", "must be \"sendmail\" or \"maildir:ROOT\""))?;
    let news = News::parse(&r.string("news")?)
        .ok_or_else(|| r.error("news", "must be \"nntp://HOST:PORT/GROUP\" or \"maildir:DIR\""))?;
    let reserved: Vec<String> =
        r.strings("reserved", "local parts", |_| true)?.iter().map(|n| n.to_ascii_lowercase()).collect();
    let hops = r.int("hops")? as usize;
    if hops < crate::sender::path::MIN_HOPS {
        return Err(r.error("hops", format!("must be at least {}", crate::sender::path::MIN_HOPS)));
    }
    Ok(Config {
        domain,
        maildir: r.string("maildir")?.into(),
        transport,
        sendmail: r.string("sendmail")?.into(),
        news,
        reserved,
        sends_per_day: r.int("sends_per_day")?,
        max_recipients: (r.int("max_recipients")? as usize).max(1),
        max_size: r.int("max_size")? as usize,
        inbound_budget: r.int("inbound_budget")?,
        hops,
        block_confirmations_per_day: r.int("block_confirmations_per_day")?,
        subaddress_delimiter: r.string("subaddress_delimiter")?,
    })
}

pub fn load(path: &Path) -> Result<Config> {
    settings::load(path, parse)
}

impl Config {
    /// Paths resolved against the home.
    pub fn resolve(mut self, home: &Path) -> Self {
        self.maildir = home.join(&self.maildir);
        if let TransportKind::Maildir(r) = &self.transport {
            self.transport = TransportKind::Maildir(home.join(r));
        }
        if let News::Maildir(r) = &self.news {
            self.news = News::Maildir(home.join(r));
        }
        self
    }

    pub fn transport(&self) -> Transport {
        Transport::new(&self.transport, &self.sendmail, Duration::from_secs(60))
    }

    /// Whether `name` is a local part nobody may take.
    pub fn reserved(&self, name: &str) -> bool {
        RESERVED.contains(&name) || self.reserved.iter().any(|r| r == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_errors_name_the_setting() {
        let c = parse(&default_file("nym.example.org")).unwrap();
        assert_eq!(c.sends_per_day, 50);
        assert_eq!(c.news, News::Nntp { addr: "127.0.0.1:119".into(), group: "alt.anonymous.messages".into() });
        assert!(c.reserved("config") && c.reserved("postmaster") && !c.reserved("alice"));
        assert!(parse("domain = \"x.test\"\nnews = \"http://x\"\n").unwrap_err().to_string().contains("`news`"));
        let err = parse("domain = \"x.test\"\nsend_per_day = 3\n").unwrap_err().to_string();
        assert_eq!(err, "2: unknown setting `send_per_day`", "a typo is refused at its line");
        assert!(parse("domain = \"x.test\"\nhops = 2\n").is_err());
    }
}
