//! A timer program's settings file (`mixtasyd.toml`, `mixtasy-pinger.toml`): one table of
//! settings, from which come the commented file `init` writes and the reading with defaults.
//!
//! An unknown name is an error, and every error names the file and line: a typo must not
//! silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// One setting: its name, its default as a TOML value (`None`: required), and its doc.
pub struct Setting {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Parses `2d`, `1h`, `30m`, `45s` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(|| anyhow!("empty duration"))?;
    let n: u64 =
        s[..s.len() - unit.len_utf8()].parse().map_err(|_| anyhow!("`{s}` is not a duration like 2d, 1h, 30m, 45s"))?;
    let secs = match unit {
        'd' => 86400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => bail!("`{s}` is not a duration like 2d, 1h, 30m, 45s"),
    };
    Ok(Duration::from_secs(n * secs))
}

/// A string as a TOML value.
pub fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The commented file `init` writes: a title line, then each setting's doc, its default,
/// and the line `name = value`, the value (TOML) from `value`, else the default.
pub fn commented_file(title: &str, settings: &[Setting], value: impl Fn(&Setting) -> Option<String>) -> String {
    let mut out = format!("# {title}\n");
    for s in settings {
        out.push('\n');
        for line in s.doc.lines() {
            out.push_str("# ");
            out.push_str(line.trim_start());
            out.push('\n');
        }
        if let Some(d) = s.default {
            out.push_str(&format!("# Default: {d}\n"));
        }
        let v = value(s).or_else(|| s.default.map(str::to_string)).unwrap_or_else(|| quote(""));
        out.push_str(&format!("{} = {v}\n", s.name));
    }
    out
}

/// A settings file that cannot be used, as one line: `FILE:LINE: what` (line 0: no one line
/// is at fault, as for a missing setting). `Reader` knows no file; `load` adds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}: {}", file.display(), self.line, self.message),
            None => write!(f, "{}: {}", self.line, self.message),
        }
    }
}

impl ConfigError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        ConfigError { file: None, line, message: message.into() }
    }
}

/// Reads and validates the file at `path` with `parse`; errors name the file.
pub fn load<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, ConfigError>) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse(&text).map_err(|e| ConfigError { file: Some(path.to_path_buf()), ..e })?)
}

/// The settings of one file's text, each read typed, with its default when absent.
pub struct Reader<'a> {
    text: &'a str,
    settings: &'a [Setting],
    table: toml::Table,
}

