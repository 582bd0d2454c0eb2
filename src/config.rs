//! `mixtasyd.toml`: one table of settings, from which come the commented default file
//! `init` writes, the validation `load` does, and the manual's list.
//!
//! Every setting is documented as `name (default)` plus why. An unknown name is an error
//! that names the file and line: a typo must not silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::address::MixAddress;
use crate::modes::Modes;

/// One setting: its name, its default as a TOML value (`None`: required), and its doc.
pub struct Setting {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Every setting of `mixtasyd.toml`, in file order.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "address",
        default: None,
        doc: "The mix address, mixtasy@FQDN. Mail for it is mix traffic; it is the From of\n\
              everything this mix sends. Set by `init`, and part of the key's user id.",
    },
    Setting {
        name: "modes",
        default: None,
        doc: "Operation modes, comma separated: middleman (forward intermediate messages),\n\
              exitpublic (deliver to anyone), exitprivate (deliver to local_domains only).\n\
              Set by `init` and published in the key's user id: change both together.",
    },
    Setting {
        name: "subkey_validity",
        default: Some("\"2d\""),
        doc: "Lifetime of each encryption subkey. The thesis fixes two days: short enough for\n\
              forward secrecy and a small replay cache, long enough to cross the network.",
    },
    Setting {
        name: "clock_skew",
        default: Some("\"1h\""),
        doc: "How far in the future a subkey's creation may lie and still decrypt: senders and\n\
              mixes with clocks a little ahead of ours must not lose mail. Never extends expiry.",
    },
];

/// The settings, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub address: MixAddress,
    pub modes: Modes,
    pub subkey_validity: Duration,
    pub clock_skew: Duration,
}

/// Parses `2d`, `1h`, `30m`, `45s` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(|| anyhow!("empty duration"))?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| anyhow!("`{s}` is not a duration like 2d, 1h, 30m, 45s"))?;
    let secs = match unit {
        'd' => 86400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => bail!("`{s}` is not a duration like 2d, 1h, 30m, 45s"),
    };
    Ok(Duration::from_secs(n * secs))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The commented file `init` writes: every setting with its default and why.
pub fn default_file(address: &MixAddress, modes: &Modes) -> String {
    let mut out = String::from("# mixtasyd.toml: settings of one Mixtasy mix node. See mixtasyd.toml(5).\n");
    for s in SETTINGS {
        out.push('\n');
        for line in s.doc.lines() {
            out.push_str("# ");
            out.push_str(line.trim_start());
            out.push('\n');
        }
        match (s.name, s.default) {
            ("address", _) => out.push_str(&format!("address = {}\n", quote(address.as_str()))),
            ("modes", _) => out.push_str(&format!("modes = {}\n", quote(&modes.to_string()))),
            (name, Some(d)) => out.push_str(&format!("# default: {name} = {d}\n{name} = {d}\n")),
            (name, None) => out.push_str(&format!("{name} = \"\"\n")),
        }
    }
    out
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')))
        .map_or(0, |i| i + 1)
}

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}:{e:#}", path.display()))
}

/// Validates config text; errors start with `LINE: `.
pub fn parse(text: &str) -> Result<Config> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| text[..s.start].lines().count().max(1));
        anyhow!("{line}: {}", e.message())
    })?;
    for key in table.keys() {
        if !SETTINGS.iter().any(|s| s.name == key) {
            bail!("{}: unknown setting `{key}`", line_of(text, key));
        }
    }
    let get = |name: &str| -> Result<String> {
        let setting = SETTINGS.iter().find(|s| s.name == name).expect("setting in table");
        match table.get(name) {
            Some(toml::Value::String(v)) => Ok(v.clone()),
            Some(_) => bail!("{}: `{name}` must be a string", line_of(text, name)),
            None => match setting.default {
                Some(d) => Ok(d.trim_matches('"').to_string()),
                None => bail!("0: required setting `{name}` is missing"),
            },
        }
    };
    let at = |name: &str, e: anyhow::Error| anyhow!("{}: `{name}`: {e:#}", line_of(text, name));
    Ok(Config {
        address: MixAddress::parse(&get("address")?).map_err(|e| at("address", e.into()))?,
        modes: Modes::parse(&get("modes")?).map_err(|e| at("modes", e.into()))?,
        subkey_validity: parse_duration(&get("subkey_validity")?).map_err(|e| at("subkey_validity", e))?,
        clock_skew: parse_duration(&get("clock_skew")?).map_err(|e| at("clock_skew", e))?,
    })
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("2 days").is_err());
        assert!(parse_duration("").is_err());
    }
}
