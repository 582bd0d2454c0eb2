//! Every counter a node raises and every meta key it keeps, as data: one constant each
//! with a line saying what raises it, and `ALL`, which `status` readers, the manual test
//! (`tests/docs.rs`: each is documented in mixtasyd(8)) and `bump`'s check go by. A name
//! is never spelled anywhere else, so a counter cannot be raised without being listed.
//!
//! A counter may also add to one figure of the round's summary line (`Line`):
//! `round::Summary::tally` bumps both together, so the line and the counters agree.

use anyhow::Result;
use rusqlite::Connection;

use crate::node::peel::DropReason;

/// A counter in `state.sqlite`, shown by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub name: &'static str,
    /// What raises it (mixtasyd(8), COUNTERS, says more).
    pub doc: &'static str,
    /// The figure of a round's summary line it adds to as well, if any.
    pub line: Option<Line>,
}

/// The figures of a round's summary line that counters add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Taken,
    Pooled,
    PartsHeld,
    Operator,
    Dropped,
    Dummies,
    Sent,
    Deferred,
}

const fn counter(name: &'static str, doc: &'static str, line: Option<Line>) -> Counter {
    Counter { name, doc, line }
}

// Intake: every file taken raises `intake.taken` and exactly one of the intake and drop
// counters below (`round::intake`).
pub const INTAKE_TAKEN: Counter = counter("intake.taken", "a spool file was taken", Some(Line::Taken));
pub const INTAKE_FORWARDED: Counter =
    counter("intake.forwarded", "an intermediate message entered the pool", Some(Line::Pooled));
pub const INTAKE_FINAL: Counter =
    counter("intake.final", "a singlepart original entered the pool (exits)", Some(Line::Pooled));
pub const INTAKE_PART: Counter =
    counter("intake.part", "a part of a multipart original was held (exits)", Some(Line::PartsHeld));
pub const INTAKE_OPERATOR: Counter =
    counter("intake.operator", "mail that is not mix traffic moved to .operator", Some(Line::Operator));
pub const INTAKE_QUARANTINED: Counter =
    counter("intake.quarantined", "peeling a file panicked; it went to .quarantine", Some(Line::Dropped));
pub const INTAKE_OWN_BOUNCE: Counter =
    counter("intake.own-bounce", "a bounce of the exit's own delivery was destroyed", Some(Line::Dropped));
pub const INTAKE_BLOCK_REQUEST: Counter =
    counter("intake.block-request", "a destination-block request arrived (exits)", None);
pub const INTAKE_BLOCK_CONFIRM: Counter =
    counter("intake.block-confirm", "a reply to a block confirmation arrived (exits)", None);

// Drops of a peeled message, one per `DropReason` but `not-mix-mail` (`dropped`).
pub const DROP_NOT_FOR_THIS_MIX: Counter =
    counter("drop.not-for-this-mix", "encrypted to another mix", Some(Line::Dropped));
pub const DROP_OVERSIZED: Counter =
    counter("drop.oversized", "not the fixed size of a mix message", Some(Line::Dropped));
pub const DROP_UNKNOWN_KEY: Counter =
    counter("drop.unknown-key", "encrypted to a subkey this mix does not hold", Some(Line::Dropped));
pub const DROP_EXPIRED_KEY: Counter =
    counter("drop.expired-key", "encrypted to an expired subkey of this mix", Some(Line::Dropped));
pub const DROP_VERIFICATION: Counter =
    counter("drop.verification", "the Verification hash does not match (tagging)", Some(Line::Dropped));
pub const DROP_TAGGED: Counter = counter("drop.tagged", "a tag planted in the unverified tail", Some(Line::Dropped));
pub const DROP_MALFORMED: Counter = counter("drop.malformed", "any other structural fault", Some(Line::Dropped));
pub const DROP_MODE: Counter = counter("drop.mode", "needs a mode this mix does not run", Some(Line::Dropped));
pub const DROP_DUMMY: Counter = counter("drop.dummy", "a dummy reached its end and was destroyed", Some(Line::Dropped));
pub const DROP_REPLAY: Counter = counter("drop.replay", "a replay of a message already taken", Some(Line::Dropped));
pub const DROP_COPY_TAKEN: Counter =
    counter("drop.copy-taken", "a later copy of an original already taken (exits)", None);
