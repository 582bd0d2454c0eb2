//! Mix addresses: `mixtasy@FQDN` (thesis 6.1.1), kept in lower case.

use std::fmt;

/// The local part every mix address has.
pub const LOCAL_PART: &str = "mixtasy";

/// A syntactically valid mix address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MixAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a mix address (mixtasy@FQDN)")]
pub struct NotMixAddress;

/// Checks a host name: dot-separated labels of letters, digits and inner hyphens.
pub fn valid_fqdn(fqdn: &str) -> bool {
    !fqdn.is_empty()
        && fqdn.len() <= 253
        && fqdn.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// One `local@domain`, nothing a shell, a path or sendmail's option parser could misread:
/// what the transport hands to sendmail and what the blocklist accepts.
pub fn plausible(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty()
        && !a.starts_with('-')
        && valid_fqdn(domain)
        && local.bytes().all(|b| b.is_ascii_graphic() && !b"/\\<>()[],;:\"".contains(&b))
        && !local.starts_with('.')
}

/// Whether a recipient's local part asks the receiving MTA to relay elsewhere: `%` (the
/// percent hack), `!` (bang paths), `:` and `@` (source routes), also inside a quoted
/// string. Postfix rewrites such addresses to other hosts, so an `exitprivate` mix would
/// relay out of its `local_domains`; the exit refuses them.
pub fn relays(address: &str) -> bool {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    local.bytes().any(|b| b"%!:@".contains(&b))
}

/// Every address of an address header (To, Cc, ...), groups flattened, in order; none if
/// the header does not parse.
pub fn header_addresses(h: &mailparse::MailHeader<'_>) -> Vec<String> {
    let Ok(list) = mailparse::addrparse_header(h) else { return Vec::new() };
    let mut out = Vec::new();
    for a in list.iter() {
        match a {
            mailparse::MailAddr::Single(s) => out.push(s.addr.clone()),
            mailparse::MailAddr::Group(g) => out.extend(g.addrs.iter().map(|s| s.addr.clone())),
        }
    }
    out
}

impl MixAddress {
    pub fn parse(s: &str) -> Result<Self, NotMixAddress> {
        let s = s.trim();
        let (local, domain) = s.rsplit_once('@').ok_or(NotMixAddress)?;
        if !local.eq_ignore_ascii_case(LOCAL_PART) || !valid_fqdn(domain) {
            return Err(NotMixAddress);
        }
        Ok(MixAddress(format!("{LOCAL_PART}@{}", domain.to_ascii_lowercase())))
    }

    /// The address for a host name.
    pub fn for_fqdn(fqdn: &str) -> Result<Self, NotMixAddress> {
        Self::parse(&format!("{LOCAL_PART}@{fqdn}"))
    }

    pub fn fqdn(&self) -> &str {
        &self.0[LOCAL_PART.len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MixAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(MixAddress::parse("Mixtasy@Mix1.Test").unwrap().as_str(), "mixtasy@mix1.test");
        assert_eq!(MixAddress::parse("mixtasy@mix1.test").unwrap().fqdn(), "mix1.test");
        for bad in ["mixtasy", "bob@mix1.test", "mixtasy@", "mixtasy@-a.test", "mixtasy@a..test", "mixtasy@a b"] {
            assert!(MixAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relaying_local_parts() {
        for bad in [
            "victim%remote.test@mix5.test",
            "remote.test!victim2@mix5.test",
            "@a.test:v@mix5.test",
            "\"v@remote.test\"@mix5.test",
        ] {
            assert!(relays(bad), "{bad}");
        }
        for good in ["bob@mix5.test", "bob+tag@mix5.test", "o'hara@mix5.test"] {
            assert!(!relays(good), "{good}");
        }
    }

    /// What the exit sees of a quoted local part after RFC 5322 parsing: the quoted string,
    /// whose content `relays` sees. (A bare quoted local part, not in angle brackets, makes
    /// the whole field unparsable: no recipient comes out of it at all.)
    #[test]
    fn quoted_relays_survive_header_parsing() {
        let (h, _) =
            mailparse::parse_header(b"To: <\"v@remote.test\"@mix5.test>, V <\"a!b\"@mix5.test>, <\"a%b\"@mix5.test>")
                .unwrap();
        let got = header_addresses(&h);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|a| relays(a)), "{got:?}");
    }
}
