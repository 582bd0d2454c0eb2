//! `mixtasy send` as a sendmail for mail programs (sendmail(8) command line): which
//! originals one submission becomes.
//!
//! The exit delivers to an original's To and Cc only, so a recipient a mail program passes
//! on the command line without naming it in To or Cc (its Bcc, or `-t` with a Bcc field)
//! gets its own copy of the original, addressed to it alone: To is that address, Cc and Bcc
//! are gone, so no other recipient learns of it. A To/Cc recipient missing from the command
//! line still gets the mail: the exit reads the header, not the envelope.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::format::headers::{self, name_of};
use crate::sender::create::CreateError;

/// The addresses of every field named `name` (lower case) in an original's header.
pub fn addresses(original: &[u8], names: &[&str]) -> Result<Vec<String>> {
    let (parsed, _) = mailparse::parse_headers(original).map_err(|_| CreateError::NoRecipient)?;
    Ok(parsed
        .iter()
        .filter(|h| names.contains(&h.get_key().to_ascii_lowercase().as_str()))
        .flat_map(crate::mixes::address::header_addresses)
        .collect())
}

/// The originals to wrap: `original` itself if it has a To or Cc recipient, then one copy
/// per `extra` recipient (any case, each once) that is in neither. None at all is an error.
pub fn originals(original: &[u8], extra: &[String]) -> Result<Vec<Vec<u8>>> {
    let named: BTreeSet<String> = addresses(original, &["to", "cc"])?.iter().map(|a| a.to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    if !named.is_empty() {
        out.push(original.to_vec());
    }
    let mut seen = BTreeSet::new();
    for r in extra {
        let key = r.trim().to_ascii_lowercase();
        if named.contains(&key) || !seen.insert(key) {
            continue;
        }
        out.push(addressed_to(original, r.trim())?);
    }
    if out.is_empty() {
        return Err(CreateError::NoRecipient.into());
    }
    Ok(out)
}

/// The original with To set to `rcpt` alone and no Cc or Bcc.
fn addressed_to(original: &[u8], rcpt: &str) -> Result<Vec<u8>> {
    if !crate::mixes::address::plausible(rcpt) {
        anyhow::bail!("the recipient {rcpt:?} is not a mail address");
    }
    let s = headers::split(original)?;
    let mut out = Vec::with_capacity(original.len() + rcpt.len() + 8);
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(rcpt.as_bytes());
    out.extend_from_slice(s.eol);
    for f in s.fields.iter().filter(|f| !matches!(name_of(f).as_str(), "to" | "cc" | "bcc")) {
        out.extend_from_slice(f);
    }
    out.extend_from_slice(s.eol);
    out.extend_from_slice(s.body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_recipients_get_their_own_copy() {
        let orig = b"To: Bob <bob@x.test>\nCc: carol@y.test\nSubject: s\n\nbody\n";
        let extra = ["BOB@x.test", "carol@y.test", "dave@z.test", "dave@z.test"].map(String::from);
        let out = originals(orig, &extra).unwrap();
        assert_eq!(out.len(), 2, "the original, and one copy for dave");
        assert_eq!(out[0], orig);
        assert_eq!(out[1], b"To: dave@z.test\nSubject: s\n\nbody\n");
        // Only command-line recipients: one copy each, nothing else.
        let out = originals(b"Subject: s\n\nbody\n", &["a@b.test".into()]).unwrap();
        assert_eq!(out, [b"To: a@b.test\nSubject: s\n\nbody\n".to_vec()]);
        assert!(originals(b"Subject: s\n\nbody\n", &[]).is_err());
        assert!(originals(b"Subject: s\n\nbody\n", &["not an address".into()]).is_err());
        assert_eq!(
            addresses(b"To: a@b.test\nBcc: c@d.test, e@f.test\n\n", &["bcc"]).unwrap(),
            ["c@d.test", "e@f.test"]
        );
    }
}
