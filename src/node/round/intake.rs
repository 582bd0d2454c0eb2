//! Intake (D6, first half of a round): every spool file is peeled, checked against the
//! replay cache and pooled, held as a part, moved to the operator, or dropped, and counted;
//! a crashed round's committed actions are finished first. Crash ordering is in `state`'s
//! module doc.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::{Round, Summary};
use crate::abuse::block;
use crate::batch::spool::{Entry, Spool};
use crate::batch::state::{self, act, Action, State};
use crate::format::message::Kind;
use crate::node::config::Config;
use crate::node::copies;
use crate::node::counters::{self, Counter};
use crate::node::exit;
use crate::node::parts::{self, Held};
use crate::node::peel::{self, DropReason, Dropped, Node, Outcome, Peeled};
use crate::node::pool;
use crate::node::replay;

/// Spool files per transaction: one commit per batch (fsync costs about 1 ms here); a
/// batch's peeled messages (~42 KB each) are what intake holds in memory, ~11 MB.
const BATCH: usize = 256;

/// What a spool file turned out to be.
enum Taken {
    Peeled(Result<Outcome, Dropped>),
    /// Not mix traffic, but a block request or confirmation (exits only).
    Block(block::Request),
    /// Not mix traffic; the Message-IDs of the exit's own form it quotes (a bounce of a
    /// delivered original names its Message-ID).
    NotMix(Vec<String>),
    /// Peeling it panicked (a bug): it goes to `.quarantine`, or it would panic every
    /// later round again and stop each one.
    Panicked,
}

/// Test builds only (`debug_assertions`; release builds do not contain it): peeling a file
/// that contains the bytes of `MIXTASYD_TEST_PANIC_ON` panics, standing in for a peeling
/// bug in the quarantine test.
#[cfg(debug_assertions)]
fn test_panic_hook(mail: &[u8]) {
    if let Some(mark) = std::env::var_os("MIXTASYD_TEST_PANIC_ON") {
        let mark = mark.as_encoded_bytes();
        if !mark.is_empty() && mail.windows(mark.len()).any(|w| w == mark) {
            panic!("MIXTASYD_TEST_PANIC_ON matched");
        }
    }
}

/// Says where a panic happened and nothing of its message, which might quote the input.
fn quiet_panic_report(info: &std::panic::PanicHookInfo<'_>) {
    match info.location() {
        Some(l) => {
            eprintln!("mixtasyd: a panic at {}:{} while taking a message; it goes to .quarantine", l.file(), l.line())
        }
        None => eprintln!("mixtasyd: a panic while taking a message; it goes to .quarantine"),
    }
}

/// Reads and peels a batch on every core: peeling is most of intake's CPU, and reading in
/// the same workers overlaps the disk with it. `None` for a file that vanished or cannot
/// be read: it is left for a later round. A panic while peeling one file is caught and
/// makes that file `Taken::Panicked`; the others are taken as usual.
fn peel_batch(batch: &[Entry], node: &Node, exit: bool, now: SystemTime) -> Vec<Option<Taken>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(batch.len().max(1));
    let chunk = batch.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut rng = rand::rng();
                    let mut take = |m: Vec<u8>| {
                        let peeled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            #[cfg(debug_assertions)]
                            test_panic_hook(&m);
                            match peel::peel(&m, node, now, &mut rng) {
                                Err(d) if d.reason == DropReason::NotMixMail => {
                                    match exit.then(|| block::parse(&m)).flatten() {
                                        Some(request) => Taken::Block(request),
                                        None => Taken::NotMix(exit::quoted_own_ids(&m, node.address.fqdn())),
                                    }
                                }
                                r => Taken::Peeled(r),
                            }
                        }));
                        peeled.unwrap_or(Taken::Panicked)
                    };
                    part.iter().map(|e| std::fs::read(&e.path).ok().map(&mut take)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("peel worker panicked")).collect()
    })
}