pub const DROP_PART_DUPLICATE: Counter = counter("drop.part-duplicate", "a part already held", None);
pub const DROP_PART_REFUSED: Counter =
    counter("drop.part-refused", "a part whose set claims more than max_parts or disagrees", None);
pub const DROP_EXIT_OVERSIZED: Counter = counter("drop.exit-oversized", "a singlepart original over max_size", None);
pub const DROP_PARTS_EXPIRED: Counter =
    counter("drop.parts-expired", "held parts of a set incomplete after part_expiry", None);
pub const DROP_PARTS_OVER_CAP: Counter = counter("drop.parts-over-cap", "held parts dropped over max_held_parts", None);

// Reassembly at the exit.
pub const EXIT_ASSEMBLED: Counter =
    counter("exit.assembled", "a multipart original was complete and entered the pool", Some(Line::Pooled));
pub const EXIT_OVERSIZED: Counter = counter("exit.oversized", "a reassembled original over max_size was dropped", None);

// The pool, dummies, the operator's folder.
pub const DUMMY_POOLED: Counter =
    counter("dummy.pooled", "a time-triggered dummy joined the pool", Some(Line::Dummies));
pub const DUMMY_ARRIVAL: Counter =
    counter("dummy.arrival", "an arrival-triggered dummy joined the pool", Some(Line::Dummies));
pub const DUMMY_STARVED: Counter = counter(
    "dummy.starved",
    "a round found the pool starved and drew its time-triggered dummies with dummy_starved_p",
    None,
);
pub const DUMMY_SENT: Counter =
    counter("dummy.sent", "a flush-triggered dummy was handed to the transport", Some(Line::Dummies));
pub const DUMMY_FAILED: Counter =
    counter("dummy.failed", "the transport did not take a flush-triggered dummy", Some(Line::Dummies));
pub const POOL_SENT: Counter = counter("pool.sent", "a drawn wire mail was handed to the transport", Some(Line::Sent));
pub const POOL_DEFERRED: Counter =
    counter("pool.deferred", "the transport did not take a drawn wire mail; it stays pooled", Some(Line::Deferred));
pub const OPERATOR_OVER_CAP: Counter =
    counter("operator.over-cap", "oldest files of .operator removed over max_operator", None);

// Exit delivery (`exit::deliver`).
pub const EXIT_DELIVERED: Counter =
    counter("exit.delivered", "an original left the exit queue delivered to anyone", None);
pub const EXIT_DEFERRED: Counter =
    counter("exit.deferred", "the transport did not take an original for one recipient; retried", None);
pub const EXIT_QUOTA_WAIT: Counter =
    counter("exit.quota-wait", "a recipient over recipient_quota waits (over_quota = wait)", None);
pub const DROP_EXIT_NO_RECIPIENT: Counter =
    counter("drop.exit-no-recipient", "an original with no recipient this exit delivers to", None);
pub const DROP_EXIT_HEADER_TOO_LARGE: Counter =
    counter("drop.exit-header-too-large", "an original whose header is over the bounds", None);
pub const DROP_EXIT_GAVE_UP: Counter =
    counter("drop.exit-gave-up", "an original still failing exit_giveup after the draw", None);
pub const DROP_EXIT_QUOTA: Counter =
    counter("drop.exit-quota", "an original whose recipients were all over quota (drop)", None);
pub const DROP_EXIT_BLOCKED: Counter =
    counter("drop.exit-blocked", "an original whose recipients were all blocked", None);
pub const DROP_EXIT_QUEUE_FULL: Counter =
    counter("drop.exit-queue-full", "oldest originals dropped over max_exit_queue", None);
pub const DROP_RECIPIENTS: Counter =
    counter("drop.recipients", "recipients left out: Bcc, over max_recipients, not local", None);
pub const DROP_RECIPIENTS_REFUSED: Counter =
    counter("drop.recipients-refused", "recipients refused: source routes, or refused by the MTA", None);
pub const DROP_RECIPIENTS_BLOCKED: Counter = counter("drop.recipients-blocked", "recipients on the blocklist", None);
pub const DROP_RECIPIENTS_QUOTA: Counter =
    counter("drop.recipients-quota", "recipients over recipient_quota (over_quota = drop)", None);
pub const DROP_RECIPIENTS_GAVE_UP: Counter =
    counter("drop.recipients-gave-up", "recipients still failing exit_giveup after the draw", None);

