//! `mixtasyd --round`: one batch run over the spool, then one timed dynamic-pool round
//! (thesis 6.4–6.6, D6). A timer starts it every t seconds.
//!
//! In order: take the lock; finish what a crashed round left; purge expired replay hashes;
//! take every spool file (peel, replay check, then pool or held part, or drop; a file whose
//! peeling panics goes to `.quarantine`); expire stale parts; add time-triggered dummies;
//! fire the pool, moving the finals it draws into the exit queue; then send, in one
//! uniformly shuffled order, the drawn wire mails, the exit queue (drawn finals, retries,
//! the mix's own notices) and the flush-triggered dummies; then cap what still waits in
//! the exit queue. Crash ordering is in `state`'s
//! module doc.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;

use crate::abuse::block;
use crate::node::config::Config;
use crate::node::copies;
use crate::mixes::directory::{self, Mix};
use crate::node::dummy;
use crate::node::exit;
use crate::node::home::NodeHome;
use crate::node::metrics;
use crate::batch::lock;
use crate::format::message::Kind;
use crate::node::parts::{self, Held};
use crate::node::peel::{self, DropReason, Dropped, Node, Outcome, Peeled};
use crate::node::pool;
use crate::abuse::quota::{self, OverQuota};
use crate::node::replay;
use crate::batch::spool::{Entry, Spool};
use crate::batch::state::{self, act, finish_pending, Action, State};
use crate::batch::transport::Transport;

/// Spool files per transaction: one commit per batch (fsync costs about 1 ms here); a
/// batch's peeled messages (~42 KB each) are what intake holds in memory, ~11 MB.
const BATCH: usize = 256;

/// What one round did, as counts only.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub taken: u64,
    /// Forwarded messages and finals that entered the pool.
    pub pooled: u64,
    /// Finals the pool drew into the exit queue.
    pub exit_queued: u64,
    pub parts_held: u64,
    pub operator: u64,
    pub dropped: u64,
    pub dummies: u64,
    pub sent: u64,
    pub deferred: u64,
    pub delivered: u64,
    /// Why sends failed this round (kinds and the first reason, no addresses).
    pub transport: crate::batch::transport::RoundFailures,
}

pub enum RoundResult {
    /// Another round holds the lock.
    Busy,
    Done(Summary),
}

