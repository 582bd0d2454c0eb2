//! Destination blocking at the exit (nym.alias.net, sections 4.1 and 4.5): anyone may ask
//! an exit to deliver no more anonymous mail to an address, and only someone who reads
//! that address can make it so.
//!
//! A mail to the mix address with the subject `destination-block` is a request to block
//! its From address. The exit answers it with a confirmation mail to that address holding
//! a random nonce and the request's own headers quoted, so that the victim of a forged
//! request (a reverse mail-bomb) sees where it came from. Only a reply carrying the nonce
//! blocks. Automatic mail (bounces, auto-replies, lists) is never answered: no loops.
//!
//! The state keeps no address: the blocklist and the quota hold salted SHA-256 hashes
//! (`address_hash`), and a pending request holds the hash of its nonce and of its address.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use crate::address::MixAddress;
use crate::clock;
use crate::state::unix;

/// The subject of a block request (Mixmaster's word for it).
pub const SUBJECT: &str = "destination-block";
/// What precedes the nonce in a confirmation and in the reply to it.
const TOKEN: &str = "block-confirm:";
/// How long a confirmation can be answered.
pub const CONFIRM_EXPIRY: Duration = Duration::from_secs(7 * 86400);
/// Most header bytes of a request quoted back; the rest is cut.
const QUOTE_MAX: usize = 8192;
/// How far into a reply's body the nonce is looked for.
const BODY_SCAN: usize = 16384;

/// What a mail that is not mix traffic asks of the exit, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Block `address` (the request's From), once confirmed. `headers` is the request's
    /// header block as received.
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
    if !crate::address::plausible(&address) {
        return None;
    }
    let mut quoted = mail[..body_at.min(mail.len())].to_vec();
    quoted.truncate(QUOTE_MAX);
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

/// The node's salt for address hashes, made on first use: a stolen state file does not
/// answer "is this address blocked?" from a table made for another mix.
fn salt(tx: &rusqlite::Connection) -> Result<Vec<u8>> {
    if let Some(s) = tx.query_row("SELECT salt FROM salt WHERE id = 1", [], |r| r.get(0)).optional()? {
        return Ok(s);
    }
    let mut s = vec![0u8; 32];
    rand::rng().fill_bytes(&mut s);
    tx.execute("INSERT INTO salt (id, salt) VALUES (1, ?1)", [&s])?;
    Ok(s)
}

/// The salted hash the blocklist and the quota know an address by (case folded).
pub fn address_hash(conn: &rusqlite::Connection, address: &str) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(salt(conn)?);
    h.update(address.to_ascii_lowercase().as_bytes());
    Ok(h.finalize().into())
}

fn nonce_hash(nonce: &[u8; 16]) -> [u8; 32] {
    Sha256::digest(nonce).into()
}

pub fn is_blocked(conn: &rusqlite::Connection, address: &str) -> Result<bool> {
    let h = address_hash(conn, address)?;
    Ok(conn.query_row("SELECT 1 FROM blocklist WHERE hash = ?1", [&h[..]], |_| Ok(())).optional()?.is_some())
}

/// Blocks an address; false if it was blocked already.
pub fn add(conn: &rusqlite::Connection, address: &str) -> Result<bool> {
    let h = address_hash(conn, address)?;
    Ok(conn.execute("INSERT OR IGNORE INTO blocklist (hash) VALUES (?1)", [&h[..]])? == 1)
}

/// Unblocks an address; false if it was not blocked.
pub fn remove(conn: &rusqlite::Connection, address: &str) -> Result<bool> {
    let h = address_hash(conn, address)?;
    Ok(conn.execute("DELETE FROM blocklist WHERE hash = ?1", [&h[..]])? == 1)
}

