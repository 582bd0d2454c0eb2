//! What a config@ request says, once decrypted: an optional public key block (a create or
//! a key refresh) and `field: value` lines (nymserv's syntax). Lines that are neither are
//! refused, so that a garbled request changes nothing.
//!
//! Fields: `hsub` (aliases `hash-subject`, `subject-password`), `symmetric`, `delivery`
//! (`newsgroup` or `mixtasy:ADDRESS`), `acksend` (a boolean), `delete` (a boolean),
//! `confirm` (the code of a confirmation). Values are at most 64 characters (256 for
//! `delivery`). Booleans: `0/no/none/false`, `1/yes/true`.

use sequoia_openpgp::Cert;

/// A nym's delivery channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Posted to the shared group: nobody learns who reads.
    Newsgroup,
    /// Sent through the Mixtasy network to this mailbox: the server knows the address.
    Mixtasy(String),
}

impl Delivery {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("newsgroup") {
            return Some(Delivery::Newsgroup);
        }
        let a = s.strip_prefix("mixtasy:")?.trim();
        (crate::mixes::address::plausible(a) && !crate::mixes::address::relays(a))
            .then(|| Delivery::Mixtasy(a.to_ascii_lowercase()))
    }

    /// The stored form, which `parse` reads back.
    pub fn as_setting(&self) -> String {
        match self {
            Delivery::Newsgroup => "newsgroup".into(),
            Delivery::Mixtasy(a) => format!("mixtasy:{a}"),
        }
    }
}

/// A parsed request.
#[derive(Debug, Default)]
pub struct Request {
    pub key: Option<Cert>,
    pub hsub: Option<String>,
    pub symmetric: Option<String>,
    pub delivery: Option<Delivery>,
    pub acksend: Option<bool>,
    pub delete: bool,
    pub confirm: Option<String>,
}

fn boolean(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" => Some(true),
        "0" | "no" | "none" | "false" => Some(false),
        _ => None,
    }
}

const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Parses a decrypted request; the error says which line is wrong and why (it goes back to
/// the nym, never into a log).
pub fn parse(plaintext: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(plaintext).map_err(|_| "the request is not UTF-8 text".to_string())?;
    let mut r = Request::default();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let l = line.trim();
        if l == BEGIN {
            if r.key.is_some() {
                return Err("more than one key block".into());
            }
            let mut block = String::from(BEGIN);
            block.push('\n');
            loop {
                let Some((_, k)) = lines.next() else { return Err("the key block has no end line".into()) };
                block.push_str(k.trim());
                block.push('\n');
                if k.trim() == END {
                    break;
                }
            }
            r.key = Some(
                crate::nymserv::pgp::cert(block.as_bytes())
                    .map_err(|e| format!("the key block does not parse: {e}"))?,
            );
            continue;
        }
        if l.is_empty() {
            continue;
        }
        let Some((field, value)) = l.split_once(':') else { return Err(format!("line {}: not `field: value`", i + 1)) };
        let (field, value) = (field.trim().to_ascii_lowercase(), value.trim().to_string());
        let max = if field == "delivery" { 256 } else { 64 };
        if value.chars().count() > max {
            return Err(format!("line {}: the value of `{field}` is longer than {max} characters", i + 1));
        }
        let bad = |what: &str| format!("line {}: `{field}` {what}", i + 1);
        match field.as_str() {
            "hsub" | "hash-subject" | "subject-password" => r.hsub = Some(value),
            "symmetric" => r.symmetric = Some(value),
            "delivery" => {
                r.delivery =
                    Some(Delivery::parse(&value).ok_or_else(|| bad("must be `newsgroup` or `mixtasy:ADDRESS`"))?)
            }
            "acksend" => r.acksend = Some(boolean(&value).ok_or_else(|| bad("must be yes or no"))?),
            "delete" => r.delete = boolean(&value).ok_or_else(|| bad("must be yes or no"))?,
            "confirm" => r.confirm = Some(value),
            _ => return Err(format!("line {}: unknown field `{field}`", i + 1)),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_aliases_and_refusals() {
        let r =
            parse(b"hash-subject: secret\nSymmetric: pw\ndelivery: mixtasy:Bob@Example.org\nacksend: no\n").unwrap();
        assert_eq!(r.hsub.as_deref(), Some("secret"));
        assert_eq!(r.symmetric.as_deref(), Some("pw"));
        assert_eq!(r.delivery, Some(Delivery::Mixtasy("bob@example.org".into())));
        assert_eq!(r.acksend, Some(false));
        assert!(r.key.is_none() && !r.delete);
        assert!(parse(b"colour: blue\n").unwrap_err().contains("unknown field"));
        assert!(parse(b"delivery: smtp:bob@x.org\n").is_err());
        assert!(parse(b"delivery: mixtasy:bob%evil@x.org\n").is_err(), "relaying local parts refused");
        assert!(parse(format!("hsub: {}\n", "x".repeat(65)).as_bytes()).unwrap_err().contains("64"));
        assert!(parse(b"just words\n").unwrap_err().contains("line 1"));
        assert!(parse(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n").is_err());
    }
}