/// Runs one round for `home` at time `now`.
pub fn run(home: &NodeHome, now: SystemTime) -> Result<RoundResult> {
    let Some(_lock) = lock::try_lock(&home.dir)? else {
        return Ok(RoundResult::Busy);
    };
    let mut state = State::open(&home.state_path())?;
    crate::node::daily::snapshot(&mut state, now)?;
    let config = home.resolved_config()?;
    let (cert, _) = home.rotate(now, &config, &mut state)?;
    let node = crate::node::home::node_of(&config, &cert)?;
    let spool = Spool::open_for_round(&config.maildir)?;
    let transport = config.transport();
    let mut rng = rand::rng();
    let mut sum = Summary::default();
    if let Some(last) = state.meta("last_round")? {
        state.set_meta("last_gap", state::unix(now) - last)?;
    }

    finish_pending(&mut state, &spool)?;
    replay::purge(&mut state, now)?;
    block::purge(state.conn(), now)?;
    exit::purge_sent(state.conn(), now)?;
    quota::purge(state.conn(), now)?;
    intake(&mut state, &spool, &node, &config, now, &mut sum)?;
    let trimmed = spool.cap_operator(config.max_operator)?;
    state.bump("operator.over-cap", trimmed as i64)?;
    parts::expire(&mut state, now, config.part_expiry)?;
    copies::purge(&mut state, now)?;

    // Dummies route over the node's directory and the node itself (only itself when the
    // directory is empty: `dummy::build` falls back to `me`).
    let mut me = directory::check(&cert.clone().strip_secret_key_material(), now).ok();
    let (own, mut dummy_mixes): (Vec<Mix>, Vec<Mix>) = home.directory().usable(now).unwrap_or_default().into_iter().partition(|m| m.address == config.address);
    // The trusted pingers' word on this node too, as its directory copy carries it.
    if let (Some(me), Some(own)) = (me.as_mut(), own.first()) {
        me.standing = own.standing.clone();
    }
    if let (Some(me), false) = (&me, dummy_mixes.is_empty()) {
        dummy_mixes.push(me.clone());
    }
    let make_dummy = |rng: &mut rand::rngs::ThreadRng| -> Option<crate::sender::create::WireMessage> { dummy::build(me.as_ref()?, &dummy_mixes, now, rng).ok() };

    // Time-triggered dummies join the pool before it fires.
    let k = dummy::geometric(config.dummy_time_p, &mut rng);
    if k > 0 {
        let tx = state.transaction()?;
        for _ in 0..k {
            if let Some(d) = make_dummy(&mut rng) {
                pool::insert(&tx, &d.to, &d.mail)?;
                state::bump(&tx, "dummy.pooled", 1)?;
                sum.dummies += 1;
            }
        }
        tx.commit()?;
    }

    // The timed dynamic pool, finals included; drawn finals move to the exit queue.
    let params = pool::Params { min_pool: config.min_pool, threshold: config.threshold, rate: config.rate };
    let pooled_at_firing = state.count("pool")? as u64;
    let chosen = pool::choose(&state, params, &mut rng)?;
    let mut out: Vec<Outgoing> = draw(&mut state, &chosen, &config, now, &mut rng, &mut sum)?;
    out.extend(exit::queued(&state)?.into_iter().map(|(id, kind, queued)| Outgoing::Exit { id, kind, queued }));
    // Flush-triggered dummies leave with every non-empty send.
    if !chosen.is_empty() {
        for _ in 0..dummy::geometric(config.dummy_flush_p, &mut rng) {
            if let Some(d) = make_dummy(&mut rng) {
                out.push(Outgoing::Dummy(d));
            }
        }
    }
    // One uniformly random order for everything that leaves, so that the position in the
    // transport's sequence tells nothing: not which are dummies, not which are finals.
    out.shuffle(&mut rng);
    crate::batch::transport::start_round(config.sendmail_round_limit);
    let sent = send(&mut state, &transport, &config, now, out, &mut sum);
    sum.transport = crate::batch::transport::end_round();
    sent?;
    for (counter, n) in &sum.transport.counts {
        state.bump(counter, *n as i64)?;
    }
    // The kind of this round's first transport failure (0: none), for `status`.
    state.set_meta("transport_failed_kind", sum.transport.first.as_ref().map_or(0, |(e, _)| e.code()))?;
    // What still waits after the sends (failing recipients, quota waits) is capped: a
    // flood drawn in one round is delivered first, never cut by the cap.
    let tx = state.transaction()?;
    exit::cap(&tx, config.max_exit_queue)?;
    tx.commit()?;

    let counts = metrics::RoundCounts { arrivals: sum.pooled, departures: chosen.len() as u64, pool: pooled_at_firing, dummies: sum.dummies };
    metrics::record(&mut state, now, counts)?;

    if let Some(url) = &config.keyserver {
        keyserver_duties(home, &cert, &mut state, url, &config, now)?;
    }
    state.set_meta("last_round", state::unix(now))?;
    if let Some(path) = &config.metrics_file {
        metrics::write_file(path, &state, &config)?;
    }
    Ok(RoundResult::Done(sum))
}

/// One thing a round hands to the transport.
enum Outgoing {
    /// A drawn pool row holding a wire mail.
    Pool(i64),
    /// An exit-queue entry: a drawn final, a retry, or the mix's own notice.
    Exit { id: i64, kind: exit::Queued, queued: SystemTime },
    /// A flush-triggered dummy, made this round.
    Dummy(crate::sender::create::WireMessage),
}

/// Takes the drawn rows: wire mails stay in the pool until the transport accepts them;
/// drawn finals move to the exit queue in one transaction (in exactly one of the two at
/// every instant), stamped with the draw time.
fn draw(state: &mut State, chosen: &[i64], config: &Config, now: SystemTime, rng: &mut rand::rngs::ThreadRng, sum: &mut Summary) -> Result<Vec<Outgoing>> {
    let mut out = Vec::with_capacity(chosen.len());
    let tx = state.transaction()?;
    for &id in chosen {
        match pool::load(&tx, id)? {
            pool::Pooled::Forward { .. } => out.push(Outgoing::Pool(id)),
            pool::Pooled::Final { original } => {
                exit::enqueue(&tx, &original, now, &crate::batch::stamp::Stamp::new(&config.address, now, rng))?;
                tx.execute("DELETE FROM pool WHERE id = ?1", [id])?;
                sum.exit_queued += 1;
            }
        }
    }
    tx.commit().context("moving drawn finals to the exit queue")?;
    Ok(out)
}