/// Records a request and returns the confirmation mail to queue for `address`, or `None`
/// when the address is blocked already (nothing to confirm).
pub fn request(tx: &Transaction<'_>, address: &str, headers: &[u8], mix: &MixAddress, now: SystemTime, rng: &mut impl RngCore) -> Result<Option<Vec<u8>>> {
    if is_blocked(tx, address)? {
        return Ok(None);
    }
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let addr = address_hash(tx, address)?;
    tx.execute(
        "INSERT INTO block_pending (nonce, addr, expires) VALUES (?1, ?2, ?3)",
        params![&nonce_hash(&nonce)[..], &addr[..], unix(now + CONFIRM_EXPIRY)],
    )?;
    Ok(Some(confirmation(address, headers, mix, &nonce, now, rng)))
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
    let found: Option<(Vec<u8>, i64)> =
        tx.query_row("SELECT addr, expires FROM block_pending WHERE nonce = ?1", [&nh[..]], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
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

/// The confirmation: to the address, from the mix, marked as an automatic reply so that no
/// autoresponder answers it, with the request's headers quoted.
fn confirmation(address: &str, headers: &[u8], mix: &MixAddress, nonce: &[u8; 16], now: SystemTime, rng: &mut impl RngCore) -> Vec<u8> {
    let token = format!("{TOKEN}{}", crate::message::hex(nonce));
    let stamp = crate::exit::Stamp::new(mix, now, rng);
    let mut m = format!(
        "From: {mix}\nTo: {address}\nSubject: Confirm destination block {token}\nDate: {}\nMessage-ID: {}\n\
         Auto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n\
         Someone asked the Mixtasy anonymous remailer {mix} to deliver\n\
         no more anonymous mail to {address}.\n\n\
         If that was you and you want it, reply to this mail and keep the\n\
         subject line, or the line below, in your reply. Nothing is blocked\n\
         until a reply arrives; this request expires in 7 days.\n\n    {token}\n\n\
         If you did not ask for this, ignore this mail. The request came with\n\
         the headers below; they show where it was sent from.\n\n",
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
    use crate::state::State;

    const REQUEST: &[u8] = b"Return-Path: <victim@x.test>\nReceived: from evil.example by mx\nFrom: Victim <Victim@X.test>\nTo: mixtasy@exit.test\nSubject: destination-block\n\nplease\n";

    #[test]
    fn parses_requests_and_replies_and_never_automatic_mail() {
        let Some(Request::Block { address, headers }) = parse(REQUEST) else { panic!("not a request") };
        assert_eq!(address, "victim@x.test");
        assert!(headers.starts_with(b"Return-Path:") && headers.ends_with(b"destination-block\n\n"));
        let reply = b"From: victim@x.test\nSubject: Re: Confirm destination block block-confirm:00112233445566778899aabbccddeeff\n\nyes\n";
        assert_eq!(parse(reply), Some(Request::Confirm { nonce: *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff" }));
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
    fn requested(address: &str, headers: &[u8]) -> (State, MixAddress, SystemTime, Vec<u8>) {
        let mut s = State::in_memory().unwrap();
        let mix = MixAddress::for_fqdn("exit.test").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tx = s.transaction().unwrap();
        let mail = request(&tx, address, headers, &mix, now, &mut rand::rng()).unwrap().unwrap();
        tx.commit().unwrap();
        (s, mix, now, mail)
    }

    #[test]
    fn only_the_nonce_blocks_and_only_once() {
        let (mut s, mix, now, mail) = requested("victim@x.test", b"Received: from evil.example\n");
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.contains("To: victim@x.test\n") && text.contains("Auto-Submitted: auto-replied") && text.contains("> Received: from evil.example"));
        assert!(!is_blocked(s.conn(), "victim@x.test").unwrap(), "a request alone blocks nothing");
        assert_eq!(parse(&mail), None, "the confirmation is automatic mail: never answered");
        // A human's reply keeps the subject.
        let subject = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
        let Some(Request::Confirm { nonce }) = parse(format!("From: victim@x.test\nSubject: Re: {}\n\n", &subject[9..]).as_bytes()) else {
            panic!("no nonce")
        };
        let tx = s.transaction().unwrap();
        assert_eq!(confirm(&tx, &[0u8; 16], now).unwrap(), Confirmed::Unknown);
        assert_eq!(confirm(&tx, &nonce, now).unwrap(), Confirmed::Blocked);
        assert_eq!(confirm(&tx, &nonce, now).unwrap(), Confirmed::Unknown, "a nonce is used once");
        tx.commit().unwrap();
        assert!(is_blocked(s.conn(), "Victim@X.test").unwrap());
        let tx = s.transaction().unwrap();
        assert!(request(&tx, "victim@x.test", b"", &mix, now, &mut rand::rng()).unwrap().is_none(), "no confirmation for a blocked address");
        tx.commit().unwrap();
        // No address in the state, in any table.
        let hashes: Vec<Vec<u8>> = s.conn().prepare("SELECT hash FROM blocklist").unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(hashes.len(), 1);
        assert!(hashes.iter().all(|h| h.len() == 32 && !h.windows(6).any(|w| w.eq_ignore_ascii_case(b"victim"))));
        assert!(remove(s.conn(), "victim@x.test").unwrap());
        assert!(!is_blocked(s.conn(), "victim@x.test").unwrap());
    }

    #[test]
    fn expired_confirmations_block_nothing() {
        let (mut s, _, now, mail) = requested("v@x.test", b"");
        let nonce = find_nonce(&mail).unwrap();
        let later = now + CONFIRM_EXPIRY + Duration::from_secs(1);
        let tx = s.transaction().unwrap();
        assert_eq!(confirm(&tx, &nonce, later).unwrap(), Confirmed::Unknown);
        tx.commit().unwrap();
        assert!(!is_blocked(s.conn(), "v@x.test").unwrap());
    }
}
