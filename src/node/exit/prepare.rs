//! Exit delivery of an original (thesis 6.4.4): who gets it and what the mail looks like.
//!
//! Recipients come from To and Cc only (Bcc is dropped), de-duplicated, at most
//! `max_recipients` distinct ones; an `exitprivate`-only mix delivers to its
//! `local_domains` only, and no exit delivers to a local part that asks the MTA to relay
//! (`address::relays`). The header is the exit's: only the fields of the allowlist
//! (`headers`) are copied; From is the exit's anonymous address (the sender's display
//! name kept, marked as anonymous, as Mixmaster and Mixminion do), Date and Message-ID are
//! the exit's own, fixed when the original was queued (`Stamp`). A Comments header, as
//! Mixmaster's, tells the recipient the mail came through an anonymous remailer and how to
//! reach its operator. The original body is kept byte for byte; a short footer after it
//! says how to block further anonymous mail (nym.alias.net's "make it easy to filter"):
//! appended to a text/plain body, added as a last part to a multipart one, and otherwise
//! (an encoded single part, or a PGP/MIME encrypted or signed multipart, whose two parts
//! must stay two) the original becomes the first part of a multipart/mixed and the footer
//! the second.
//!
//! Every step is linear in the size of the original: the header is bounded and read once,
//! recipients go through a set, and the closing boundary is found in one pass over the
//! line starts. An original is delivered every round it waits, so a quadratic step would be
//! paid again and again.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::batch::stamp::Stamp;
use crate::format::headers::{self, name_of};
use crate::mixes::address::MixAddress;
use crate::mixes::modes::Modes;
use crate::node::counters::{self, Counter};
use crate::util::clock;

/// What the exit needs to know of its configuration.
pub struct Policy<'a> {
    pub address: &'a MixAddress,
    pub modes: Modes,
    pub local_domains: &'a [String],
    pub max_recipients: usize,
    pub operator: &'a str,
    /// The From of every delivered original (`anonymous_from`).
    pub from: &'a str,
}