/// Sends everything in `out`, in its order. A wire mail or an exit entry leaves the state
/// only after the transport accepted it (`state`'s crash ordering).
fn send(state: &mut State, transport: &Transport, config: &Config, now: SystemTime, out: Vec<Outgoing>, sum: &mut Summary) -> Result<()> {
    let policy = exit::Policy {
        address: &config.address,
        modes: config.modes,
        local_domains: &config.local_domains,
        max_recipients: config.max_recipients as usize,
        operator: &config.operator,
        from: &config.anonymous_from,
    };
    for o in out {
        match o {
            Outgoing::Pool(id) => {
                let pool::Pooled::Forward { rcpt, mail } = pool::load(state.conn(), id)? else {
                    unreachable!("`draw` keeps only wire mails in the pool")
                };
                match transport.send(Some(&config.address), &[rcpt], &mail) {
                    Ok(()) => {
                        state.remove_counted("pool", id, &[("pool.sent", 1)])?;
                        sum.sent += 1;
                    }
                    Err(_) => {
                        state.bump("pool.deferred", 1)?;
                        sum.deferred += 1;
                    }
                }
            }
            Outgoing::Exit { id, kind, queued } => deliver(state, transport, &policy, config, now, (id, kind, queued), sum)?,
            Outgoing::Dummy(d) => {
                let ok = transport.send(Some(&config.address), &[d.to.to_string()], &d.mail).is_ok();
                state.bump(if ok { "dummy.sent" } else { "dummy.failed" }, 1)?;
                sum.dummies += 1;
            }
        }
    }
    Ok(())
}

/// Publishing after a rotation and periodic discovery, last in the round so that a slow or
/// dead keyserver never delays mixing; failures are counted and retried next round.
fn keyserver_duties(home: &NodeHome, cert: &sequoia_openpgp::Cert, state: &mut State, url: &str, config: &Config, now: SystemTime) -> Result<()> {
    let ks = crate::mixes::keyserver::Keyserver::new(url, std::time::Duration::from_secs(10))?;
    if state.meta("publish_pending")? == Some(1) || state.meta("last_publish")?.is_none() {
        let armored = String::from_utf8(openpgp_armored(cert)?)?;
        match ks.publish(&armored) {
            Ok(()) => {
                state.set_meta("publish_pending", 0)?;
                state.set_meta("last_publish", state::unix(now))?;
                state.bump("key.published", 1)?;
            }
            Err(_) => state.bump("key.publish-failed", 1)?,
        }
    }
    let due = state.meta("last_discovery")?.is_none_or(|t| state::unix(now) - t >= config.discovery_interval.as_secs() as i64);
    if due {
        // Past the keyserver's result limit, the trusted pingers' keyrings (issue 14).
        let pingers = home.pingers().list().unwrap_or_default();
        match crate::mixes::pingers::discover(&ks, &pingers, std::time::Duration::from_secs(60), now).and_then(|answer| home.directory().refresh(answer.data(), now)) {
            Ok(_) => {
                state.set_meta("last_discovery", state::unix(now))?;
                state.bump("directory.fetched", 1)?;
            }
            Err(_) => state.bump("directory.fetch-failed", 1)?,
        }
    }
    Ok(())
}

fn openpgp_armored(cert: &sequoia_openpgp::Cert) -> Result<Vec<u8>> {
    use sequoia_openpgp::serialize::SerializeInto;
    Ok(cert.armored().to_vec()?)
}

/// Performs the actions a crashed round committed but did not carry out.
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
        Some(l) => eprintln!("mixtasyd: a panic at {}:{} while taking a message; it goes to .quarantine", l.file(), l.line()),
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
                                Err(d) if d.reason == DropReason::NotMixMail => match exit.then(|| block::parse(&m)).flatten() {
                                    Some(request) => Taken::Block(request),
                                    None => Taken::NotMix(exit::quoted_own_ids(&m, node.address.fqdn())),
                                },
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
fn intake(state: &mut State, spool: &Spool, node: &Node, config: &Config, now: SystemTime, sum: &mut Summary) -> Result<()> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(quiet_panic_report));
    let taken = intake_all(state, spool, node, config, now, sum);
    std::panic::set_hook(previous);
    taken
}

