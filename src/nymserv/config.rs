//! The nym server's settings: `HOME/mixtasy-nymd.toml`, documented in mixtasy-nymd(8).
//! Every setting has a default but `domain`; unknown settings are refused, so a typo is
//! an error, not a silently ignored line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    domain: String,
    #[serde(default = "d_maildir")]
    maildir: String,
    #[serde(default = "d_transport")]
    transport: String,
    #[serde(default = "d_sendmail")]
    sendmail: String,
    #[serde(default = "d_news")]
    news: String,
    #[serde(default)]
    reserved: Vec<String>,
    #[serde(default = "d_sends")]
    sends_per_day: u64,
    #[serde(default = "d_rcpts")]
    max_recipients: usize,
    #[serde(default = "d_size")]
    max_size: usize,
    #[serde(default = "d_budget")]
    inbound_budget: u64,
    #[serde(default = "d_hops")]
    hops: usize,
    #[serde(default = "d_confirmations")]
    block_confirmations_per_day: u64,
    #[serde(default = "d_delimiter")]
    subaddress_delimiter: String,
}

fn d_maildir() -> String {
    "Maildir".into()
}
fn d_transport() -> String {
    "sendmail".into()
}
fn d_sendmail() -> String {
    "/usr/sbin/sendmail".into()
}
fn d_news() -> String {
    "nntp://127.0.0.1:119/alt.anonymous.messages".into()
}
fn d_sends() -> u64 {
    50
}
fn d_rcpts() -> usize {
    10
}
fn d_size() -> usize {
    512 * 1024
}
fn d_budget() -> u64 {
    512
}
fn d_hops() -> usize {
    crate::sender::path::MIN_HOPS
}
fn d_confirmations() -> u64 {
    50
}
fn d_delimiter() -> String {
    "+".into()
}

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

pub fn default_file(domain: &str) -> String {
    format!(
        "# mixtasy-nymd settings; see mixtasy-nymd(8).\n\
         # The nym domain: Postfix delivers every address of it into `maildir`.\n\
         domain = \"{domain}\"\n\
         # The Maildir Postfix fills (relative to the home).\n\
         maildir = \"Maildir\"\n\
         # How mail leaves: \"sendmail\" or \"maildir:ROOT\" (a lab).\n\
         transport = \"sendmail\"\n\
         sendmail = \"/usr/sbin/sendmail\"\n\
         # Where `newsgroup` nyms' mail is posted: \"nntp://HOST:PORT/GROUP\" or \"maildir:DIR\" (a lab).\n\
         news = \"nntp://127.0.0.1:119/alt.anonymous.messages\"\n\
         # Local parts refused besides the built-in ones (config, send, postmaster, abuse, ...).\n\
         reserved = []\n\
         # Mails a nym may send a UTC day; past it, sending stops until the next day.\n\
         sends_per_day = 50\n\
         # Recipients (To and Cc) of one sent mail.\n\
         max_recipients = 10\n\
         # Largest mail sent or received, bytes.\n\
         max_size = 524288\n\
         # Inbound cost units a nym may receive a day (1 + size/32 KiB a mail).\n\
         inbound_budget = 512\n\
         # Hops of the paths for `mixtasy:` deliveries.\n\
         hops = 4\n\
         # Most destination-block confirmations mailed in 24 hours, whoever asks at block@.\n\
         block_confirmations_per_day = 50\n\
         # What separates a subaddress (bob+tag@) from the mailbox: a block covers them all.\n\
         subaddress_delimiter = \"+\"\n"
    )
}

pub fn parse(text: &str) -> Result<Config> {
    let f: File = toml::from_str(text).map_err(|e| anyhow!("{}", e.message()))?;
    let domain = f.domain.to_ascii_lowercase();
    if !crate::mixes::address::valid_fqdn(&domain) {
        bail!("`domain` must be a domain name");
    }
    let transport = TransportKind::parse(&f.transport)
        .ok_or_else(|| anyhow!("`transport` must be \"sendmail\" or \"maildir:ROOT\""))?;
    let news =
        News::parse(&f.news).ok_or_else(|| anyhow!("`news` must be \"nntp://HOST:PORT/GROUP\" or \"maildir:DIR\""))?;
    if f.hops < crate::sender::path::MIN_HOPS {
        bail!("`hops` must be at least {}", crate::sender::path::MIN_HOPS);
    }
    Ok(Config {
        domain,
        maildir: f.maildir.into(),
        transport,
        sendmail: f.sendmail.into(),
        news,
        reserved: f.reserved.iter().map(|r| r.to_ascii_lowercase()).collect(),
        sends_per_day: f.sends_per_day,
        max_recipients: f.max_recipients.max(1),
        max_size: f.max_size,
        inbound_budget: f.inbound_budget,
        hops: f.hops,
        block_confirmations_per_day: f.block_confirmations_per_day,
        subaddress_delimiter: f.subaddress_delimiter,
    })
}

pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
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
        assert!(parse("domain = \"x.test\"\nsend_per_day = 3\n").is_err(), "unknown setting refused");
        assert!(parse("domain = \"x.test\"\nhops = 2\n").is_err());
    }
}