impl<'a> Reader<'a> {
    /// Parses `text`, refusing a name not in `settings`.
    pub fn new(text: &'a str, settings: &'a [Setting]) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map_or(0, |s| text[..s.start].lines().count().max(1));
            ConfigError::at(line, e.message())
        })?;
        let reader = Reader { text, settings, table };
        if let Some(key) = reader.table.keys().find(|k| !settings.iter().any(|s| s.name == k.as_str())) {
            return Err(ConfigError::at(reader.line_of(key), format!("unknown setting `{key}`")));
        }
        Ok(reader)
    }

    fn line_of(&self, key: &str) -> usize {
        self.text
            .lines()
            .position(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')))
            .map_or(0, |i| i + 1)
    }

    /// The error `e` of setting `name`, at its line.
    pub fn error(&self, name: &str, e: impl std::fmt::Display) -> ConfigError {
        ConfigError::at(self.line_of(name), format!("`{name}`: {e:#}"))
    }

    /// The error `message` about setting `name`, at its line, not prefixed by the name.
    pub fn error_plain(&self, name: &str, message: &str) -> ConfigError {
        ConfigError::at(self.line_of(name), message)
    }

    /// The value of `name`, else its default; a required one missing is an error.
    pub fn value(&self, name: &str) -> Result<toml::Value, ConfigError> {
        let setting = self.settings.iter().find(|s| s.name == name).expect("setting in table");
        match (self.table.get(name), setting.default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(format!("v = {d}").parse::<toml::Table>().expect("defaults are TOML")["v"].clone()),
            (None, None) => Err(ConfigError::at(0, format!("required setting `{name}` is missing"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<String, ConfigError> {
        match self.value(name)? {
            toml::Value::String(s) => Ok(s),
            _ => Err(self.error(name, "must be a string")),
        }
    }

    pub fn int(&self, name: &str) -> Result<u64, ConfigError> {
        match self.value(name)? {
            toml::Value::Integer(i) if i >= 0 => Ok(i as u64),
            _ => Err(self.error(name, "must be a whole number, 0 or more")),
        }
    }

    /// A number from 0 to 1 (a probability).
    pub fn fraction(&self, name: &str) -> Result<f64, ConfigError> {
        match self.value(name)? {
            toml::Value::Float(f) if (0.0..=1.0).contains(&f) => Ok(f),
            toml::Value::Integer(i) if (0..=1).contains(&i) => Ok(i as f64),
            _ => Err(self.error(name, "must be a number from 0 to 1")),
        }
    }

    /// A list of strings, each accepted by `ok`; `what` names what a list item must be.
    pub fn strings(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> Result<Vec<String>, ConfigError> {
        let bad = || self.error(name, format!("must be a list of {what}"));
        match self.value(name)? {
            toml::Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) if ok(&s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect(),
            _ => Err(bad()),
        }
    }

    pub fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        parse_duration(&self.string(name)?).map_err(|e| self.error(name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &[Setting] = &[
        Setting { name: "who", default: None, doc: "Who.\nTwo lines." },
        Setting { name: "wait", default: Some("\"1h\""), doc: "How long." },
        Setting { name: "count", default: Some("3"), doc: "How many." },
        Setting { name: "names", default: Some("[]"), doc: "Names." },
    ];

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("2 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_commented_file_reads_back_to_its_values_and_defaults() {
        let text = commented_file("t.toml: a test", SETTINGS, |s| (s.name == "who").then(|| quote("me")));
        assert!(text.starts_with("# t.toml: a test\n\n# Who.\n# Two lines.\nwho = \"me\"\n"), "{text}");
        assert!(text.contains("# Default: \"1h\"\nwait = \"1h\"\n"), "{text}");
        let r = Reader::new(&text, SETTINGS).unwrap();
        assert_eq!(r.string("who").unwrap(), "me");
        assert_eq!((r.duration("wait").unwrap(), r.int("count").unwrap()), (Duration::from_secs(3600), 3));
    }

    #[test]
    fn errors_name_the_line_and_the_file() {
        let e = Reader::new("who = \"a\"\nwiat = \"2h\"\n", SETTINGS).err().unwrap();
        assert_eq!(e.to_string(), "2: unknown setting `wiat`");
        let r = Reader::new("who = \"a\"\n\ncount = -1\nwait = 5\n", SETTINGS).unwrap();
        assert!(r.int("count").unwrap_err().to_string().starts_with("3: `count`"));
        assert!(r.duration("wait").unwrap_err().to_string().starts_with("4: `wait`"));
        let r = Reader::new("names = [\"a\", \"\"]\n", SETTINGS).unwrap();
        assert_eq!(r.strings("names", "names", |_| true).unwrap(), ["a", ""]);
        let e = r.strings("names", "names", |n| !n.is_empty()).unwrap_err().to_string();
        assert_eq!(e, "1: `names`: must be a list of names");
        let r = Reader::new("count = 1\n", SETTINGS).unwrap();
        assert!(r.strings("names", "names", |_| true).unwrap().is_empty(), "the default, an empty list");
        assert_eq!(r.string("who").unwrap_err().to_string(), "0: required setting `who` is missing");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "who = [\n").unwrap();
        let e = load(&path, |t| Reader::new(t, SETTINGS).map(|_| ())).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:", path.display())), "{e}");
    }
}