// The blocklist's mail.
pub const BLOCK_REQUEST_PENDING: Counter =
    counter("block.request-pending", "a block request while a confirmation is pending", None);
pub const BLOCK_REQUEST_OVER_CAP: Counter =
    counter("block.request-over-cap", "a block request over block_confirmations_per_day", None);
pub const BLOCK_CONFIRMED: Counter = counter("block.confirmed", "a confirmed address was blocked", None);
pub const BLOCK_UNKNOWN_NONCE: Counter =
    counter("block.unknown-nonce", "a confirmation reply with an unknown or expired nonce", None);
pub const BLOCK_NOTICE_SENT: Counter = counter("block.notice-sent", "a block confirmation was delivered", None);
pub const BLOCK_NOTICE_DROPPED: Counter =
    counter("block.notice-dropped", "a block confirmation could not be delivered", None);

// The key and the keyserver.
pub const KEY_ADDED: Counter = counter("key.added", "rotation added an encryption subkey", None);
pub const KEY_DESTROYED: Counter = counter("key.destroyed", "rotation destroyed an expired secret subkey", None);
pub const KEY_PUBLISHED: Counter = counter("key.published", "a round uploaded the mix key", None);
pub const KEY_PUBLISH_FAILED: Counter =
    counter("key.publish-failed", "a round's upload failed; retried next round", None);
pub const DIRECTORY_FETCHED: Counter =
    counter("directory.fetched", "a round's discovery refreshed the directory", None);
pub const DIRECTORY_FETCH_FAILED: Counter =
    counter("directory.fetch-failed", "a round's discovery failed; retried next round", None);

// The transport's failures, by kind (`TransportError::counter`).
pub const TRANSPORT_SPAWN: Counter = counter("transport.spawn", "sendmail could not be started", None);
pub const TRANSPORT_EXIT_STATUS: Counter = counter("transport.exit-status", "sendmail exited with an error", None);
pub const TRANSPORT_SIGNAL: Counter = counter("transport.signal", "sendmail was killed by a signal", None);
pub const TRANSPORT_TIMEOUT: Counter =
    counter("transport.timeout", "sendmail did not finish in sendmail_timeout", None);
pub const TRANSPORT_MAILDIR: Counter = counter("transport.maildir", "the maildir transport could not write", None);
pub const TRANSPORT_BAD_RECIPIENT: Counter =
    counter("transport.bad-recipient", "an address the transport cannot take", None);
pub const TRANSPORT_OVER_TIME: Counter =
    counter("transport.over-time", "not tried: the round spent sendmail_round_limit", None);

/// Every counter, in the order of mixtasyd(8).
pub const ALL: &[Counter] = &[
    INTAKE_TAKEN,
    INTAKE_FORWARDED,
    INTAKE_FINAL,
    INTAKE_PART,
    INTAKE_OPERATOR,
    INTAKE_QUARANTINED,
    INTAKE_OWN_BOUNCE,
    INTAKE_BLOCK_REQUEST,
    INTAKE_BLOCK_CONFIRM,
    DROP_NOT_FOR_THIS_MIX,
    DROP_OVERSIZED,
    DROP_UNKNOWN_KEY,
    DROP_EXPIRED_KEY,
    DROP_VERIFICATION,
    DROP_TAGGED,
    DROP_MALFORMED,
    DROP_MODE,
    DROP_DUMMY,
    DROP_REPLAY,
    DROP_COPY_TAKEN,
    DROP_PART_DUPLICATE,
    DROP_PART_REFUSED,
    DROP_EXIT_OVERSIZED,
    DROP_PARTS_EXPIRED,
    DROP_PARTS_OVER_CAP,
    EXIT_ASSEMBLED,
    EXIT_OVERSIZED,
    DUMMY_POOLED,
    DUMMY_ARRIVAL,
    DUMMY_STARVED,
    DUMMY_SENT,
    DUMMY_FAILED,
    POOL_SENT,
    POOL_DEFERRED,
    OPERATOR_OVER_CAP,
    EXIT_DELIVERED,
    EXIT_DEFERRED,
    EXIT_QUOTA_WAIT,
    DROP_EXIT_NO_RECIPIENT,
    DROP_EXIT_HEADER_TOO_LARGE,
    DROP_EXIT_GAVE_UP,
    DROP_EXIT_QUOTA,
    DROP_EXIT_BLOCKED,
    DROP_EXIT_QUEUE_FULL,
    DROP_RECIPIENTS,
    DROP_RECIPIENTS_REFUSED,
    DROP_RECIPIENTS_BLOCKED,
    DROP_RECIPIENTS_QUOTA,
    DROP_RECIPIENTS_GAVE_UP,
    BLOCK_REQUEST_PENDING,
    BLOCK_REQUEST_OVER_CAP,
    BLOCK_CONFIRMED,
    BLOCK_UNKNOWN_NONCE,
    BLOCK_NOTICE_SENT,
    BLOCK_NOTICE_DROPPED,
    KEY_ADDED,
    KEY_DESTROYED,
    KEY_PUBLISHED,
    KEY_PUBLISH_FAILED,
    DIRECTORY_FETCHED,
    DIRECTORY_FETCH_FAILED,
    TRANSPORT_SPAWN,
    TRANSPORT_EXIT_STATUS,
    TRANSPORT_SIGNAL,
    TRANSPORT_TIMEOUT,
    TRANSPORT_MAILDIR,
    TRANSPORT_BAD_RECIPIENT,
    TRANSPORT_OVER_TIME,
];

