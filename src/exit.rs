//! Exit delivery of an original (thesis 6.4.4): who gets it and what the mail looks like.
//!
//! Recipients come from To and Cc only (Bcc is dropped), at most `max_recipients`; an
//! `exitprivate`-only mix delivers to its `local_domains` only. Trace headers the original
//! may carry (Received, Return-Path, Delivered-To, X-Original-To) are never copied: they
//! could name the sender, and copied Delivered-To lines make MTAs loop. Date and Message-ID
//! are added if missing; a Comments header, as Mixmaster's, tells the recipient the mail
//! came through an anonymous remailer and how to reach its operator. The body is untouched.

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
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Stamp { date: now, message_id: format!("<{id}@{}>", address.fqdn()) }
    }
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
        let Ok(list) = mailparse::addrparse_header(h) else { continue };
        for a in list.iter() {
            let addrs: Vec<&mailparse::SingleInfo> = match a {
                mailparse::MailAddr::Single(s) => vec![s],
                mailparse::MailAddr::Group(g) => g.addrs.iter().collect(),
            };
            for s in addrs {
                if key == "bcc" {
                    dropped += 1;
                    continue;
                }
                let Some((local, domain)) = s.addr.rsplit_once('@') else { continue };
                let addr = format!("{local}@{}", domain.to_ascii_lowercase());
                if !candidates.contains(&addr) {
                    candidates.push(addr);
                }
            }
        }
    }
    let mut recipients = Vec::new();
    for r in candidates {
        let domain = r.rsplit_once('@').map_or("", |(_, d)| d);
        let allowed = policy.modes.exitpublic || (policy.modes.exitprivate && policy.local_domains.iter().any(|d| d == domain));
        if allowed && recipients.len() < policy.max_recipients {
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
    for f in fields.iter().filter(|f| !NEVER_COPIED.contains(&name_of(f).as_str())) {
        mail.extend_from_slice(f);
    }
    for (i, line) in notice(policy).iter().enumerate() {
        mail.extend_from_slice(if i == 0 { b"Comments: " } else { b"  " });
        mail.extend_from_slice(line.as_bytes());
        mail.extend_from_slice(eol);
    }
    mail.extend_from_slice(eol);
    mail.extend_from_slice(body);
    Ok(Delivery { recipients, mail, dropped_recipients: dropped })
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

/// Queues an original for delivery (inside the intake transaction), with its stamp.
pub fn enqueue(tx: &rusqlite::Transaction<'_>, original: &[u8], now: SystemTime, stamp: &Stamp) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO exitq (queued, original, date, message_id) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![crate::state::unix(now), original, crate::state::unix(stamp.date), stamp.message_id],
    )?;
    Ok(())
}

/// Every queued original: id and when it was queued.
pub fn queued(state: &crate::state::State) -> anyhow::Result<Vec<(i64, SystemTime)>> {
    let mut st = state.conn().prepare("SELECT id, queued FROM exitq ORDER BY id")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, crate::state::from_unix(r.get(1)?))))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One queued original and its stamp.
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
        assert!(text.ends_with("\r\n\r\nbody\r\nmore\r\n"));
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
        assert!(text.starts_with("To: bob@exit.test, eve@else.test\nDate: x\n"), "LF originals keep LF; no Date/Message-ID added twice");
        assert_eq!(prepare(b"To: eve@else.test\n\nhi\n", &p, &stamp).unwrap_err(), ExitError::NoRecipient);
        assert_eq!(prepare(b"no header here", &p, &stamp).unwrap_err(), ExitError::NoHeader);
    }
}