/// Takes every spool file. Per batch: peel, then one transaction records every file's fate
/// with a `done` row, then the files are removed or moved on a thread of their own while
/// the next batch is peeled. The Maildir is synced and the ledger cleared once at the end;
/// a crash before that is finished by `finish_pending`.
pub(super) fn intake(round: &mut Round, node: &Node) -> Result<()> {
    let Round { state, spool, config, now, sum, .. } = round;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(quiet_panic_report));
    let taken = intake_all(state, spool, node, config, *now, sum);
    std::panic::set_hook(previous);
    taken
}

fn intake_all(
    state: &mut State,
    spool: &Spool,
    node: &Node,
    config: &Config,
    now: SystemTime,
    sum: &mut Summary,
) -> Result<()> {
    let mut entries = spool.walk()?;
    std::thread::scope(|s| -> Result<()> {
        let mut acting: Option<std::thread::ScopedJoinHandle<'_, Result<()>>> = None;
        loop {
            let batch: Vec<Entry> = entries.by_ref().take(BATCH).collect::<Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            let results = peel_batch(&batch, node, config.modes.exit(), now);
            let tx = state.transaction()?;
            let mut actions: Vec<(Entry, Action)> = Vec::with_capacity(batch.len());
            let mut seen_here = HashSet::new();
            for (entry, result) in batch.into_iter().zip(results) {
                let Some(result) = result else { continue };
                // Every file taken raises `intake.taken` and exactly one of the intake
                // or drop counters (`counters`, Intake).
                sum.tally(&tx, counters::INTAKE_TAKEN, 1)?;
                let result = match result {
                    Taken::Block(request) => {
                        take_block_request(&tx, request, config, now)?;
                        state::record_done(&tx, &entry.source, Action::Remove)?;
                        actions.push((entry, Action::Remove));
                        continue;
                    }
                    Taken::Panicked => {
                        sum.tally(&tx, counters::INTAKE_QUARANTINED, 1)?;
                        state::record_done(&tx, &entry.source, Action::Quarantine)?;
                        actions.push((entry, Action::Quarantine));
                        continue;
                    }
                    // A bounce of the exit's own delivery quotes a plaintext original:
                    // destroyed, never kept for the operator.
                    Taken::NotMix(ids) if exit::is_own_bounce(&tx, &ids)? => {
                        sum.tally(&tx, counters::INTAKE_OWN_BOUNCE, 1)?;
                        state::record_done(&tx, &entry.source, Action::Remove)?;
                        actions.push((entry, Action::Remove));
                        continue;
                    }
                    Taken::NotMix(_) => Err(Dropped { reason: DropReason::NotMixMail, detail: String::new() }),
                    Taken::Peeled(r) => r,
                };
                let action = match result {
                    Err(d) if d.reason == DropReason::NotMixMail => {
                        sum.tally(&tx, counters::INTAKE_OPERATOR, 1)?;
                        Action::ToOperator
                    }
                    Err(d) => {
                        sum.tally(&tx, counters::dropped(d.reason), 1)?;
                        Action::Remove
                    }
                    Ok(o) => {
                        if !seen_here.insert(o.hash) || replay::seen(&tx, &o.hash)? {
                            sum.tally(&tx, counters::DROP_REPLAY, 1)?;
                        } else {
                            replay::insert(&tx, &o.hash, o.expires)?;
                            take(&tx, o.peeled, config, now, sum)?;
                        }
                        Action::Remove
                    }
                };
                state::record_done(&tx, &entry.source, action)?;
                actions.push((entry, action));
            }
            parts::cap(&tx, config.max_held_parts)?;
            tx.commit().context("committing an intake batch")?;
            if let Some(h) = acting.take() {
                h.join().expect("spool worker panicked")?;
            }
            acting = Some(s.spawn(move || actions.into_iter().try_for_each(|(e, a)| act(spool, &e.path, a))));
        }
        if let Some(h) = acting.take() {
            h.join().expect("spool worker panicked")?;
        }
        Ok(())
    })?;
    spool.sync()?;
    state.clear_done()
}

