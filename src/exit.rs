//! Exit delivery of an original (thesis 6.4.4): who gets it and what the mail looks like.
//!
//! Recipients come from To and Cc only (Bcc is dropped), at most `max_recipients`; an
//! `exitprivate`-only mix delivers to its `local_domains` only. Trace headers the original
//! may carry (Received, Return-Path, Delivered-To, X-Original-To) are never copied: they
//! could name the sender, and copied Delivered-To lines make MTAs loop. Date and Message-ID
//! are added if missing; a Comments header, as Mixmaster's, tells the recipient the mail
//! came through an anonymous remailer and how to reach its operator. The original body is
//! kept byte for byte; a short footer after it says how to block further anonymous mail
//! (nym.alias.net's "make it easy to filter"): appended to a text/plain body, added as a
//! last part to a multipart one, and otherwise (an encoded single part) the original
//! becomes the first part of a multipart/mixed and the footer the second.

use std::time::SystemTime;

use rand::RngCore;

use crate::address::MixAddress;
use crate::clock;
use crate::modes::Modes;

/// What the exit needs to know of its configuration.
pub struct Policy<'a> {
    pub address: &'a MixAddress,
    pub modes: Modes,
    pub local_domains: &'a [String],
    pub max_recipients: usize,
    pub operator: &'a str,
}

/// A mail ready for the transport.
#[derive(Debug)]
pub struct Delivery {
    pub recipients: Vec<String>,
    pub mail: Vec<u8>,
    /// Recipients left out: over the cap, Bcc, or not local for an exitprivate mix.
    pub dropped_recipients: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExitError {
    #[error("original has no header block")]
    NoHeader,
    #[error("original has no recipient this exit may deliver to")]
    NoRecipient,
}

const NEVER_COPIED: &[&str] = &["received", "return-path", "delivered-to", "x-original-to", "bcc", "comments"];

/// Splits an original into header lines (each with its continuation lines and line end)
/// and the body (everything after the blank line).
fn split(original: &[u8]) -> Option<(Vec<&[u8]>, &[u8])> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut start = 0;
    while pos < original.len() {
        let end = original[pos..].iter().position(|&b| b == b'\n').map_or(original.len(), |i| pos + i + 1);
        let line = &original[pos..end];
        if line == b"\r\n" || line == b"\n" {
            if start < pos {
                fields.push(&original[start..pos]);
            }
            return Some((fields, &original[end..]));
        }
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation && start < pos {
            fields.push(&original[start..pos]);
            start = pos;
        }
        if !continuation && !line.contains(&b':') {
            return None;
        }
        pos = end;
    }
    None
}

fn name_of(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(&field[..colon]).trim().to_ascii_lowercase()
}

/// The Date and Message-ID an original is delivered with if it has none, fixed when it is
/// queued so that every delivery attempt sends the same mail.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub date: SystemTime,
    /// `<random@exit-domain>`.
    pub message_id: String,
}

impl Stamp {
    pub fn new(address: &MixAddress, now: SystemTime, rng: &mut impl RngCore) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Stamp { date: now, message_id: format!("<{}@{}>", crate::message::hex(&b), address.fqdn()) }
    }
}

