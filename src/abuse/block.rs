//! Destination blocking at the exit (nym.alias.net, sections 4.1 and 4.5): anyone may ask
//! an exit to deliver no more anonymous mail to an address, and only someone who reads
//! that address can make it so.
//!
//! A mail to the mix address (or the nym server's `block@`) with the subject
//! `destination-block` is a request to block its From address. The exit answers it with a confirmation mail to that address holding
//! a random nonce and the request's Date, Subject and Message-ID quoted (nothing else of a
//! forged request reaches its victim). Only a reply carrying the nonce blocks. Automatic
//! mail (bounces, auto-replies, lists) is never answered: no loops.
//!
//! Forged requests cannot make the exit a mail cannon: one address has at most one
//! confirmation waiting, and the whole exit mails at most `block_confirmations_per_day`
//! (counted from the requests still waiting that were made in the last 24 hours; nobody
//! answers a forged one, so a flood stays counted for the whole day).
//!
//! A blocked address matches without case and without its subaddress (`bob+x@` is `bob@`,
//! the delimiter a setting); `@domain` blocks a whole domain.
//!
//! The state keeps no address: the blocklist and the quota hold salted SHA-256 hashes
//! (`address_hash`), and a pending request holds the hash of its nonce and of its address.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use crate::abuse::hashed::address_hash;
use crate::batch::state::unix;
use crate::util::clock;

/// The subject of a block request (Mixmaster's word for it).
pub const SUBJECT: &str = "destination-block";
/// What precedes the nonce in a confirmation and in the reply to it.
const TOKEN: &str = "block-confirm:";
/// How long a confirmation can be answered.
pub const CONFIRM_EXPIRY: Duration = Duration::from_secs(7 * 86400);
/// The fields of a request quoted in its confirmation, and the most characters of each.
const QUOTED: [&str; 3] = ["Date", "Subject", "Message-ID"];
const QUOTE_MAX: usize = 200;
/// How far into a reply's body the nonce is looked for.
const BODY_SCAN: usize = 16384;

/// What a mail that is not mix traffic asks of the exit, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Block `address` (the request's From), once confirmed. `headers` is the request's
    /// Date, Subject and Message-ID lines (those present), each cut to `QUOTE_MAX`.
    Block { address: String, headers: Vec<u8> },
    /// A reply to a confirmation, carrying its nonce.
    Confirm { nonce: [u8; 16] },
}

/// Reads a block request or confirmation out of a mail; `None` for anything else, and for
/// every automatic mail.
pub fn parse(mail: &[u8]) -> Option<Request> {
    use mailparse::MailHeaderMap;
    let (headers, body_at) = mailparse::parse_headers(mail).ok()?;
    let value = |n: &str| headers.get_first_value(n).map(|v| v.trim().to_ascii_lowercase());
    let automatic = value("return-path").is_some_and(|v| v == "<>" || v.is_empty())
        || value("auto-submitted").is_some_and(|v| v != "no")
        || value("precedence").is_some_and(|v| ["bulk", "junk", "list"].contains(&v.as_str()))
        || headers.get_first_header("list-id").is_some()
        || value("from").is_some_and(|v| v.contains("mailer-daemon"));
    if automatic {
        return None;
    }
    let subject = headers.get_first_value("subject").unwrap_or_default();
    let body = &mail[body_at.min(mail.len())..];
    let scan = &body[..body.len().min(BODY_SCAN)];
    if let Some(nonce) = find_nonce(subject.as_bytes()).or_else(|| find_nonce(scan)) {
        return Some(Request::Confirm { nonce });
    }
    if !subject.trim().eq_ignore_ascii_case(SUBJECT) {
        return None;
    }
    let from = headers.get_first_header("from")?;
    let address = match mailparse::addrparse_header(from).ok()?.first()? {
        mailparse::MailAddr::Single(s) => s.addr.to_ascii_lowercase(),
        mailparse::MailAddr::Group(_) => return None,
    };
    if !crate::mixes::address::plausible(&address) {
        return None;
    }
    let mut quoted = Vec::new();
    for name in QUOTED {
        if let Some(v) = headers.get_first_value(name) {
            quoted.extend(format!("{name}: {}\n", v.trim().chars().take(QUOTE_MAX).collect::<String>()).bytes());
        }
    }
    Some(Request::Block { address, headers: quoted })
}

