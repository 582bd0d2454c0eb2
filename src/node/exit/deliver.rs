//! Delivering exit-queue entries under the exit's policy: the blocklist, the recipient
//! quota, and giving up after `exit_giveup`. The round decides when an entry is sent (in
//! its one shuffled order); this module decides to whom and what is counted.

use std::time::SystemTime;

use anyhow::{Context, Result};

use super::prepare::{self as exit, Entry, Outcome, Policy, Queued};
use crate::abuse::block;
use crate::abuse::quota::{self, OverQuota};
use crate::batch::state::{Queue, State};
use crate::batch::transport::{Transport, TransportError};
use crate::node::config::Config;
use crate::node::counters::{self, Counter};

/// What delivering needs of the round: the settings, the transport, the time.
pub struct Exit<'a> {
    config: &'a Config,
    transport: &'a Transport,
    now: SystemTime,
    policy: Policy<'a>,
}

/// What one call of `deliver` did, as counts for the round's summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Originals that reached at least one recipient in this call.
    pub originals: u64,
}

impl<'a> Exit<'a> {
    pub fn new(config: &'a Config, transport: &'a Transport, now: SystemTime) -> Self {
        let policy = Policy {
            address: &config.address,
            modes: config.modes,
            local_domains: &config.local_domains,
            max_recipients: config.max_recipients as usize,
            operator: &config.operator,
            from: &config.anonymous_from,
        };
        Exit { config, transport, now, policy }
    }
}

/// Delivers one exit-queue entry, recipient by recipient: each recipient not yet done is
/// checked against the blocklist and the quota and handed to the transport alone, and its
/// outcome commits (with the quota charge) right after, so one failing recipient holds
/// back nobody and a retry sends only to those still waiting. The entry leaves the queue
/// when every recipient is done or given up (`exit_giveup`), counted once: originals as
/// `exit.delivered` (anyone got it) or `drop.exit-*`; the mix's own notices as
/// `block.notice-sent` or `block.notice-dropped`, so the originals' counters add up.
pub fn deliver(state: &mut State, exit: &Exit<'_>, entry: Entry) -> Result<Delivered> {
    let Entry { id, kind, queued } = entry;
    let config = exit.config;
    let now = exit.now;
    let (original, stamp) = exit::load(state, id)?;
    let left = |counter: Counter| match kind {
        Queued::Original => counter,
        Queued::Notice if counter == counters::EXIT_DELIVERED => counters::BLOCK_NOTICE_SENT,
        Queued::Notice => counters::BLOCK_NOTICE_DROPPED,
    };
    let prepared = match kind {
        Queued::Original => exit::prepare(&original, &exit.policy, &stamp),
        Queued::Notice => exit::prepare_notice(&original),
    };
    let delivery = match prepared {
        Ok(d) => d,
        // drop.exit-no-recipient, drop.exit-header-too-large.
        Err(e) => {
            state.remove_counted_with(Queue::Exit, id, &[(left(e.counter()).name, 1)], |tx| exit::forget(tx, id))?;
            return Ok(Delivered::default());
        }
    };
    let late = now.duration_since(queued).unwrap_or_default() > config.exit_giveup;
    let mut done = exit::outcomes(state.conn(), id)?;
    let (mut waiting, mut delivered_now) = (false, false);
    for r in &delivery.recipients {
        let hash = exit::recipient_hash(state.conn(), r)?;
        if done.contains_key(&hash) {
            continue;
        }
        let outcome = if block::is_blocked(state.conn(), r, &config.subaddress_delimiter)? {
            Some(Outcome::Blocked)
        } else if !quota::has_room(state.conn(), r, config.recipient_quota, now)? {
            match (config.over_quota, late) {
                (OverQuota::Drop, _) => Some(Outcome::OverQuota),
                (OverQuota::Wait, true) => Some(Outcome::GaveUp),
                (OverQuota::Wait, false) => {
                    counters::bump(state.conn(), counters::EXIT_QUOTA_WAIT, 1)?;
                    None
                }
            }
        } else {
            match exit.transport.send(Some(config.address.as_str()), std::slice::from_ref(r), &delivery.mail) {
                Ok(()) => Some(Outcome::Delivered),
                Err(TransportError::BadRecipient) => Some(Outcome::Refused),
                Err(_) if late => Some(Outcome::GaveUp),
                Err(_) => {
                    counters::bump(state.conn(), counters::EXIT_DEFERRED, 1)?;
                    None
                }
            }
        };
        let Some(outcome) = outcome else {
            waiting = true;
            continue;
        };
        let tx = state.transaction()?;
        exit::record(&tx, id, &hash, outcome)?;
        if outcome == Outcome::Delivered {
            quota::charge(&tx, r, now)?;
            if kind == Queued::Original {
                exit::remember_sent(&tx, &stamp.message_id, now)?;
            }
            delivered_now = true;
        }
        tx.commit().context("recording a delivery")?;
        done.insert(hash, outcome);
    }
    let counts = Delivered { originals: u64::from(delivered_now && kind == Queued::Original) };
    if waiting {
        return Ok(counts);
    }
    let outcomes: Vec<Outcome> = done.into_values().collect();
    let counters = [
        (left(exit::leaving_counter(&outcomes)).name, 1),
        (counters::DROP_RECIPIENTS.name, delivery.dropped_recipients as i64),
        (counters::DROP_RECIPIENTS_REFUSED.name, delivery.refused_recipients as i64),
    ];
    state.remove_counted_with(Queue::Exit, id, &counters, |tx| exit::forget(tx, id))?;
    Ok(counts)
}

/// Caps what still waits in the exit queue after the sends (`exit::cap`), in a transaction
/// of its own.
pub fn cap_queue(state: &mut State, max: u64) -> Result<()> {
    let tx = state.transaction()?;
    exit::cap(&tx, max)?;
    tx.commit()?;
    Ok(())
}
