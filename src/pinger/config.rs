//! `mixtasy-pinger.toml`: the pinger's settings, one table like the node's (`SETTINGS`),
//! from which come the commented default file `init` writes, the validation and the manual.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::batch::settings::{self, ConfigError, Setting};
use crate::batch::transport::TransportKind;
use crate::mixes::address::MixAddress;

/// Every setting of `mixtasy-pinger.toml`, in file order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "address",
        default: None,
        doc: "The pinger's own address, local@FQDN: every ping is an original for it, so the MTA
              must deliver it into `maildir`. Set by `init`, and the key's user id.",
    },
    Setting {
        name: "maildir",
        default: Some("\"Maildir\""),
        doc: "The Maildir the MTA delivers the pinger's address into (relative paths are relative
              to this home). Returned pings are taken from it; other mail goes to its .operator folder.",
    },
    Setting {
        name: "output",
        default: Some("\"public\""),
        doc: "Where each round writes mlist2.txt (with mlist2.txt.asc), pubring.asc (with
              pubring.asc.sig): serve this directory over HTTP(S).",
    },
    Setting {
        name: "interval",
        default: Some("\"2h\""),
        doc: "How often each mix is pinged (Echolot's 2 hours); each mix at its own offset in the
              interval, so pings do not leave in one burst.",
    },
    Setting {
        name: "chain_interval",
        default: Some("\"7d\""),
        doc: "How often each chain (mix A, then exit B) is pinged, to find broken pairs (Echolot's
              weekly chain pings).",
    },
    Setting {
        name: "trusted_exit",
        default: Some("\"\""),
        doc: "The address (mixtasy@FQDN) of an exit mix the pinger trusts, typically its
              operator's own mixtasyd with exitprivate for the pinger's domain: a mix that does
              not deliver itself (middleman only) is pinged through it. Empty: such mixes are not pinged.",
    },
    Setting {
        name: "keyserver",
        default: Some("\"\""),
        doc: "HKP keyserver (hkp://host[:port]) the directory is refreshed from each round and the
              certifications are uploaded to once a day. Empty: neither.",
    },
    Setting {
        name: "transport",
        default: Some("\"sendmail\""),
        doc: "How pings leave: \"sendmail\" (the program below, envelope sender = the pinger's
              address), or \"maildir:ROOT\" (labs and tests).",
    },
    Setting { name: "sendmail", default: Some("\"/usr/sbin/sendmail\""), doc: "The sendmail program of the MTA." },
    Setting {
        name: "sendmail_timeout",
        default: Some("\"1m\""),
        doc: "How long one sendmail may take before it is killed; the ping is then not counted as sent.",
    },
    Setting {
        name: "max_operator",
        default: Some("1000"),
        doc: "Most mails kept in the Maildir's .operator folder (mail that is not a ping); the
              oldest are deleted past it.",
    },
];

#[derive(Debug, Clone)]
pub struct Config {
    pub address: String,
    pub maildir: PathBuf,
    pub output: PathBuf,
    pub interval: Duration,
    pub chain_interval: Duration,
    pub trusted_exit: Option<MixAddress>,
    pub keyserver: Option<String>,
    pub transport: TransportKind,
    pub sendmail: PathBuf,
    pub sendmail_timeout: Duration,
    pub max_operator: u64,
}

/// The commented file `init` writes.
pub fn default_file(address: &str) -> String {
    settings::commented_file(
        "mixtasy-pinger.toml: settings of a Mixtasy pinger. See mixtasy-pinger(8).",
        SETTINGS,
        |s| (s.name == "address").then(|| settings::quote(address)),
    )
}

pub fn load(path: &Path) -> Result<Config> {
    settings::load(path, parse)
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let r = settings::Reader::new(text, SETTINGS)?;
    let duration = |name: &str| -> Result<Duration, ConfigError> {
        match r.duration(name)? {
            d if d.is_zero() => Err(r.error(name, "must be longer than 0")),
            d => Ok(d),
        }
    };
    let address = r.string("address")?;
    if !crate::mixes::address::plausible(&address) {
        return Err(r.error("address", "must be an email address, local@domain"));
    }
    Ok(Config {
        address,
        maildir: PathBuf::from(r.string("maildir")?),
        output: PathBuf::from(r.string("output")?),
        interval: duration("interval")?,
        chain_interval: duration("chain_interval")?,
        trusted_exit: match r.string("trusted_exit")? {
            e if e.is_empty() => None,
            e => Some(
                MixAddress::parse(&e).map_err(|_| r.error("trusted_exit", "must be a mix address, mixtasy@FQDN"))?,
            ),
        },
        keyserver: match r.string("keyserver")? {
            k if k.is_empty() => None,
            k => {
                crate::mixes::keyserver::Keyserver::new(&k, Duration::from_secs(1))
                    .map_err(|e| r.error("keyserver", e))?;
                Some(k)
            }
        },
        transport: TransportKind::parse(&r.string("transport")?)
            .ok_or_else(|| r.error("transport", "must be \"sendmail\" or \"maildir:ROOT\""))?,
        sendmail: PathBuf::from(r.string("sendmail")?),
        sendmail_timeout: duration("sendmail_timeout")?,
        max_operator: r.int("max_operator")?,
    })
}

impl Config {
    pub fn transport(&self) -> crate::batch::transport::Transport {
        crate::batch::transport::Transport::new(&self.transport, &self.sendmail, self.sendmail_timeout)
    }

    /// Makes relative paths relative to the home.
    pub fn resolve(mut self, home: &Path) -> Self {
        for p in [&mut self.maildir, &mut self.output] {
            if p.is_relative() {
                *p = home.join(&*p);
            }
        }
        if let TransportKind::Maildir(root) = &self.transport {
            if root.is_relative() {
                self.transport = TransportKind::Maildir(home.join(root));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_and_typos_are_errors() {
        let c = parse(&default_file("pinger@ping.test")).unwrap();
        assert_eq!(c.interval, Duration::from_secs(7200));
        assert_eq!(c.chain_interval, Duration::from_secs(7 * 86400));
        assert!(c.trusted_exit.is_none() && c.keyserver.is_none());
        let err = parse("address = \"p@x.test\"\nintervall = \"1h\"\n").unwrap_err().to_string();
        assert_eq!(err, "2: unknown setting `intervall`", "the line is named, as in mixtasyd.toml");
        let err = parse("address = \"p@x.test\"\n\nmax_operator = -3\n").unwrap_err().to_string();
        assert!(err.starts_with("3: `max_operator`"), "{err}");
        assert!(parse("address = \"p@x.test\"\ninterval = \"0h\"\n").is_err());
        assert!(parse("address = \"p@x.test\"\ntrusted_exit = \"bob@x.test\"\n").is_err());
        assert!(parse("interval = \"1h\"\n").is_err());
    }
}