fn intake_all(state: &mut State, spool: &Spool, node: &Node, config: &Config, now: SystemTime, sum: &mut Summary) -> Result<()> {
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
                // Every file taken raises `intake.taken` and exactly one of: intake.forwarded,
                // intake.final, intake.part, intake.operator, drop.<reason>, drop.replay,
                // drop.part-duplicate, drop.part-refused, drop.exit-oversized,
                // intake.block-request, intake.block-confirm, intake.quarantined,
                // intake.own-bounce.
                state::bump(&tx, "intake.taken", 1)?;
                sum.taken += 1;
                let result = match result {
                    Taken::Block(request) => {
                        take_block_request(&tx, request, config, now)?;
                        state::record_done(&tx, &entry.source, Action::Remove)?;
                        actions.push((entry, Action::Remove));
                        continue;
                    }
                    Taken::Panicked => {
                        state::bump(&tx, "intake.quarantined", 1)?;
                        sum.dropped += 1;
                        state::record_done(&tx, &entry.source, Action::Quarantine)?;
                        actions.push((entry, Action::Quarantine));
                        continue;
                    }
                    // A bounce of the exit's own delivery quotes a plaintext original:
                    // destroyed, never kept for the operator.
                    Taken::NotMix(ids) if exit::is_own_bounce(&tx, &ids)? => {
                        state::bump(&tx, "intake.own-bounce", 1)?;
                        sum.dropped += 1;
                        state::record_done(&tx, &entry.source, Action::Remove)?;
                        actions.push((entry, Action::Remove));
                        continue;
                    }
                    Taken::NotMix(_) => Err(Dropped { reason: DropReason::NotMixMail, detail: String::new() }),
                    Taken::Peeled(r) => r,
                };
                let action = match result {
                    Err(d) if d.reason == DropReason::NotMixMail => {
                        state::bump(&tx, "intake.operator", 1)?;
                        sum.operator += 1;
                        Action::ToOperator
                    }
                    Err(d) => {
                        state::bump(&tx, &format!("drop.{}", d.reason.name()), 1)?;
                        sum.dropped += 1;
                        Action::Remove
                    }
                    Ok(o) => {
                        if !seen_here.insert(o.hash) || replay::seen(&tx, &o.hash)? {
                            state::bump(&tx, "drop.replay", 1)?;
                            sum.dropped += 1;
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
fn take(tx: &rusqlite::Transaction<'_>, peeled: Peeled, config: &Config, now: SystemTime, sum: &mut Summary) -> Result<()> {
    match peeled {
        Peeled::Forward { to, mail } => {
            pool::insert(tx, &to, &mail)?;
            state::bump(tx, "intake.forwarded", 1)?;
            sum.pooled += 1;
        }
        // A later copy of an original already taken (`mixtasy send --copies`).
        Peeled::Final { kind: Kind::Singlepart | Kind::Multipart { .. }, ref id, .. } if copies::taken(tx, id)? => {
            state::bump(tx, "drop.copy-taken", 1)?;
        }
        Peeled::Final { kind: Kind::Singlepart, payload, id } => {
            copies::remember(tx, &id, now, config.part_expiry)?;
            if pool_original(tx, &payload, config, sum)? {
                state::bump(tx, "intake.final", 1)?;
            } else {
                state::bump(tx, "drop.exit-oversized", 1)?;
            }
        }
        Peeled::Final { kind: Kind::Multipart { part, total }, id, payload } => {
            match parts::hold(tx, &id, part, total, &payload, now, config.max_parts)? {
                Held::Waiting => {
                    state::bump(tx, "intake.part", 1)?;
                    sum.parts_held += 1;
                }
                Held::Complete(original) => {
                    copies::remember(tx, &id, now, config.part_expiry)?;
                    state::bump(tx, "intake.part", 1)?;
                    sum.parts_held += 1;
                    let pooled = pool_original(tx, &original, config, sum)?;
                    state::bump(tx, if pooled { "exit.assembled" } else { "exit.oversized" }, 1)?;
                }
                Held::Duplicate => state::bump(tx, "drop.part-duplicate", 1)?,
                Held::Refused => state::bump(tx, "drop.part-refused", 1)?,
            }
        }
        Peeled::Final { kind: Kind::Dummy, .. } => unreachable!("peel destroys dummies"),
    }
    Ok(())
}

/// Pools an original for the exit unless it is over `max_size`; says whether it did.
fn pool_original(tx: &rusqlite::Transaction<'_>, original: &[u8], config: &Config, sum: &mut Summary) -> Result<bool> {
    if original.len() as u64 > config.max_size {
        return Ok(false);
    }
    pool::insert_final(tx, original)?;
    sum.pooled += 1;
    Ok(true)
}

/// A block request queues a confirmation to the address; a reply with a nonce blocks.
fn take_block_request(tx: &rusqlite::Transaction<'_>, request: block::Request, config: &Config, now: SystemTime) -> Result<()> {
    match request {
        block::Request::Block { address, headers } => {
            state::bump(tx, "intake.block-request", 1)?;
            // For an address this exit never delivers to (an exitprivate-only mix, another
            // domain) there is nothing to block, and answering would make it a reflector.
            if !exit::delivers_to(config.modes, &config.local_domains, &address) {
                return Ok(());
            }
            let limits = block::Limits { per_day: config.block_confirmations_per_day, delimiter: &config.subaddress_delimiter };
            match block::request(tx, &address, &headers, &config.address, now, limits, &mut rand::rng())? {
                block::Requested::Confirmation(mail) => exit::enqueue_notice(tx, &mail, now)?,
                block::Requested::Blocked => {}
                block::Requested::Pending => state::bump(tx, "block.request-pending", 1)?,
                block::Requested::OverCap => state::bump(tx, "block.request-over-cap", 1)?,
            }
        }
        block::Request::Confirm { nonce } => {
            state::bump(tx, "intake.block-confirm", 1)?;
            match block::confirm(tx, &nonce, now)? {
                block::Confirmed::Blocked => state::bump(tx, "block.confirmed", 1)?,
                block::Confirmed::Unknown => state::bump(tx, "block.unknown-nonce", 1)?,
            }
        }
    }
    Ok(())
}

/// Delivers one exit-queue entry, recipient by recipient: each recipient not yet done is
/// checked against the blocklist and the quota and handed to the transport alone, and its
/// outcome commits (with the quota charge) right after, so one failing recipient holds
/// back nobody and a retry sends only to those still waiting. The entry leaves the queue
/// when every recipient is done or given up (`exit_giveup`), counted once: originals as
/// `exit.delivered` (anyone got it) or `drop.exit-*`; the mix's own notices as
/// `block.notice-sent` or `block.notice-dropped`, so the originals' counters add up.
fn deliver(state: &mut State, transport: &Transport, policy: &exit::Policy<'_>, config: &Config, now: SystemTime, entry: (i64, exit::Queued, SystemTime), sum: &mut Summary) -> Result<()> {
    use exit::Outcome;
    let (id, kind, queued) = entry;
    let (original, stamp) = exit::load(state, id)?;
    let left = |counter: &'static str| match kind {
        exit::Queued::Original => counter,
        exit::Queued::Notice if counter == "exit.delivered" => "block.notice-sent",
        exit::Queued::Notice => "block.notice-dropped",
    };
    let prepared = match kind {
        exit::Queued::Original => exit::prepare(&original, policy, &stamp),
        exit::Queued::Notice => exit::prepare_notice(&original),
    };
    let delivery = match prepared {
        Ok(d) => d,
        // drop.exit-no-recipient, drop.exit-header-too-large.
        Err(e) => {
            state.remove_counted_with("exitq", id, &[(left(e.counter()), 1)], |tx| exit::forget(tx, id))?;
            return Ok(());
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
                    state.bump("exit.quota-wait", 1)?;
                    None
                }
            }
        } else {
            match transport.send(Some(&config.address), std::slice::from_ref(r), &delivery.mail) {
                Ok(()) => Some(Outcome::Delivered),
                Err(crate::batch::transport::TransportError::BadRecipient) => Some(Outcome::Refused),
                Err(_) if late => Some(Outcome::GaveUp),
                Err(_) => {
                    state.bump("exit.deferred", 1)?;
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
            if kind == exit::Queued::Original {
                exit::remember_sent(&tx, &stamp.message_id, now)?;
            }
            delivered_now = true;
        }
        tx.commit().context("recording a delivery")?;
        done.insert(hash, outcome);
    }
    if delivered_now && kind == exit::Queued::Original {
        sum.delivered += 1;
    }
    if waiting {
        return Ok(());
    }
    let outcomes: Vec<Outcome> = done.into_values().collect();
    let counters = [
        (left(exit::leaving_counter(&outcomes)), 1),
        ("drop.recipients", delivery.dropped_recipients as i64),
        ("drop.recipients-refused", delivery.refused_recipients as i64),
    ];
    state.remove_counted_with("exitq", id, &counters, |tx| exit::forget(tx, id))
}