/// Whether an exit with these modes delivers to `address` at all: `exitpublic` to anyone,
/// `exitprivate` to its `local_domains` only.
pub fn delivers_to(modes: Modes, local_domains: &[String], address: &str) -> bool {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    modes.exitpublic || (modes.exitprivate && local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
}

/// Builds the delivery of one original.
pub fn prepare(original: &[u8], policy: &Policy<'_>, stamp: &Stamp) -> Result<Delivery, ExitError> {
    let (fields, body) = split(original).ok_or(ExitError::NoHeader)?;
    let eol: &[u8] = if fields.first().is_some_and(|f| f.ends_with(b"\r\n")) { b"\r\n" } else { b"\n" };
    let (headers, _) = mailparse::parse_headers(original).map_err(|_| ExitError::NoHeader)?;
    let mut candidates: Vec<String> = Vec::new();
    let mut dropped = 0usize;
    for h in &headers {
        let key = h.get_key().to_ascii_lowercase();
        if key != "to" && key != "cc" && key != "bcc" {
            continue;
        }
        for a in crate::address::header_addresses(h) {
            if key == "bcc" {
                dropped += 1;
                continue;
            }
            let Some((local, domain)) = a.rsplit_once('@') else { continue };
            let addr = format!("{local}@{}", domain.to_ascii_lowercase());
            if !candidates.contains(&addr) {
                candidates.push(addr);
            }
        }
    }
    let mut recipients = Vec::new();
    for r in candidates {
        if delivers_to(policy.modes, policy.local_domains, &r) && recipients.len() < policy.max_recipients {
            recipients.push(r);
        } else {
            dropped += 1;
        }
    }
    if recipients.is_empty() {
        return Err(ExitError::NoRecipient);
    }
    let mut mail = Vec::with_capacity(original.len() + 512);
    let has = |n: &str| fields.iter().any(|f| name_of(f) == n);
    if !has("date") {
        mail.extend_from_slice(format!("Date: {}", clock::rfc5322(stamp.date)).as_bytes());
        mail.extend_from_slice(eol);
    }
    if !has("message-id") {
        mail.extend_from_slice(format!("Message-ID: {}", stamp.message_id).as_bytes());
        mail.extend_from_slice(eol);
    }
    let mut label = Vec::new();
    for (i, line) in notice(policy).iter().enumerate() {
        label.extend_from_slice(if i == 0 { b"Comments: " } else { b"  " });
        label.extend_from_slice(line.as_bytes());
        label.extend_from_slice(eol);
    }
    let mut copied: Vec<&[u8]> = fields.iter().copied().filter(|f| !NEVER_COPIED.contains(&name_of(f).as_str())).collect();
    copied.push(&label);
    mail.extend_from_slice(&with_footer(footing(&headers, body), &copied, body, eol, &footer(policy)));
    Ok(Delivery { recipients, mail, dropped_recipients: dropped })
}

/// The mix's own mail (a block confirmation) as queued: its To is the one recipient, and
/// it is sent as it is.
pub fn prepare_notice(mail: &[u8]) -> Result<Delivery, ExitError> {
    let to = crate::wire::parse(mail).map_err(|_| ExitError::NoHeader)?.to;
    match to.as_slice() {
        [one] => Ok(Delivery { recipients: vec![one.to_ascii_lowercase()], mail: mail.to_vec(), dropped_recipients: 0 }),
        _ => Err(ExitError::NoRecipient),
    }
}

/// Footer lines saying how to block.
fn footer(policy: &Policy<'_>) -> Vec<String> {
    vec![
        "-- ".to_string(),
        "This mail came through the Mixtasy anonymous remailer".to_string(),
        format!("{}. To get no more anonymous mail through it,", policy.address),
        format!("send a mail with the subject \"{}\" to {}", crate::block::SUBJECT, policy.address),
        "from the address to block, and answer the confirmation.".to_string(),
    ]
}

/// Where the footer goes.
enum Footing {
    /// After a text/plain body that is not base64.
    Append,
    /// As a last part, at this offset (the closing delimiter) of a multipart body.
    Insert { at: usize, boundary: String },
    /// Around anything else: a multipart/mixed of the original and the footer.
    Wrap,
}

fn footing(headers: &[mailparse::MailHeader<'_>], body: &[u8]) -> Footing {
    use mailparse::MailHeaderMap;
    // No Content-Type means text/plain (RFC 2045 5.2).
    let ct = mailparse::parse_content_type(&headers.get_first_value("Content-Type").unwrap_or_else(|| "text/plain".into()));
    let cte = headers.get_first_value("Content-Transfer-Encoding").unwrap_or_default().trim().to_ascii_lowercase();
    if ct.mimetype == "text/plain" && ["", "7bit", "8bit", "binary", "quoted-printable"].contains(&cte.as_str()) {
        return Footing::Append;
    }
    if let (true, Some(boundary)) = (ct.mimetype.starts_with("multipart/"), ct.params.get("boundary")) {
        let close = format!("--{boundary}--");
        let last = body.windows(close.len()).enumerate().filter(|(i, w)| *w == close.as_bytes() && (*i == 0 || body[i - 1] == b'\n')).last();
        if let Some((at, _)) = last {
            return Footing::Insert { at, boundary: boundary.clone() };
        }
    }
    Footing::Wrap
}

/// The header fields and body of a delivered mail: `fields` (already filtered, the label
/// last) and the original body with the footer, which keeps the body byte for byte inside.
fn with_footer(footing: Footing, fields: &[&[u8]], body: &[u8], eol: &[u8], footer: &[String]) -> Vec<u8> {
    let text: Vec<u8> = footer.iter().flat_map(|l| l.bytes().chain(eol.iter().copied())).collect();
    let part = |out: &mut Vec<u8>, boundary: &str| {
        for line in [format!("--{boundary}").as_str(), "Content-Type: text/plain; charset=us-ascii", ""] {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(&text);
    };
    let mut out = Vec::with_capacity(body.len() + text.len() + 1024);
    let wrap = matches!(footing, Footing::Wrap);
    // On a wrap the original's Content-* fields move into its part.
    for f in fields.iter().filter(|f| !(wrap && name_of(f).starts_with("content-"))) {
        out.extend_from_slice(f);
    }
    match footing {
        Footing::Append => {
            out.extend_from_slice(eol);
            out.extend_from_slice(body);
            if !body.is_empty() && !body.ends_with(b"\n") {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(&text);
        }
        Footing::Insert { at, boundary } => {
            out.extend_from_slice(eol);
            out.extend_from_slice(&body[..at]);
            part(&mut out, &boundary);
            out.extend_from_slice(&body[at..]);
        }
        Footing::Wrap => {
            let boundary = format!("mixtasy-{:016x}", rand::random::<u64>());
            if !fields.iter().any(|f| name_of(f) == "mime-version") {
                out.extend_from_slice(b"MIME-Version: 1.0");
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"").as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(eol);
            out.extend_from_slice(format!("--{boundary}").as_bytes());
            out.extend_from_slice(eol);
            for f in fields.iter().filter(|f| name_of(f).starts_with("content-")) {
                out.extend_from_slice(f);
            }
            out.extend_from_slice(eol);
            out.extend_from_slice(body);
            out.extend_from_slice(eol);
            part(&mut out, &boundary);
            out.extend_from_slice(format!("--{boundary}--").as_bytes());
            out.extend_from_slice(eol);
        }
    }
    out
}

/// The label every delivered message carries, folded into short lines.
fn notice(policy: &Policy<'_>) -> Vec<String> {
    vec![
        "This message was sent through the Mixtasy anonymous".to_string(),
        format!("remailer {}. Its operator does not know who", policy.address),
        "sent it and cannot read replies to it. To reach the operator,".to_string(),
        format!("write to <{}>.", policy.operator),
    ]
}

/// Queues an original for delivery, with its stamp, inside the transaction that takes it
/// out of the pool: an original reaches the exit queue only when the pool draws it, so
/// `now` (its retry deadline's start) and the stamp's Date are draw times, not arrival times.
pub fn enqueue(tx: &rusqlite::Transaction<'_>, original: &[u8], now: SystemTime, stamp: &Stamp) -> anyhow::Result<()> {
    let id = crate::state::random_id(tx, "exitq", &mut rand::rng())?;
    tx.execute(
        "INSERT INTO exitq (id, queued, original, date, message_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![id, crate::state::unix(now), original, crate::state::unix(stamp.date), stamp.message_id],
    )?;
    Ok(())
}

/// Queues the mix's own mail (a block confirmation), complete as it is to be sent. Notices
/// skip the pool: they are the mix's own mail, answering a request sent in the clear.
pub fn enqueue_notice(tx: &rusqlite::Transaction<'_>, mail: &[u8], now: SystemTime) -> anyhow::Result<()> {
    let id = crate::state::random_id(tx, "exitq", &mut rand::rng())?;
    tx.execute(
        "INSERT INTO exitq (id, queued, original, date, kind) VALUES (?1, ?2, ?3, ?2, 1)",
        rusqlite::params![id, crate::state::unix(now), mail],
    )?;
    Ok(())
}

/// What an exit-queue entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// An anonymous original.
    Original,
    /// The mix's own notice.
    Notice,
}

/// Every queued entry: id, kind and when it was queued, in no particular order (the round
/// shuffles what it sends).
pub fn queued(state: &crate::state::State) -> anyhow::Result<Vec<(i64, Queued, SystemTime)>> {
    let mut st = state.conn().prepare("SELECT id, kind, queued FROM exitq")?;
    let rows = st.query_map([], |r| {
        let kind = if r.get::<_, i64>(1)? == 1 { Queued::Notice } else { Queued::Original };
        Ok((r.get::<_, i64>(0)?, kind, crate::state::from_unix(r.get(2)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One queued entry and its stamp.
pub fn load(state: &crate::state::State, id: i64) -> anyhow::Result<(Vec<u8>, Stamp)> {
    Ok(state.conn().query_row("SELECT original, date, message_id FROM exitq WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, Stamp { date: crate::state::from_unix(r.get(1)?), message_id: r.get(2)? }))
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(addr: &'a MixAddress, modes: &str, local: &'a [String]) -> Policy<'a> {
        Policy { address: addr, modes: Modes::parse(modes).unwrap(), local_domains: local, max_recipients: 3, operator: "abuse@exit.test" }
    }

    #[test]
    fn headers_and_recipients() {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        let p = policy(&addr, "exitpublic", &[]);
        let orig = b"Received: from evil\r\nTo: a@x.test, B <b@Y.test>\r\nCc: c@z.test, d@z.test\r\nBcc: hidden@x.test\r\nDelivered-To: loop@x.test\r\nSubject: hi\r\n  folded\r\n\r\nbody\r\nmore\r\n";
        let d = prepare(orig, &p, &Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng())).unwrap();
        assert_eq!(d.recipients, ["a@x.test", "b@y.test", "c@z.test"]);
        assert_eq!(d.dropped_recipients, 2, "one over the cap, one Bcc");
        let text = String::from_utf8(d.mail).unwrap();
        assert!(text.starts_with("Date: Thu, 1 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"));
        assert!(text.contains("Subject: hi\r\n  folded\r\n"));
        assert!(text.contains("Comments: This message was sent through the Mixtasy anonymous\r\n"));
        assert!(text.contains("<abuse@exit.test>"));
        for gone in ["Received", "Bcc", "Delivered-To", "hidden@"] {
            assert!(!text.contains(gone), "{gone} copied");
        }
        assert!(text.contains("\r\n\r\nbody\r\nmore\r\n-- \r\nThis mail came through the Mixtasy anonymous remailer\r\n"), "{text}");
        assert!(text.ends_with("subject \"destination-block\" to mixtasy@exit.test\r\nfrom the address to block, and answer the confirmation.\r\n"));
    }

    fn deliver(orig: &[u8]) -> Vec<u8> {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        prepare(orig, &policy(&addr, "exitpublic", &[]), &Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng())).unwrap().mail
    }

    /// The footer keeps every original body byte for byte, and mail software still reads
    /// the original content where it was.
    #[test]
    fn footer_keeps_the_original_body() {
        // No trailing newline: one is added before the footer.
        let plain = deliver(b"To: a@x.test\n\nno newline at end");
        assert!(String::from_utf8_lossy(&plain).contains("\n\nno newline at end\n-- \nThis mail came through"));
        // Multipart: a last text/plain part before the closing delimiter.
        let multi = b"To: a@x.test\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b1\"\n\npreamble\n--b1\nContent-Type: text/plain\n\none\n--b1\nContent-Type: text/html\n\n<p>two</p>\n--b1--\nepilogue\n";
        let out = deliver(multi);
        let parsed = mailparse::parse_mail(&out).unwrap();
        assert_eq!(parsed.subparts.len(), 3);
        assert_eq!(parsed.subparts[0].get_body().unwrap(), "one");
        assert_eq!(parsed.subparts[1].get_body().unwrap(), "<p>two</p>");
        assert!(parsed.subparts[2].get_body().unwrap().contains("destination-block"));
        assert!(out.ends_with(b"--b1--\nepilogue\n"));
        // A base64 single part: wrapped, its Content-* fields moved into its part.
        let b64 = b"To: a@x.test\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n";
        let out = deliver(b64);
        let parsed = mailparse::parse_mail(&out).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
        assert_eq!(parsed.subparts.len(), 2);
        assert_eq!(parsed.subparts[0].ctype.mimetype, "application/pdf");
        assert_eq!(parsed.subparts[0].get_body_raw().unwrap(), b"%PDF-1.4\n");
        assert!(String::from_utf8_lossy(&out).contains("\r\n\r\nJVBERi0xLjQK\r\n\r\n--mixtasy-"), "body kept byte for byte");
        // A multipart whose closing delimiter is missing is wrapped too, never cut.
        let broken = b"To: a@x.test\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\nunterminated\n";
        let out = deliver(broken);
        assert!(String::from_utf8_lossy(&out).contains("\n--zz\n\nunterminated\n\n--mixtasy-"));
    }

    #[test]
    fn exitprivate_delivers_locally_only() {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        let local = vec!["exit.test".to_string()];
        let p = policy(&addr, "exitprivate", &local);
        let stamp = Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng());
        let d = prepare(b"To: bob@exit.test, eve@else.test\nDate: x\nMessage-ID: <y@z>\n\nhi\n", &p, &stamp).unwrap();
        assert_eq!(d.recipients, ["bob@exit.test"]);
        assert_eq!(d.dropped_recipients, 1);
        let text = String::from_utf8(d.mail).unwrap();
        assert!(text.starts_with("To: bob@exit.test, eve@else.test\nDate: x\nMessage-ID: <y@z>\nComments: "), "LF originals keep LF; no Date/Message-ID added twice");
        assert!(!text.contains('\r'));
        assert_eq!(prepare(b"To: eve@else.test\n\nhi\n", &p, &stamp).unwrap_err(), ExitError::NoRecipient);
        assert_eq!(prepare(b"no header here", &p, &stamp).unwrap_err(), ExitError::NoHeader);
    }
}