/// A mail ready for the transport.
#[derive(Debug)]
pub struct Delivery {
    pub recipients: Vec<String>,
    pub mail: Vec<u8>,
    /// Recipients left out: over the cap, Bcc, or not local for an exitprivate mix.
    pub dropped_recipients: usize,
    /// Recipients refused because their local part would make the MTA relay elsewhere.
    pub refused_recipients: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExitError {
    #[error("original has no header block")]
    NoHeader,
    #[error("original has no recipient this exit may deliver to")]
    NoRecipient,
    #[error("original's header is over the bounds")]
    HeaderTooLarge,
}

impl ExitError {
    /// The counter an original dropped for this reason is counted under.
    pub fn counter(&self) -> Counter {
        match self {
            ExitError::HeaderTooLarge => counters::DROP_EXIT_HEADER_TOO_LARGE,
            ExitError::NoHeader | ExitError::NoRecipient => counters::DROP_EXIT_NO_RECIPIENT,
        }
    }
}

impl From<headers::HeaderError> for ExitError {
    fn from(e: headers::HeaderError) -> Self {
        match e {
            headers::HeaderError::TooLarge => ExitError::HeaderTooLarge,
            _ => ExitError::NoHeader,
        }
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
    let split = headers::split(original)?;
    let eol = split.eol;
    let (parsed, _) = mailparse::parse_headers(split.header).map_err(|_| ExitError::NoHeader)?;
    let (recipients, dropped, refused) = recipients(&parsed, policy);
    if recipients.is_empty() {
        return Err(ExitError::NoRecipient);
    }
    let mut mail = Vec::with_capacity(original.len() + 1024);
    for line in [
        format!("From: {}", from_field(&parsed, policy.from)),
        format!("Date: {}", clock::rfc5322(stamp.date)),
        format!("Message-ID: {}", stamp.message_id),
    ] {
        mail.extend_from_slice(line.as_bytes());
        mail.extend_from_slice(eol);
    }
    let mut label = Vec::new();
    for (i, line) in notice(policy).iter().enumerate() {
        label.extend_from_slice(if i == 0 { b"Comments: " } else { b"  " });
        label.extend_from_slice(line.as_bytes());
        label.extend_from_slice(eol);
    }
    let mut copied: Vec<&[u8]> = split.fields.iter().copied().filter(|f| headers::allowed(&name_of(f))).collect();
    copied.push(&label);
    mail.extend_from_slice(&with_footer(
        footing(&parsed, split.body),
        &copied,
        split.body,
        eol,
        &footer(policy),
        &wrap_boundary(stamp),
    ));
    Ok(Delivery { recipients, mail, dropped_recipients: dropped, refused_recipients: refused })
}

/// `mail` with `footer` added where a reader sees it (`footing`: after a plain body, as a
/// last part, or around the whole), its header fields as they are and its body byte for
/// byte inside; `boundary` names the multipart a wrap needs. For mail leaving a nym server,
/// which says how to block it the way an exit's delivery does.
pub fn add_footer(mail: &[u8], footer: &[String], boundary: &str) -> Result<Vec<u8>, ExitError> {
    let split = headers::split(mail)?;
    let (parsed, _) = mailparse::parse_headers(split.header).map_err(|_| ExitError::NoHeader)?;
    Ok(with_footer(footing(&parsed, split.body), &split.fields, split.body, split.eol, footer, boundary))
}

/// The distinct To and Cc addresses this exit delivers to (domain in lower case), at most
/// `max_recipients`, with the counts of those dropped (Bcc, not ours, over the cap) and of
/// those refused (`address::relays`). One pass, a set for the duplicates.
fn recipients(parsed: &[mailparse::MailHeader<'_>], policy: &Policy<'_>) -> (Vec<String>, usize, usize) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let (mut dropped, mut refused) = (0usize, 0usize);
    for h in parsed {
        let key = h.get_key_ref().to_ascii_lowercase();
        if key != "to" && key != "cc" && key != "bcc" {
            continue;
        }
        for a in crate::mixes::address::header_addresses(h) {
            if key == "bcc" {
                dropped += 1;
                continue;
            }
            let Some((local, domain)) = a.rsplit_once('@') else { continue };
            let addr = format!("{local}@{}", domain.to_ascii_lowercase());
            if !seen.insert(addr.clone()) {
                continue;
            }
            if crate::mixes::address::relays(&addr) || !crate::mixes::address::plausible(&addr) {
                refused += 1;
            } else if delivers_to(policy.modes, policy.local_domains, &addr) && out.len() < policy.max_recipients {
                out.push(addr);
            } else {
                dropped += 1;
            }
        }
    }
    (out, dropped, refused)
}

/// The From of a delivered original: the exit's anonymous address, with the display name
/// the sender gave (printable ASCII letters, digits and a little punctuation, at most 64
/// characters) marked as anonymous; without one, the address alone.
fn from_field(parsed: &[mailparse::MailHeader<'_>], from: &str) -> String {
    use mailparse::MailHeaderMap;
    let name = parsed
        .get_first_header("From")
        .and_then(|h| mailparse::addrparse_header(h).ok())
        .and_then(|l| match l.first() {
            Some(mailparse::MailAddr::Single(s)) => s.display_name.clone(),
            Some(mailparse::MailAddr::Group(g)) => Some(g.group_name.clone()),
            None => None,
        })
        .unwrap_or_default();
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || " .-_'".contains(*c)).take(64).collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.is_empty() {
        from.to_string()
    } else {
        format!("\"{clean} (anonymous)\" <{from}>")
    }
}

/// The mix's own mail (a block confirmation) as queued: its To is the one recipient, and
/// it is sent as it is.
pub fn prepare_notice(mail: &[u8]) -> Result<Delivery, ExitError> {
    let to = crate::format::wire::parse(mail).map_err(|_| ExitError::NoHeader)?.to;
    match to.as_slice() {
        [one] => Ok(Delivery {
            recipients: vec![one.to_ascii_lowercase()],
            mail: mail.to_vec(),
            dropped_recipients: 0,
            refused_recipients: 0,
        }),
        _ => Err(ExitError::NoRecipient),
    }
}

/// Footer lines saying how to block.
fn footer(policy: &Policy<'_>) -> Vec<String> {
    vec![
        "-- ".to_string(),
        "This mail came through the Mixtasy anonymous remailer".to_string(),
        format!("{}. To get no more anonymous mail through it,", policy.address),
        format!("send a mail with the subject \"{}\" to {}", crate::abuse::block::SUBJECT, policy.address),
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
    let ct =
        mailparse::parse_content_type(&headers.get_first_value("Content-Type").unwrap_or_else(|| "text/plain".into()));
    let cte = headers.get_first_value("Content-Transfer-Encoding").unwrap_or_default().trim().to_ascii_lowercase();
    if ct.mimetype == "text/plain" && ["", "7bit", "8bit", "binary", "quoted-printable"].contains(&cte.as_str()) {
        return Footing::Append;
    }
    // RFC 1847's security multiparts have exactly two parts (RFC 3156: control and data, or
    // data and signature): a third would break decryption or verification in strict
    // readers, so they are wrapped whole.
    let security = matches!(ct.mimetype.as_str(), "multipart/encrypted" | "multipart/signed");
    if let (true, Some(boundary)) = (ct.mimetype.starts_with("multipart/") && !security, ct.params.get("boundary")) {
        if let Some(at) = last_close_delimiter(body, boundary) {
            return Footing::Insert { at, boundary: boundary.clone() };
        }
    }
    Footing::Wrap
}

/// Longest boundary RFC 2046 allows; a longer one is treated as no boundary (the mail is
/// wrapped), which also bounds every comparison below.
const MAX_BOUNDARY: usize = 70;

/// The offset of the last line that starts with the closing delimiter `--boundary--`, in
/// one pass over the line starts: a comparison never runs past the end of its line (the
/// delimiter holds no line end), so the search is linear in the body whatever the boundary.
fn last_close_delimiter(body: &[u8], boundary: &str) -> Option<usize> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY || boundary.contains(['\r', '\n']) {
        return None;
    }
    let close = format!("--{boundary}--");
    let mut found = None;
    let mut start = 0;
    while start < body.len() {
        if body[start..].starts_with(close.as_bytes()) {
            found = Some(start);
        }
        match body[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    found
}

/// The boundary of the multipart/mixed a wrapped original goes in: derived from the
/// stamp's random Message-ID, so that every attempt (one per recipient, retries days
/// later) sends the same bytes, and nobody who has not seen the mail can guess it.
fn wrap_boundary(stamp: &Stamp) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(stamp.message_id.as_bytes());
    format!("mixtasy-{}", crate::format::message::hex(&h[..8]))
}

/// The header fields and body of a delivered mail: `fields` (already filtered, the label
/// last) and the original body with the footer, which keeps the body byte for byte inside.
fn with_footer(
    footing: Footing,
    fields: &[&[u8]],
    body: &[u8],
    eol: &[u8],
    footer: &[String],
    wrap_boundary: &str,
) -> Vec<u8> {
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
            let boundary = wrap_boundary;
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
            part(&mut out, boundary);
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
    let id = crate::batch::state::random_id(tx, crate::batch::state::Queue::Exit, &mut rand::rng())?;
    tx.execute(
        "INSERT INTO exitq (id, queued, original, date, message_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            id,
            crate::batch::state::unix(now),
            original,
            crate::batch::state::unix(stamp.date),
            stamp.message_id
        ],
    )?;
    Ok(())
}

/// Queues the mix's own mail (a block confirmation), complete as it is to be sent. Notices
/// skip the pool: they are the mix's own mail, answering a request sent in the clear.
pub fn enqueue_notice(tx: &rusqlite::Transaction<'_>, mail: &[u8], now: SystemTime) -> anyhow::Result<()> {
    let id = crate::batch::state::random_id(tx, crate::batch::state::Queue::Exit, &mut rand::rng())?;
    tx.execute(
        "INSERT INTO exitq (id, queued, original, date, kind) VALUES (?1, ?2, ?3, ?2, 1)",
        rusqlite::params![id, crate::batch::state::unix(now), mail],
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

/// One exit-queue entry, as the round hands it to `deliver`.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub id: i64,
    pub kind: Queued,
    /// When the pool drew it (or the notice was queued): its retry deadline's start.
    pub queued: SystemTime,
}

/// Every queued entry, in no particular order (the round shuffles what it sends).
pub fn queued(state: &crate::batch::state::State) -> anyhow::Result<Vec<Entry>> {
    let mut st = state.conn().prepare("SELECT id, kind, queued FROM exitq")?;
    let rows = st.query_map([], |r| {
        let kind = if r.get::<_, i64>(1)? == 1 { Queued::Notice } else { Queued::Original };
        Ok(Entry { id: r.get::<_, i64>(0)?, kind, queued: crate::batch::state::from_unix(r.get(2)?) })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One queued entry and its stamp.
pub fn load(state: &crate::batch::state::State, id: i64) -> anyhow::Result<(Vec<u8>, Stamp)> {
    Ok(state.conn().query_row("SELECT original, date, message_id FROM exitq WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, Stamp { date: crate::batch::state::from_unix(r.get(1)?), message_id: r.get(2)? }))
    })?)
}

/// What became of one recipient of a queued entry. Kept (by salted hash, `recipient_hash`)
/// in `exit_rcpt` until the entry leaves the queue: one failing recipient holds back
/// nobody, and a retry never sends again to a recipient already done. Only a crash
/// between the transport's acceptance and the commit recording it sends twice, to that
/// one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered = 1,
    /// On the blocklist (`drop.recipients-blocked`).
    Blocked = 2,
    /// Over `recipient_quota` with `over_quota = "drop"` (`drop.recipients-quota`).
    OverQuota = 3,
    /// The transport refused the address itself (`drop.recipients-refused`).
    Refused = 4,
    /// Still failing (or waiting for quota) `exit_giveup` after the draw (`drop.recipients-gave-up`).
    GaveUp = 5,
}

impl Outcome {
    fn from_i64(v: i64) -> Option<Self> {
        [Outcome::Delivered, Outcome::Blocked, Outcome::OverQuota, Outcome::Refused, Outcome::GaveUp]
            .into_iter()
            .find(|o| *o as i64 == v)
    }

    /// The per-recipient counter, if any (a delivery is counted per original).
    pub fn counter(self) -> Option<Counter> {
        match self {
            Outcome::Delivered => None,
            Outcome::Blocked => Some(counters::DROP_RECIPIENTS_BLOCKED),
            Outcome::OverQuota => Some(counters::DROP_RECIPIENTS_QUOTA),
            Outcome::Refused => Some(counters::DROP_RECIPIENTS_REFUSED),
            Outcome::GaveUp => Some(counters::DROP_RECIPIENTS_GAVE_UP),
        }
    }
}

/// The counter a whole original leaves the queue under once every recipient is done: it
/// was delivered if anyone got it; otherwise the first of gave-up, quota, blocked, refused
/// that applies.
pub fn leaving_counter(outcomes: &[Outcome]) -> Counter {
    let any = |o: Outcome| outcomes.contains(&o);
    if any(Outcome::Delivered) {
        counters::EXIT_DELIVERED
    } else if any(Outcome::GaveUp) {
        counters::DROP_EXIT_GAVE_UP
    } else if any(Outcome::OverQuota) {
        counters::DROP_EXIT_QUOTA
    } else if any(Outcome::Blocked) {
        counters::DROP_EXIT_BLOCKED
    } else {
        counters::DROP_EXIT_NO_RECIPIENT
    }
}

/// A recipient as `exit_rcpt` knows it: the salted hash the blocklist and quota use.
pub fn recipient_hash(conn: &rusqlite::Connection, address: &str) -> anyhow::Result<[u8; 32]> {
    crate::abuse::hashed::address_hash(conn, address)
}

/// The recipients of entry `id` already done, by hash.
pub fn outcomes(conn: &rusqlite::Connection, id: i64) -> anyhow::Result<std::collections::HashMap<[u8; 32], Outcome>> {
    let mut st = conn.prepare("SELECT hash, outcome FROM exit_rcpt WHERE entry = ?1")?;
    let rows = st.query_map([id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for r in rows {
        let (h, o) = r?;
        let (Ok(h), Some(o)) = (<[u8; 32]>::try_from(h), Outcome::from_i64(o)) else {
            anyhow::bail!("a malformed row in exit_rcpt")
        };
        out.insert(h, o);
    }
    Ok(out)
}

/// Records a recipient's outcome and counts it, in the caller's transaction (a delivery
/// commits its quota charge and `remember_sent` with it).
pub fn record(tx: &rusqlite::Transaction<'_>, id: i64, hash: &[u8; 32], outcome: Outcome) -> anyhow::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO exit_rcpt (entry, hash, outcome) VALUES (?1, ?2, ?3)",
        rusqlite::params![id, &hash[..], outcome as i64],
    )?;
    if let Some(c) = outcome.counter() {
        counters::bump(tx, c, 1)?;
    }
    Ok(())
}

/// Forgets the recipients of an entry leaving the queue, in the transaction that removes it.
pub fn forget(tx: &rusqlite::Transaction<'_>, id: i64) -> anyhow::Result<()> {
    tx.execute("DELETE FROM exit_rcpt WHERE entry = ?1", [id])?;
    Ok(())
}

/// Past `max` entries, the oldest (by draw time) leave the queue, in the caller's
/// transaction; returns how many originals and how many notices went. An exit whose
/// transport is down for days, or a flood of deliverable originals, never grows the state
/// file without bound.
pub fn cap(tx: &rusqlite::Transaction<'_>, max: u64) -> anyhow::Result<(i64, i64)> {
    let n: i64 = tx.query_row("SELECT count(*) FROM exitq", [], |r| r.get(0))?;
    let over = n - max as i64;
    if over <= 0 {
        return Ok((0, 0));
    }
    let victims: Vec<(i64, i64)> = {
        let mut st = tx.prepare("SELECT id, kind FROM exitq ORDER BY queued, id LIMIT ?1")?;
        let rows = st.query_map([over], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let (mut originals, mut notices) = (0, 0);
    for (id, kind) in victims {
        tx.execute("DELETE FROM exitq WHERE id = ?1", [id])?;
        forget(tx, id)?;
        if kind == 1 {
            notices += 1;
        } else {
            originals += 1;
        }
    }
    counters::bump(tx, counters::DROP_EXIT_QUEUE_FULL, originals)?;
    counters::bump(tx, counters::BLOCK_NOTICE_DROPPED, notices)?;
    Ok((originals, notices))
}

/// How long after a delivery a bounce of it is still recognised: longer than an MTA keeps
/// mail it cannot deliver (Postfix's `maximal_queue_lifetime`, 5 days by default).
pub const BOUNCE_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

/// Remembers (salted, hashed) a Message-ID the exit delivered an original with, for
/// `BOUNCE_WINDOW`, so that a bounce quoting it is destroyed (`is_own_bounce`). The expiry
/// is rounded up to a whole day: the state keeps no delivery time to the second.
pub fn remember_sent(tx: &rusqlite::Transaction<'_>, message_id: &str, now: SystemTime) -> anyhow::Result<()> {
    let h = crate::abuse::hashed::address_hash(tx, message_id)?;
    let expires = (crate::batch::state::unix(now) + BOUNCE_WINDOW.as_secs() as i64) / 86400 * 86400 + 86400;
    tx.execute("INSERT OR REPLACE INTO exit_sent (hash, expires) VALUES (?1, ?2)", rusqlite::params![&h[..], expires])?;
    Ok(())
}

/// Forgets the delivered Message-IDs whose bounce window has passed.
pub fn purge_sent(conn: &rusqlite::Connection, now: SystemTime) -> anyhow::Result<()> {
    conn.execute("DELETE FROM exit_sent WHERE expires < ?1", [crate::batch::state::unix(now)])?;
    Ok(())
}

/// Every Message-ID of the exit's own form (`<32 hex digits@fqdn>`, `Stamp::new`) quoted
/// anywhere in `mail`: a bounce (a DSN's message/rfc822 or text/rfc822-headers part, or a
/// quoted original) names the Message-ID of what bounced. One pass over the occurrences
/// of `@fqdn>`; case-insensitive, as MTAs may fold case.
pub fn quoted_own_ids(mail: &[u8], fqdn: &str) -> Vec<String> {
    let tail = format!("@{}>", fqdn.to_ascii_lowercase());
    let lower = mail.to_ascii_lowercase();
    let t = tail.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + t.len() <= lower.len() {
        match lower[i..].windows(t.len()).position(|w| w == t) {
            None => break,
            Some(p) => {
                let at = i + p;
                if at >= 33 && lower[at - 33] == b'<' && lower[at - 32..at].iter().all(|b| b.is_ascii_hexdigit()) {
                    out.push(String::from_utf8_lossy(&lower[at - 33..at + t.len()]).into_owned());
                }
                i = at + t.len();
            }
        }
    }
    out
}

/// Whether any of `ids` is a Message-ID this exit delivered an original with, within the
/// bounce window: such mail is a bounce of an original and quotes its plaintext.
pub fn is_own_bounce(conn: &rusqlite::Connection, ids: &[String]) -> anyhow::Result<bool> {
    for id in ids {
        let h = crate::abuse::hashed::address_hash(conn, id)?;
        let found: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM exit_sent WHERE hash = ?1)", [&h[..]], |r| r.get(0))?;
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(addr: &'a MixAddress, modes: &str, local: &'a [String]) -> Policy<'a> {
        Policy {
            address: addr,
            modes: Modes::parse(modes).unwrap(),
            local_domains: local,
            max_recipients: 3,
            operator: "abuse@exit.test",
            from: "nobody@exit.test",
        }
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
        assert!(text.starts_with("From: nobody@exit.test\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\nMessage-ID: <"));
        assert!(text.contains("Subject: hi\r\n  folded\r\n"));
        assert!(text.contains("Comments: This message was sent through the Mixtasy anonymous\r\n"));
        assert!(text.contains("<abuse@exit.test>"));
        for gone in ["Received", "Bcc", "Delivered-To", "hidden@"] {
            assert!(!text.contains(gone), "{gone} copied");
        }
        assert!(
            text.contains("\r\n\r\nbody\r\nmore\r\n-- \r\nThis mail came through the Mixtasy anonymous remailer\r\n"),
            "{text}"
        );
        assert!(text.ends_with("subject \"destination-block\" to mixtasy@exit.test\r\nfrom the address to block, and answer the confirmation.\r\n"));
    }

    fn deliver(orig: &[u8]) -> Vec<u8> {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        prepare(orig, &policy(&addr, "exitpublic", &[]), &Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng()))
            .unwrap()
            .mail
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
        assert!(
            String::from_utf8_lossy(&out).contains("\r\n\r\nJVBERi0xLjQK\r\n\r\n--mixtasy-"),
            "body kept byte for byte"
        );
        // PGP/MIME (RFC 3156) keeps its two parts: the whole original is wrapped.
        let pgp = b"To: a@x.test\nMIME-Version: 1.0\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e1\"\n\n--e1\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--e1\nContent-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--e1--\n";
        let out = deliver(pgp);
        let parsed = mailparse::parse_mail(&out).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
        assert_eq!(parsed.subparts[0].ctype.mimetype, "multipart/encrypted");
        assert_eq!(parsed.subparts[0].subparts.len(), 2, "the encrypted multipart keeps exactly two parts");
        assert!(parsed.subparts[1].get_body().unwrap().contains("destination-block"));
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
        assert!(
            text.starts_with(&format!("From: nobody@exit.test\nDate: Thu, 1 Jan 1970 00:00:00 +0000\nMessage-ID: {}\nTo: bob@exit.test, eve@else.test\nComments: ", stamp.message_id)),
            "LF originals keep LF; the sender's Date and Message-ID are replaced: {text}"
        );
        assert!(!text.contains('\r'));
        assert_eq!(prepare(b"To: eve@else.test\n\nhi\n", &p, &stamp).unwrap_err(), ExitError::NoRecipient);
        assert_eq!(prepare(b"no header here", &p, &stamp).unwrap_err(), ExitError::NoHeader);
        // Source routes out of the local domain are refused, counted apart.
        let d = prepare(b"To: victim%remote.test@exit.test, remote.test!v2@exit.test, <\"a@b.test\"@exit.test>, bob@exit.test\n\nhi\n", &p, &stamp).unwrap();
        assert_eq!(
            (d.recipients.as_slice(), d.refused_recipients, d.dropped_recipients),
            (["bob@exit.test".to_string()].as_slice(), 3, 0)
        );
        assert_eq!(
            prepare(b"To: victim%remote.test@exit.test\n\nhi\n", &p, &stamp).unwrap_err(),
            ExitError::NoRecipient
        );
    }

    /// What names the sender's machine or forges an identity never leaves; the exit's own
    /// From, Date and Message-ID do, the same on every attempt.
    #[test]
    fn only_the_allowlist_and_the_exits_own_fields() {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        let p = policy(&addr, "exitpublic", &[]);
        let stamp = Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng());
        let orig = b"From: The President <president@whitehouse.example>\nSender: s@x.example\nTo: bob@rcpt.test\nMessage-ID: <1@alice-laptop.home.example>\n\
Date: Mon, 2 Mar 2026 10:00:00 +0200\nUser-Agent: NeoMutt/1\nX-Mailer: m\nX-Originating-IP: 198.51.100.7\nOrganization: Home\n\
Disposition-Notification-To: a@b.example\nReturn-Receipt-To: a@b.example\nComments: mine\nReply-To: r@x.test\nSubject: hi\n\nbody\n";
        let d = prepare(orig, &p, &stamp).unwrap();
        let again = prepare(orig, &p, &stamp).unwrap();
        let text = String::from_utf8(d.mail.clone()).unwrap();
        let (head, _) = text.split_once("\n\n").unwrap();
        let names: Vec<&str> =
            head.lines().filter(|l| !l.starts_with(' ')).map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(names, ["From", "Date", "Message-ID", "To", "Reply-To", "Subject", "Comments"], "{head}");
        assert!(
            head.starts_with(
                "From: \"The President (anonymous)\" <nobody@exit.test>\nDate: Thu, 1 Jan 1970 00:00:00 +0000\n"
            ),
            "{head}"
        );
        for gone in ["whitehouse", "alice-laptop", "+0200", "NeoMutt", "198.51.100.7", "mine"] {
            assert!(!text.contains(gone), "{gone} leaked");
        }
        assert_eq!(d.mail, again.mail, "a retry sends the same mail");
        // A display name is cleaned; none at all gives the bare address.
        let d = prepare(b"From: =?utf-8?q?\"Evil\"?= <e@x.test>\nTo: bob@rcpt.test\n\nb\n", &p, &stamp).unwrap();
        assert!(String::from_utf8(d.mail).unwrap().starts_with("From: \"Evil (anonymous)\" <nobody@exit.test>\n"));
        let d = prepare(b"To: bob@rcpt.test\n\nb\n", &p, &stamp).unwrap();
        assert!(d.mail.starts_with(b"From: nobody@exit.test\n"));
    }

    /// Recipients are de-duplicated before the cap, and a header past the bounds is refused
    /// before anything else is read.
    #[test]
    fn recipients_distinct_then_capped_and_headers_bounded() {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        let p = policy(&addr, "exitpublic", &[]);
        let stamp = Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng());
        let d =
            prepare(b"To: a@x.test, A@X.TEST\nCc: a@x.test, b@x.test, c@x.test, d@x.test\n\nhi\n", &p, &stamp).unwrap();
        assert_eq!(d.recipients, ["a@x.test", "A@x.test", "b@x.test"], "local parts keep their case");
        assert_eq!(d.dropped_recipients, 2, "c and d over the cap; duplicates are not drops");
        let many: String = (0..20_000).map(|i| format!("r{i}@x.test")).collect::<Vec<_>>().join(", ");
        let orig = format!("To: {many}\n\nhi\n");
        assert_eq!(prepare(orig.as_bytes(), &p, &stamp).unwrap_err(), ExitError::HeaderTooLarge);
        assert_eq!(ExitError::HeaderTooLarge.counter().name, "drop.exit-header-too-large");
        let some: String = (0..4_000).map(|i| format!("r{i}@x.test")).collect::<Vec<_>>().join(", ");
        let d = prepare(format!("To: {some}, r0@x.test\n\nhi\n").as_bytes(), &p, &stamp).unwrap();
        assert_eq!((d.recipients.len(), d.dropped_recipients), (3, 3997));
    }

    /// A wrapped original is the same bytes on every attempt (one per recipient, retries
    /// days later): its boundary comes from the stamp, not from a fresh random number.
    #[test]
    fn a_wrapped_original_is_byte_identical_on_every_attempt() {
        let addr = MixAddress::for_fqdn("exit.test").unwrap();
        let p = policy(&addr, "exitpublic", &[]);
        let stamp = Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng());
        let b64 = b"To: a@x.test, b@x.test\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n";
        let first = prepare(b64, &p, &stamp).unwrap().mail;
        assert!(String::from_utf8_lossy(&first).contains("boundary=\"mixtasy-"));
        assert_eq!(first, prepare(b64, &p, &stamp).unwrap().mail);
        let other = Stamp::new(&addr, SystemTime::UNIX_EPOCH, &mut rand::rng());
        assert_ne!(first, prepare(b64, &p, &other).unwrap().mail, "another original, another boundary");
        // An address the transport could not take is refused up front, not retried.
        let d = prepare(b"To: x/y@x.test, good.one@x.test\n\nhi\n", &p, &stamp).unwrap();
        assert_eq!((d.recipients.as_slice(), d.refused_recipients), (["good.one@x.test".to_string()].as_slice(), 1));
    }

    /// A bounce names the Message-ID of what bounced; only ids of the exit's own form count.
    #[test]
    fn own_ids_quoted_in_a_bounce() {
        let id = "<0123456789abcdef0123456789ABCDEF@Exit.test>";
        let bounce = format!("Subject: Undelivered Mail\n\n--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: {id}\nIn-Reply-To: <short@exit.test>\nReferences: <0123@exit.test> <x0123456789abcdef0123456789abcdef@exit.test.evil>\n");
        assert_eq!(quoted_own_ids(bounce.as_bytes(), "exit.test"), ["<0123456789abcdef0123456789abcdef@exit.test>"]);
        assert!(quoted_own_ids(b"", "exit.test").is_empty());
        let mut s = crate::batch::state::State::in_memory().unwrap();
        let tx = s.transaction().unwrap();
        remember_sent(&tx, "<0123456789abcdef0123456789abcdef@exit.test>", SystemTime::UNIX_EPOCH).unwrap();
        tx.commit().unwrap();
        let ids = quoted_own_ids(bounce.as_bytes(), "exit.test");
        assert!(is_own_bounce(s.conn(), &ids).unwrap());
        assert!(!is_own_bounce(s.conn(), &["<ffff456789abcdef0123456789abcdef@exit.test>".to_string()]).unwrap());
        purge_sent(s.conn(), SystemTime::UNIX_EPOCH + BOUNCE_WINDOW + std::time::Duration::from_secs(3600)).unwrap();
        assert!(is_own_bounce(s.conn(), &ids).unwrap(), "kept to the end of the day");
        purge_sent(s.conn(), SystemTime::UNIX_EPOCH + BOUNCE_WINDOW + std::time::Duration::from_secs(86400 + 1))
            .unwrap();
        assert!(!is_own_bounce(s.conn(), &ids).unwrap(), "forgotten after the bounce window");
    }

    /// The closing delimiter is found on line starts only; a boundary past RFC 2046's 70
    /// characters is no boundary, so the mail is wrapped, never searched for it.
    #[test]
    fn closing_delimiter_in_one_pass() {
        assert_eq!(last_close_delimiter(b"a\n--b--x\n--b--\nz", "b"), Some(9));
        assert_eq!(last_close_delimiter(b"x--b--\n", "b"), None);
        assert_eq!(last_close_delimiter(b"--b--", "b"), Some(0));
        let dashes = "-".repeat(71);
        let body = format!("--{dashes}--\n");
        assert_eq!(last_close_delimiter(body.as_bytes(), &dashes), None);
        let ok = "-".repeat(70);
        let mut body = format!("--{ok}-\n").repeat(10_000);
        body.push_str(&format!("--{ok}--\n"));
        assert_eq!(last_close_delimiter(body.as_bytes(), &ok), Some(body.len() - ok.len() - 5));
    }
}