fn find_nonce(text: &[u8]) -> Option<[u8; 16]> {
    let at = text.windows(TOKEN.len()).position(|w| w.eq_ignore_ascii_case(TOKEN.as_bytes()))?;
    let hex = text.get(at + TOKEN.len()..at + TOKEN.len() + 32)?;
    let mut nonce = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        nonce[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(nonce)
}

fn nonce_hash(nonce: &[u8; 16]) -> [u8; 32] {
    Sha256::digest(nonce).into()
}

/// The address a block is known by: lower case, without the subaddress (what follows the
/// first `delimiter` in the local part). `@domain` stays as it is.
pub fn canonical(address: &str, delimiter: &str) -> String {
    let a = address.to_ascii_lowercase();
    match (a.rsplit_once('@'), delimiter.chars().next()) {
        (Some((local, domain)), Some(d)) => match local.split_once(d) {
            Some((mailbox, _)) if !mailbox.is_empty() => format!("{mailbox}@{domain}"),
            _ => a,
        },
        _ => a,
    }
}

/// Whether mail to `address` is blocked: the address itself (as an older version stored
/// it), its canonical form, or its whole domain.
pub fn is_blocked(conn: &rusqlite::Connection, address: &str, delimiter: &str) -> Result<bool> {
    let domain = address.rsplit_once('@').map_or(String::new(), |(_, d)| format!("@{}", d.to_ascii_lowercase()));
    let mut st = conn.prepare_cached("SELECT 1 FROM blocklist WHERE hash = ?1")?;
    for key in [address.to_string(), canonical(address, delimiter), domain] {
        if st.exists([&address_hash(conn, &key)?[..]])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Blocks an address (with every subaddress), or a whole domain given as `@domain`; false
/// if it was blocked already.
pub fn add(conn: &rusqlite::Connection, address: &str, delimiter: &str) -> Result<bool> {
    let h = address_hash(conn, &canonical(address, delimiter))?;
    Ok(conn.execute("INSERT OR IGNORE INTO blocklist (hash) VALUES (?1)", [&h[..]])? == 1)
}

/// Unblocks an address or `@domain` (also as an older version stored it); false if it was
/// not blocked.
pub fn remove(conn: &rusqlite::Connection, address: &str, delimiter: &str) -> Result<bool> {
    let (a, b) = (address_hash(conn, address)?, address_hash(conn, &canonical(address, delimiter))?);
    Ok(conn.execute("DELETE FROM blocklist WHERE hash IN (?1, ?2)", [&a[..], &b[..]])? >= 1)
}

/// An address as an operator gives it to `block add|remove|check`: one `local@domain`, or
/// `@domain` for a whole domain, case folded; an error saying how to give it otherwise.
pub fn operator_address(a: &str) -> Result<String> {
    let a = a.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
    let domain = a.strip_prefix('@').is_some_and(crate::mixes::address::valid_fqdn);
    if !domain && !crate::mixes::address::plausible(&a) {
        anyhow::bail!("not an email address; give it as local@domain, or @domain for a whole domain");
    }
    Ok(a)
}

/// The exit's limits on block requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Most confirmations mailed in 24 hours (`block_confirmations_per_day`).
    pub per_day: u64,
    /// `subaddress_delimiter`.
    pub delimiter: &'a str,
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The confirmation mail to queue.
    Confirmation(Vec<u8>),
    /// The address is blocked already: nothing to confirm.
    Blocked,
    /// A confirmation for this address is waiting for its answer already.
    Pending,
    /// The exit has mailed its confirmations for the day.
    OverCap,
}

/// Records a request, within the limits, and says what to do about it. `from` is the
/// address the confirmation comes from and its reply goes to (the mix's, the nym server's
/// `block@`).
pub fn request(
    tx: &Transaction<'_>,
    address: &str,
    headers: &[u8],
    from: &str,
    now: SystemTime,
    limits: Limits<'_>,
    rng: &mut impl RngCore,
) -> Result<Requested> {
    if is_blocked(tx, address, limits.delimiter)? {
        return Ok(Requested::Blocked);
    }
    let addr = address_hash(tx, &canonical(address, limits.delimiter))?;
    if tx
        .prepare_cached("SELECT 1 FROM block_pending WHERE addr = ?1 AND expires >= ?2")?
        .exists(params![&addr[..], unix(now)])?
    {
        return Ok(Requested::Pending);
    }
    // Made in the last 24 hours: expiring later than a day before a new one would.
    let day_ago = unix(now + CONFIRM_EXPIRY) - crate::abuse::quota::WINDOW.as_secs() as i64;
    let today: i64 = tx
        .prepare_cached("SELECT count(*) FROM block_pending WHERE expires > ?1")?
        .query_row([day_ago], |r| r.get(0))?;
    if today as u64 >= limits.per_day {
        return Ok(Requested::OverCap);
    }
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    tx.execute(
        "INSERT INTO block_pending (nonce, addr, expires) VALUES (?1, ?2, ?3)",
        params![&nonce_hash(&nonce)[..], &addr[..], unix(now + CONFIRM_EXPIRY)],
    )?;
    Ok(Requested::Confirmation(confirmation(address, headers, from, &nonce, now, rng)))
}

/// What a reply carrying a nonce did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Blocked,
    /// No pending request has this nonce (expired, used, or made up).
    Unknown,
}

/// Blocks the address of the pending request `nonce` belongs to.
pub fn confirm(tx: &Transaction<'_>, nonce: &[u8; 16], now: SystemTime) -> Result<Confirmed> {
    let nh = nonce_hash(nonce);
    let found: Option<(Vec<u8>, i64)> = tx
        .query_row("SELECT addr, expires FROM block_pending WHERE nonce = ?1", [&nh[..]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((addr, expires)) = found else { return Ok(Confirmed::Unknown) };
    tx.execute("DELETE FROM block_pending WHERE nonce = ?1", [&nh[..]])?;
    if expires < unix(now) {
        return Ok(Confirmed::Unknown);
    }
    tx.execute("INSERT OR IGNORE INTO blocklist (hash) VALUES (?1)", [&addr])?;
    Ok(Confirmed::Blocked)
}

/// Forgets requests nobody confirmed in time.
pub fn purge(conn: &rusqlite::Connection, now: SystemTime) -> Result<()> {
    conn.execute("DELETE FROM block_pending WHERE expires < ?1", [unix(now)])?;
    Ok(())
}

/// The confirmation: to the address, from the mix (or the nym server), marked as an
/// automatic reply so that no autoresponder answers it, with the request's Date, Subject
/// and Message-ID quoted.
fn confirmation(
    address: &str,
    headers: &[u8],
    from: &str,
    nonce: &[u8; 16],
    now: SystemTime,
    rng: &mut impl RngCore,
) -> Vec<u8> {
    let token = format!("{TOKEN}{}", crate::format::message::hex(nonce));
    let domain = from.rsplit_once('@').map_or(from, |(_, d)| d);
    let stamp = crate::batch::stamp::Stamp::for_domain(domain, now, rng);
    let mut m = format!(
        "From: {from}\nTo: {address}\nSubject: Confirm destination block {token}\nDate: {}\nMessage-ID: {}\n\
         Auto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n\
         Someone asked the Mixtasy anonymous remailer {from} to deliver\n\
         no more anonymous mail to {address}.\n\n\
         If that was you and you want it, reply to this mail and keep the\n\
         subject line, or the line below, in your reply. Nothing is blocked\n\
         until a reply arrives; this request expires in 7 days.\n\n    {token}\n\n\
         If you did not ask for this, ignore this mail. The request was:\n\n",
        clock::rfc5322(stamp.date),
        stamp.message_id
    )
    .into_bytes();
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        m.extend_from_slice(b"> ");
        m.extend(line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' || b == b'\t' { b } else { b'?' }));
        m.push(b'\n');
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::state::State;

    const REQUEST: &[u8] = b"Return-Path: <victim@x.test>\nReceived: from evil.example by mx\nFrom: Victim <Victim@X.test>\nTo: mixtasy@exit.test\n\
Message-ID: <r1@evil.example>\nX-Ad: buy now\nSubject: destination-block\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nplease\n";

    const LIMITS: Limits<'static> = Limits { per_day: 50, delimiter: "+" };

    #[test]
    fn parses_requests_and_replies_and_never_automatic_mail() {
        let Some(Request::Block { address, headers }) = parse(REQUEST) else { panic!("not a request") };
        assert_eq!(address, "victim@x.test");
        assert_eq!(
            headers,
            b"Date: Mon, 2 Mar 2026 10:00:00 +0000\nSubject: destination-block\nMessage-ID: <r1@evil.example>\n",
            "only Date, Subject, Message-ID"
        );
        let reply = b"From: victim@x.test\nSubject: Re: Confirm destination block block-confirm:00112233445566778899aabbccddeeff\n\nyes\n";
        assert_eq!(
            parse(reply),
            Some(Request::Confirm { nonce: *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff" })
        );
        let in_body = b"From: v@x.test\nSubject: Re: hm\n\n> block-confirm:00112233445566778899aabbccddeeff\n";
        assert!(matches!(parse(in_body), Some(Request::Confirm { .. })));
        for auto in [
            "Return-Path: <>\nFrom: v@x.test\nSubject: destination-block\n\n",
            "From: MAILER-DAEMON@x.test\nSubject: destination-block\n\n",
            "From: v@x.test\nAuto-Submitted: auto-replied\nSubject: destination-block\n\n",
            "From: v@x.test\nPrecedence: bulk\nSubject: destination-block\n\n",
            "From: v@x.test\nSubject: hello\n\n",
            "From: -oQ/tmp@x.test\nSubject: destination-block\n\n",
        ] {
            assert_eq!(parse(auto.as_bytes()), None, "{auto}");
        }
    }

    /// A state with one pending request for `address`; its confirmation mail.
    fn requested(address: &str, headers: &[u8]) -> (State, &'static str, SystemTime, Vec<u8>) {
        let mut s = State::in_memory().unwrap();
        let mix = "mixtasy@exit.test";
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tx = s.transaction().unwrap();
        let Requested::Confirmation(mail) = request(&tx, address, headers, mix, now, LIMITS, &mut rand::rng()).unwrap()
        else {
            panic!("no confirmation")
        };
        tx.commit().unwrap();
        (s, mix, now, mail)
    }

    #[test]
    fn only_the_nonce_blocks_and_only_once() {
        let (mut s, mix, now, mail) = requested("victim@x.test", b"Subject: destination-block\n");
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(
            text.contains("To: victim@x.test\n")
                && text.contains("Auto-Submitted: auto-replied")
                && text.contains("> Subject: destination-block")
        );
        assert!(!is_blocked(s.conn(), "victim@x.test", "+").unwrap(), "a request alone blocks nothing");
        assert_eq!(parse(&mail), None, "the confirmation is automatic mail: never answered");
        // A human's reply keeps the subject.
        let subject = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
        let Some(Request::Confirm { nonce }) =
            parse(format!("From: victim@x.test\nSubject: Re: {}\n\n", &subject[9..]).as_bytes())
        else {
            panic!("no nonce")
        };
        let tx = s.transaction().unwrap();
        assert_eq!(confirm(&tx, &[0u8; 16], now).unwrap(), Confirmed::Unknown);
        assert_eq!(confirm(&tx, &nonce, now).unwrap(), Confirmed::Blocked);
        assert_eq!(confirm(&tx, &nonce, now).unwrap(), Confirmed::Unknown, "a nonce is used once");
        tx.commit().unwrap();
        assert!(is_blocked(s.conn(), "Victim@X.test", "+").unwrap());
        let tx = s.transaction().unwrap();
        assert_eq!(
            request(&tx, "victim@x.test", b"", mix, now, LIMITS, &mut rand::rng()).unwrap(),
            Requested::Blocked,
            "no confirmation for a blocked address"
        );
        tx.commit().unwrap();
        // No address in the state, in any table.
        let hashes: Vec<Vec<u8>> = s
            .conn()
            .prepare("SELECT hash FROM blocklist")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(hashes.len(), 1);
        assert!(hashes.iter().all(|h| h.len() == 32 && !h.windows(6).any(|w| w.eq_ignore_ascii_case(b"victim"))));
        assert!(remove(s.conn(), "victim@x.test", "+").unwrap());
        assert!(!is_blocked(s.conn(), "victim@x.test", "+").unwrap());
    }

    #[test]
    fn expired_confirmations_block_nothing() {
        let (mut s, _, now, mail) = requested("v@x.test", b"");
        let nonce = find_nonce(&mail).unwrap();
        let later = now + CONFIRM_EXPIRY + Duration::from_secs(1);
        let tx = s.transaction().unwrap();
        assert_eq!(confirm(&tx, &nonce, later).unwrap(), Confirmed::Unknown);
        tx.commit().unwrap();
        assert!(!is_blocked(s.conn(), "v@x.test", "+").unwrap());
    }

    /// One confirmation waits per address, whatever its subaddress; the exit mails at most
    /// `per_day` in 24 hours, and the day after it mails again.
    #[test]
    fn requests_cannot_make_a_mail_cannon() {
        let (mut s, mix, now, _) = requested("v@x.test", b"");
        let limits = Limits { per_day: 3, delimiter: "+" };
        let tx = s.transaction().unwrap();
        let ask = |a: &str, t: SystemTime| request(&tx, a, b"", mix, t, limits, &mut rand::rng()).unwrap();
        assert_eq!(ask("v@x.test", now), Requested::Pending);
        assert_eq!(ask("V+tag@X.test", now), Requested::Pending, "a subaddress is the same mailbox");
        assert!(matches!(ask("w@x.test", now), Requested::Confirmation(_)));
        assert!(matches!(ask("y@x.test", now), Requested::Confirmation(_)));
        assert_eq!(ask("z@x.test", now), Requested::OverCap, "3 a day");
        let tomorrow = now + crate::abuse::quota::WINDOW + Duration::from_secs(1);
        assert!(matches!(ask("z@x.test", tomorrow), Requested::Confirmation(_)));
        assert_eq!(ask("v@x.test", tomorrow), Requested::Pending, "still waiting for its answer");
        assert!(
            matches!(ask("v@x.test", now + CONFIRM_EXPIRY + Duration::from_secs(1)), Requested::Confirmation(_)),
            "expired: asked again"
        );
    }

    #[test]
    fn blocks_match_subaddresses_case_and_whole_domains() {
        let s = State::in_memory().unwrap();
        let c = s.conn();
        assert_eq!(canonical("Bob+Lists@Example.ORG", "+"), "bob@example.org");
        assert_eq!(canonical("bob-x@example.org", "-"), "bob@example.org");
        assert_eq!(canonical("+x@example.org", "+"), "+x@example.org", "no mailbox before the delimiter");
        assert_eq!(canonical("bob+x@example.org", ""), "bob+x@example.org");
        assert!(add(c, "bob+whatever@example.org", "+").unwrap());
        for hit in ["bob@example.org", "BOB@EXAMPLE.ORG", "bob+x@Example.org"] {
            assert!(is_blocked(c, hit, "+").unwrap(), "{hit}");
        }
        assert!(!is_blocked(c, "bobby@example.org", "+").unwrap());
        assert!(add(c, "@evil.example", "+").unwrap());
        assert!(is_blocked(c, "anyone@Evil.Example", "+").unwrap());
        assert!(!is_blocked(c, "anyone@sub.evil.example", "+").unwrap(), "a domain, not its subdomains");
        assert!(remove(c, "@evil.example", "+").unwrap());
        assert!(!is_blocked(c, "anyone@evil.example", "+").unwrap());
        assert!(remove(c, "BOB+other@example.org", "+").unwrap());
        assert!(!is_blocked(c, "bob@example.org", "+").unwrap());
    }
}