/// Stores what a valid message became.
fn take(
    tx: &rusqlite::Transaction<'_>,
    peeled: Peeled,
    config: &Config,
    now: SystemTime,
    sum: &mut Summary,
) -> Result<()> {
    match peeled {
        Peeled::Forward { to, mail } => {
            pool::insert(tx, &to, &mail)?;
            sum.tally(tx, counters::INTAKE_FORWARDED, 1)?;
        }
        // A later copy of an original already taken (`mixtasy send --copies`).
        Peeled::Final { kind: Kind::Singlepart | Kind::Multipart { .. }, ref id, .. } if copies::taken(tx, id)? => {
            sum.tally(tx, counters::DROP_COPY_TAKEN, 1)?;
        }
        Peeled::Final { kind: Kind::Singlepart, payload, id } => {
            copies::remember(tx, &id, now, config.part_expiry)?;
            let counter = if pool_original(tx, &payload, config)? {
                counters::INTAKE_FINAL
            } else {
                counters::DROP_EXIT_OVERSIZED
            };
            sum.tally(tx, counter, 1)?;
        }
        Peeled::Final { kind: Kind::Multipart { part, total }, id, payload } => {
            match parts::hold(tx, &id, part, total, &payload, now, config.max_parts)? {
                Held::Waiting => sum.tally(tx, counters::INTAKE_PART, 1)?,
                Held::Complete(original) => {
                    copies::remember(tx, &id, now, config.part_expiry)?;
                    sum.tally(tx, counters::INTAKE_PART, 1)?;
                    let pooled = pool_original(tx, &original, config)?;
                    sum.tally(tx, if pooled { counters::EXIT_ASSEMBLED } else { counters::EXIT_OVERSIZED }, 1)?;
                }
                Held::Duplicate => sum.tally(tx, counters::DROP_PART_DUPLICATE, 1)?,
                Held::Refused => sum.tally(tx, counters::DROP_PART_REFUSED, 1)?,
            }
        }
        Peeled::Final { kind: Kind::Dummy, .. } => unreachable!("peel destroys dummies"),
    }
    Ok(())
}

/// Pools an original for the exit unless it is over `max_size`; says whether it did (the
/// caller's counter adds it to the summary's pooled figure).
fn pool_original(tx: &rusqlite::Transaction<'_>, original: &[u8], config: &Config) -> Result<bool> {
    if original.len() as u64 > config.max_size {
        return Ok(false);
    }
    pool::insert_final(tx, original)?;
    Ok(true)
}

/// A block request queues a confirmation to the address; a reply with a nonce blocks.
fn take_block_request(
    tx: &rusqlite::Transaction<'_>,
    request: block::Request,
    config: &Config,
    now: SystemTime,
) -> Result<()> {
    let bump = |c: Counter| counters::bump(tx, c, 1);
    match request {
        block::Request::Block { address, headers } => {
            bump(counters::INTAKE_BLOCK_REQUEST)?;
            // For an address this exit never delivers to (an exitprivate-only mix, another
            // domain) there is nothing to block, and answering would make it a reflector.
            if !exit::delivers_to(config.modes, &config.local_domains, &address) {
                return Ok(());
            }
            let limits =
                block::Limits { per_day: config.block_confirmations_per_day, delimiter: &config.subaddress_delimiter };
            match block::request(tx, &address, &headers, config.address.as_str(), now, limits, &mut rand::rng())? {
                block::Requested::Confirmation(mail) => exit::enqueue_notice(tx, &mail, now)?,
                block::Requested::Blocked => {}
                block::Requested::Pending => bump(counters::BLOCK_REQUEST_PENDING)?,
                block::Requested::OverCap => bump(counters::BLOCK_REQUEST_OVER_CAP)?,
            }
        }
        block::Request::Confirm { nonce } => {
            bump(counters::INTAKE_BLOCK_CONFIRM)?;
            match block::confirm(tx, &nonce, now)? {
                block::Confirmed::Blocked => bump(counters::BLOCK_CONFIRMED)?,
                block::Confirmed::Unknown => bump(counters::BLOCK_UNKNOWN_NONCE)?,
            }
        }
    }
    Ok(())
}
