//! The header allowlist: which fields of an original leave the exit, the same list for the
//! exit (`exit::prepare`) and for the sender's tool (`mixtasy create`/`send`), so that an
//! exit running older software leaks nothing either.
//!
//! Kept: the fields a recipient needs to read and answer the mail (To, Cc, Subject,
//! Reply-To, In-Reply-To, References) and those that say how the body is encoded
//! (MIME-Version, Content-*). Everything else goes: a forged From or Sender, receipt
//! requests (Disposition-Notification-To, Return-Receipt-To), and what names the sender's
//! machine (Message-ID, Date with its time zone, User-Agent, X-Mailer, X-Originating-IP,
//! Organization, Received). The exit writes its own From, Date and Message-ID.
//!
//! The header block is bounded (`MAX_HEADER_BYTES`, `MAX_FIELDS`, as Postfix's
//! `header_size_limit`), so that every later step is linear in a bounded header; the body
//! is never looked at here.

/// Fields kept by name (lower case); `content-*` are kept too (`allowed`).
pub const ALLOWED: &[&str] = &["to", "cc", "subject", "reply-to", "in-reply-to", "references", "mime-version"];

/// Largest header block (bytes, up to the blank line) an original may have: Postfix's
/// `header_size_limit` (100 KiB). Mail from real clients stays far below it.
pub const MAX_HEADER_BYTES: usize = 102_400;
/// Most header fields an original may have.
pub const MAX_FIELDS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("the original has no header block (fields, then a blank line)")]
    NoHeader,
    #[error("the original's header is larger than {MAX_HEADER_BYTES} bytes or has more than {MAX_FIELDS} fields")]
    TooLarge,
}

/// Whether a field (by name, any case) passes the allowlist.
pub fn allowed(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    ALLOWED.contains(&name.as_str()) || name.starts_with("content-")
}

/// An original split at its blank line, in one pass over the header only.
#[derive(Debug)]
pub struct Split<'a> {
    /// Each field with its continuation lines and line ends, in order.
    pub fields: Vec<&'a [u8]>,
    /// The header block, blank line excluded (what `mailparse::parse_headers` should see).
    pub header: &'a [u8],
    /// Everything after the blank line.
    pub body: &'a [u8],
    /// The line end the original uses (that of its first field).
    pub eol: &'static [u8],
}

/// Splits an original into its fields and body; refuses a header over the bounds before
/// reading further.
pub fn split(original: &[u8]) -> Result<Split<'_>, HeaderError> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut start = 0;
    while pos < original.len() {
        if pos > MAX_HEADER_BYTES || fields.len() > MAX_FIELDS {
            return Err(HeaderError::TooLarge);
        }
        let end = original[pos..].iter().position(|&b| b == b'\n').map_or(original.len(), |i| pos + i + 1);
        let line = &original[pos..end];
        if line == b"\r\n" || line == b"\n" {
            if start < pos {
                fields.push(&original[start..pos]);
            }
            if fields.len() > MAX_FIELDS {
                return Err(HeaderError::TooLarge);
            }
            let eol: &'static [u8] = if fields.first().is_some_and(|f| f.ends_with(b"\r\n")) { b"\r\n" } else { b"\n" };
            return Ok(Split { fields, header: &original[..pos], body: &original[end..], eol });
        }
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation && start < pos {
            fields.push(&original[start..pos]);
            start = pos;
        }
        if !continuation && !line.contains(&b':') {
            return Err(HeaderError::NoHeader);
        }
        pos = end;
    }
    Err(HeaderError::NoHeader)
}

/// The name of a field, lower case.
pub fn name_of(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(&field[..colon]).trim().to_ascii_lowercase()
}

/// The sender's side: the original with only allowlisted fields (and those named in
/// `keep`, any case), and the names of the fields removed (as written, each once, in
/// order). The body is kept byte for byte.
pub fn filter(original: &[u8], keep: &[String]) -> Result<(Vec<u8>, Vec<String>), HeaderError> {
    let s = split(original)?;
    let mut out = Vec::with_capacity(original.len());
    let mut removed: Vec<String> = Vec::new();
    for f in &s.fields {
        let name = name_of(f);
        if allowed(&name) || keep.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
            out.extend_from_slice(f);
        } else {
            let shown =
                String::from_utf8_lossy(&f[..f.iter().position(|&b| b == b':').unwrap_or(0)]).trim().to_string();
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(&shown)) {
                removed.push(shown);
            }
        }
    }
    out.extend_from_slice(s.eol);
    out.extend_from_slice(s.body);
    Ok((out, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAKY: &[u8] = b"From: The President <president@whitehouse.example>\r\nSender: x@y.example\r\nTo: bob@rcpt.test\r\n\
Message-ID: <1@alice-laptop.home.example>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0200\r\nUser-Agent: NeoMutt/20250113\r\n\
X-Mailer: m\r\nX-Originating-IP: 198.51.100.7\r\nOrganization: Home\r\nDisposition-Notification-To: a@b.example\r\n\
Return-Receipt-To: a@b.example\r\nSubject: hi\r\n  folded\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\nuser-agent: again\r\n\r\nbody\r\n";

    #[test]
    fn only_allowlisted_fields_pass() {
        let (out, removed) = filter(LEAKY, &[]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "To: bob@rcpt.test\r\nSubject: hi\r\n  folded\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\n\r\nbody\r\n");
        assert_eq!(
            removed,
            [
                "From",
                "Sender",
                "Message-ID",
                "Date",
                "User-Agent",
                "X-Mailer",
                "X-Originating-IP",
                "Organization",
                "Disposition-Notification-To",
                "Return-Receipt-To"
            ]
        );
        let (out, removed) = filter(LEAKY, &["x-mailer".to_string()]).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\r\nX-Mailer: m\r\n"));
        assert!(!removed.contains(&"X-Mailer".to_string()));
    }

    #[test]
    fn the_header_is_bounded_and_read_in_one_pass() {
        let mut big = b"To: a@b.test\n".to_vec();
        big.extend(std::iter::repeat_n(b"X-A: 1\n".as_slice(), MAX_FIELDS + 1).flatten());
        big.extend_from_slice(b"\nbody");
        assert_eq!(split(&big).unwrap_err(), HeaderError::TooLarge);
        let mut long = b"To: a@b.test\nX-Long: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES));
        long.extend_from_slice(b"\n\nbody");
        assert_eq!(split(&long).unwrap_err(), HeaderError::TooLarge);
        // The body is not read: a huge body after a small header splits at once.
        let mut ok = b"To: a@b.test\n\n".to_vec();
        ok.extend(std::iter::repeat_n(b'\n', 4 * MAX_HEADER_BYTES));
        let s = split(&ok).unwrap();
        assert_eq!((s.fields.len(), s.header, s.eol), (1, b"To: a@b.test\n".as_slice(), b"\n".as_slice()));
        assert_eq!(split(b"no header").unwrap_err(), HeaderError::NoHeader);
        assert_eq!(split(b"To: a@b.test\n").unwrap_err(), HeaderError::NoHeader);
    }
}
