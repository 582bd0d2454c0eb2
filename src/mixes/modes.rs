//! Operation modes (thesis 6.4): which mix messages a mix processes.

use std::fmt;

/// A set of modes, as the user id's `mixtasy-mode:` feature statement lists them (D8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes {
    /// Processes intermediate mix messages.
    pub middleman: bool,
    /// Delivers final mix messages to any recipient.
    pub exitpublic: bool,
    /// Delivers final mix messages to its own local domains only.
    pub exitprivate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModesError {
    #[error("unknown mode `{0}` (known: middleman, exitpublic, exitprivate)")]
    Unknown(String),
    #[error("mode `{0}` listed twice")]
    Repeated(String),
    #[error("no mode given")]
    Empty,
}

impl Modes {
    /// Parses a comma-separated list without spaces, as in `middleman,exitpublic`.
    pub fn parse(s: &str) -> Result<Self, ModesError> {
        if s.is_empty() {
            return Err(ModesError::Empty);
        }
        let mut m = Modes::default();
        for word in s.split(',') {
            let slot = match word {
                "middleman" => &mut m.middleman,
                "exitpublic" => &mut m.exitpublic,
                "exitprivate" => &mut m.exitprivate,
                other => return Err(ModesError::Unknown(other.to_string())),
            };
            if *slot {
                return Err(ModesError::Repeated(word.to_string()));
            }
            *slot = true;
        }
        Ok(m)
    }

    /// Any exit mode.
    pub fn exit(&self) -> bool {
        self.exitpublic || self.exitprivate
    }
}

impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> =
            [(self.middleman, "middleman"), (self.exitpublic, "exitpublic"), (self.exitprivate, "exitprivate")]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let m = Modes::parse("middleman,exitpublic").unwrap();
        assert!(m.middleman && m.exitpublic && !m.exitprivate);
        assert_eq!(m.to_string(), "middleman,exitpublic");
        assert_eq!(Modes::parse("exitprivate,middleman").unwrap().to_string(), "middleman,exitprivate");
        assert_eq!(Modes::parse("middleman, exitpublic").unwrap_err(), ModesError::Unknown(" exitpublic".into()));
        assert_eq!(Modes::parse("middleman,middleman").unwrap_err(), ModesError::Repeated("middleman".into()));
        assert_eq!(Modes::parse("").unwrap_err(), ModesError::Empty);
    }
}
