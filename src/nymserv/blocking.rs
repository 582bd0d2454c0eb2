//! The nym server's side of abuse handling: recipients of nym mail block themselves at
//! `block@DOMAIN` (the exit's destination blocking, `abuse::block`: a request with the
//! subject `destination-block`, a confirmation with a nonce, only a reply with it blocks),
//! and bounces of what the server sends come back to `bounces@DOMAIN`, its envelope
//! sender, where they are destroyed unread.
//!
//! Both are reserved names (`config::RESERVED`). Every mail a nym sends says how to block
//! (`label`); the confirmation comes from `block@`, so that the recipient's reply goes
//! there too. A bounce quotes the mail a nym sent, and on a host that also runs a mix node
//! the Unix user's own address would have brought it to the node operator's folder: so the
//! server sends with its own envelope sender and keeps nothing that comes back.

use std::time::SystemTime;

use anyhow::Result;
use rusqlite::Transaction;

use crate::abuse::block;
use crate::nymserv::config::Config;
pub use crate::nymserv::config::{BLOCK, BOUNCES};

/// The envelope sender of every mail the server hands to sendmail.
pub fn bounce_address(cfg: &Config) -> String {
    format!("{BOUNCES}@{}", cfg.domain)
}

/// The label on every mail a nym sends: where it comes from, and how its recipient gets
/// no more (a folded `X-Anonymous:` header, CRLF line ends).
pub fn label(cfg: &Config) -> String {
    format!(
        "X-Anonymous: sent through the nym server {d}; its sender cannot be traced.\r\n \
         To get no more mail from the nyms of {d}, send a mail with the subject\r\n \
         \"{subject}\" to {BLOCK}@{d} from the address to block, and answer the\r\n \
         confirmation.\r\n",
        d = cfg.domain,
        subject = block::SUBJECT
    )
}

/// The footer of every mail a nym sends: the label's words where every mail program shows
/// them (`exit::prepare::add_footer`), since many hide header fields.
pub fn footer(cfg: &Config) -> Vec<String> {
    let d = &cfg.domain;
    vec![
        "-- ".to_string(),
        format!("This mail came from a nym of {d}: its sender cannot be traced."),
        format!("To get no more mail from the nyms of {d}, send a mail with the"),
        format!("subject \"{}\" to {BLOCK}@{d} from the address to", block::SUBJECT),
        "block, and answer the confirmation.".to_string(),
    ]
}

/// A mail to `block@`, in the caller's transaction: a request queues a confirmation to
/// its From (within the day's cap, one waiting per address), a reply with a nonce blocks.
/// Returns the counter of what it came to.
pub fn take(tx: &Transaction<'_>, cfg: &Config, mail: &[u8], now: SystemTime) -> Result<&'static str> {
    let limits = block::Limits { per_day: cfg.block_confirmations_per_day, delimiter: &cfg.subaddress_delimiter };
    match block::parse(mail) {
        None => Ok("block.ignored"),
        Some(block::Request::Block { address, headers }) => {
            let from = format!("{BLOCK}@{}", cfg.domain);
            Ok(match block::request(tx, &address, &headers, &from, now, limits, &mut rand::rng())? {
                block::Requested::Confirmation(m) => {
                    crate::nymserv::store::queue(tx, "smtp", &address, &m)?;
                    "block.confirmation-sent"
                }
                block::Requested::Blocked => "block.already",
                block::Requested::Pending => "block.pending",
                block::Requested::OverCap => "block.over-cap",
            })
        }
        Some(block::Request::Confirm { nonce }) => Ok(match block::confirm(tx, &nonce, now)? {
            block::Confirmed::Blocked => "block.confirmed",
            block::Confirmed::Unknown => "block.unknown-nonce",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label is a header of folded lines that parses, and names block@ and the subject.
    #[test]
    fn label_parses_and_says_how_to_block() {
        let cfg = crate::nymserv::config::parse("domain = \"nym.test\"\n").unwrap();
        let mail = format!("{}Subject: x\r\n\r\nbody\r\n", label(&cfg));
        let (h, _) = mailparse::parse_headers(mail.as_bytes()).unwrap();
        let v = h.iter().find(|f| f.get_key() == "X-Anonymous").unwrap().get_value();
        assert!(v.contains("\"destination-block\" to block@nym.test"), "{v}");
        assert_eq!(h.len(), 2);
        assert_eq!(bounce_address(&cfg), "bounces@nym.test");
    }

    /// The nym server's own schema (migration 3) carries the exit's block logic: a request
    /// queues one confirmation from block@, its nonce blocks, and the state of a server
    /// made before migration 3 gets the table on opening.
    #[test]
    fn the_exits_block_logic_runs_on_the_nym_servers_schema() {
        use crate::batch::state::State;
        use crate::nymserv::store;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        drop(State::open_with(&path, &store::MIGRATIONS[..2]).unwrap());
        let mut st = State::open_with(&path, store::MIGRATIONS).unwrap();
        let cfg = crate::nymserv::config::parse("domain = \"nym.test\"\n").unwrap();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let req = b"From: Dave <dave@outside.test>\nSubject: destination-block\n\nplease\n";
        let tx = st.transaction().unwrap();
        assert_eq!(take(&tx, &cfg, req, now).unwrap(), "block.confirmation-sent");
        assert_eq!(take(&tx, &cfg, req, now).unwrap(), "block.pending");
        tx.commit().unwrap();
        let queued = store::outbox(st.conn()).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].rcpt, "dave@outside.test");
        let (h, _) = mailparse::parse_headers(&queued[0].mail).unwrap();
        let subject = h.iter().find(|f| f.get_key() == "Subject").unwrap().get_value();
        assert!(String::from_utf8_lossy(&queued[0].mail).starts_with("From: block@nym.test\n"));
        let reply = format!("From: dave@outside.test\nSubject: Re: {subject}\n\nyes\n");
        let tx = st.transaction().unwrap();
        assert_eq!(take(&tx, &cfg, reply.as_bytes(), now).unwrap(), "block.confirmed");
        assert_eq!(take(&tx, &cfg, reply.as_bytes(), now).unwrap(), "block.unknown-nonce");
        tx.commit().unwrap();
        assert!(block::is_blocked(st.conn(), "Dave+x@outside.test", "+").unwrap());
    }
}