/// The counter a peeled message dropped for `reason` raises; mail that is not mix traffic
/// is not a drop but goes to the operator.
pub fn dropped(reason: DropReason) -> Counter {
    match reason {
        DropReason::NotMixMail => INTAKE_OPERATOR,
        DropReason::NotForThisMix => DROP_NOT_FOR_THIS_MIX,
        DropReason::Oversized => DROP_OVERSIZED,
        DropReason::UnknownKey => DROP_UNKNOWN_KEY,
        DropReason::ExpiredKey => DROP_EXPIRED_KEY,
        DropReason::Verification => DROP_VERIFICATION,
        DropReason::Tagged => DROP_TAGGED,
        DropReason::Malformed => DROP_MALFORMED,
        DropReason::Mode => DROP_MODE,
        DropReason::Dummy => DROP_DUMMY,
    }
}

/// The counter of this name (the transport reports its failures by name).
pub fn named(name: &str) -> Option<Counter> {
    ALL.iter().copied().find(|c| c.name == name)
}

/// Adds `by` to `counter`, in the caller's transaction if one is open on `conn`.
pub fn bump(conn: &Connection, counter: Counter, by: i64) -> Result<()> {
    debug_assert!(ALL.contains(&counter), "counter {} is not in counters::ALL", counter.name);
    crate::batch::state::bump(conn, counter.name, by)
}

/// The keys of the node's `meta` table: single values a round or a command keeps.
pub mod meta {
    /// When the last round ran (UNIX seconds).
    pub const LAST_ROUND: &str = "last_round";
    /// Seconds between the last round and the one before it.
    pub const LAST_GAP: &str = "last_gap";
    /// 1 while the mix key changed and is not yet uploaded to the keyserver.
    pub const PUBLISH_PENDING: &str = "publish_pending";
    /// When the mix key was last uploaded.
    pub const LAST_PUBLISH: &str = "last_publish";
    /// When a round last refreshed the directory from the keyserver.
    pub const LAST_DISCOVERY: &str = "last_discovery";
    /// The kind of the last round's first transport failure (0: none).
    pub const TRANSPORT_FAILED_KIND: &str = "transport_failed_kind";

    /// Every meta key.
    pub const ALL: &[&str] =
        &[LAST_ROUND, LAST_GAP, PUBLISH_PENDING, LAST_PUBLISH, LAST_DISCOVERY, TRANSPORT_FAILED_KIND];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_source_maps_into_all() {
        for (i, c) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != c.name), "{} listed twice", c.name);
        }
        for r in DropReason::ALL {
            assert!(ALL.contains(&dropped(r)), "{r:?}");
            if r != DropReason::NotMixMail {
                assert_eq!(dropped(r).name, format!("drop.{}", r.name()));
            }
        }
        use crate::batch::transport::TransportError as T;
        for e in [T::Spawn, T::Status(1), T::Signal, T::Timeout, T::Maildir, T::BadRecipient, T::OverTime] {
            assert!(named(e.counter()).is_some(), "{}", e.counter());
        }
        for (i, k) in meta::ALL.iter().enumerate() {
            assert!(!meta::ALL[..i].contains(k), "{k} listed twice");
        }
    }
}
