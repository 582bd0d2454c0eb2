//! Firing the pool (D6, second half of a round): time- and arrival-triggered dummies join the pool, the
//! timed dynamic pool draws, drawn finals move to the exit queue, and everything that
//! leaves (drawn wire mails, the exit queue, flush-triggered dummies) goes to the
//! transport in one uniformly shuffled order.

use std::time::SystemTime;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;

use super::Round;
use crate::batch::state::Queue;
use crate::batch::transport;
use crate::mixes::directory::{self, Mix};
use crate::node::counters::{self, meta};
use crate::node::dummy;
use crate::node::exit;
use crate::node::home::NodeHome;
use crate::node::pool;
use crate::sender::create::WireMessage;

/// Who dummies route over: the node's directory and the node itself (only itself when the
/// directory is empty: `dummy::build` falls back to `me`).
pub(super) struct Dummies {
    me: Option<Mix>,
    mixes: Vec<Mix>,
    now: SystemTime,
}

impl Dummies {
    pub(super) fn new(home: &NodeHome, cert: &sequoia_openpgp::Cert, round: &Round) -> Self {
        let now = round.now;
        let mut me = directory::check(&cert.clone().strip_secret_key_material(), now).ok();
        let (own, mut mixes): (Vec<Mix>, Vec<Mix>) = home
            .directory()
            .usable(now)
            .unwrap_or_default()
            .into_iter()
            .partition(|m| m.address == round.config.address);
        // The trusted pingers' word on this node too, as its directory copy carries it.
        if let (Some(me), Some(own)) = (me.as_mut(), own.first()) {
            me.standing = own.standing.clone();
        }
        if let (Some(me), false) = (&me, mixes.is_empty()) {
            mixes.push(me.clone());
        }
        Dummies { me, mixes, now }
    }

    fn make(&self, rng: &mut rand::rngs::ThreadRng) -> Option<WireMessage> {
        dummy::build(self.me.as_ref()?, &self.mixes, self.now, rng).ok()
    }
}

/// One thing a round hands to the transport.
pub(super) enum Outgoing {
    /// A drawn pool row holding a wire mail.
    Pool(i64),
    /// An exit-queue entry: a drawn final, a retry, or the mix's own notice.
    Exit(exit::Entry),
    /// A flush-triggered dummy, made this round.
    Dummy(WireMessage),
}

/// Dummies join the pool before it fires: time-triggered ones, more of them while the pool
/// is starved (`dummy::time_p`), and arrival-triggered ones for what this round pooled.
pub(super) fn add_pool_dummies(round: &mut Round, dummies: &Dummies) -> Result<()> {
    let config = &round.config;
    let params = pool::Params { min_pool: config.min_pool, threshold: config.threshold, rate: config.rate };
    let p = dummy::time_p(config.dummy_time_p, config.dummy_starved_p, round.state.count("pool")? as u64, params);
    let starved = p > config.dummy_time_p;
    let timed = dummy::geometric(p, &mut round.rng);
    let arrival_p = config.dummy_arrival_p;
    let arrived: u64 = (0..round.sum.pooled).map(|_| dummy::geometric(arrival_p, &mut round.rng)).sum();
    if timed + arrived > 0 || starved {
        let tx = round.state.transaction()?;
        if starved {
            round.sum.tally(&tx, counters::DUMMY_STARVED, 1)?;
        }
        for (n, counter) in [(timed, counters::DUMMY_POOLED), (arrived, counters::DUMMY_ARRIVAL)] {
            for _ in 0..n {
                if let Some(d) = dummies.make(&mut round.rng) {
                    pool::insert(&tx, &d.to, &d.mail)?;
                    round.sum.tally(&tx, counter, 1)?;
                }
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// The timed dynamic pool, finals included: drawn finals move to the exit queue; what
/// leaves is the drawn wire mails, the whole exit queue and, with every non-empty draw,
/// flush-triggered dummies, in one uniformly random order, so that the position in the
/// transport's sequence tells nothing: not which are dummies, not which are finals.
pub(super) fn draw(round: &mut Round, dummies: &Dummies) -> Result<Vec<Outgoing>> {
    let config = &round.config;
    let params = pool::Params { min_pool: config.min_pool, threshold: config.threshold, rate: config.rate };
    let pooled = round.state.count("pool")? as u64;
    let chosen = pool::choose(&round.state, params, &mut round.rng)?;
    round.fired = (pooled, chosen.len() as u64);
    let mut out: Vec<Outgoing> = take_drawn(round, &chosen)?;
    out.extend(exit::queued(&round.state)?.into_iter().map(Outgoing::Exit));
    if !chosen.is_empty() {
        for _ in 0..dummy::geometric(round.config.dummy_flush_p, &mut round.rng) {
            if let Some(d) = dummies.make(&mut round.rng) {
                out.push(Outgoing::Dummy(d));
            }
        }
    }
    out.shuffle(&mut round.rng);
    Ok(out)
}

/// Takes the drawn rows: wire mails stay in the pool until the transport accepts them;
/// drawn finals move to the exit queue in one transaction (in exactly one of the two at
/// every instant), stamped with the draw time.
fn take_drawn(round: &mut Round, chosen: &[i64]) -> Result<Vec<Outgoing>> {
    let Round { state, config, now, rng, sum, .. } = round;
    let mut out = Vec::with_capacity(chosen.len());
    let tx = state.transaction()?;
    for &id in chosen {
        match pool::load(&tx, id)? {
            pool::Pooled::Forward { .. } => out.push(Outgoing::Pool(id)),
            pool::Pooled::Final { original } => {
                exit::enqueue(&tx, &original, *now, &crate::batch::stamp::Stamp::new(&config.address, *now, rng))?;
                pool::remove_drawn(&tx, id)?;
                sum.exit_queued += 1;
            }
        }
    }
    tx.commit().context("moving drawn finals to the exit queue")?;
    Ok(out)
}

/// Sends everything in `out`, in its order, and records what the transport's failures were.
/// A wire mail or an exit entry leaves the state only after the transport accepted it
/// (`state`'s crash ordering).
pub(super) fn send(round: &mut Round, out: Vec<Outgoing>) -> Result<()> {
    transport::start_round(round.config.sendmail_round_limit);
    let sent = send_each(round, out);
    round.sum.transport = transport::end_round();
    sent?;
    let Round { state, sum, .. } = round;
    for (name, n) in &sum.transport.counts {
        let counter =
            counters::named(name).with_context(|| format!("the transport counter {name} is not in counters::ALL"))?;
        counters::bump(state.conn(), counter, *n as i64)?;
    }
    // The kind of this round's first transport failure (0: none), for `status`.
    state.set_meta(meta::TRANSPORT_FAILED_KIND, sum.transport.first.as_ref().map_or(0, |(e, _)| e.code()))?;
    Ok(())
}

fn send_each(round: &mut Round, out: Vec<Outgoing>) -> Result<()> {
    let Round { state, config, transport, now, sum, .. } = round;
    let exit = exit::Exit::new(config, transport, *now);
    for o in out {
        match o {
            Outgoing::Pool(id) => {
                let pool::Pooled::Forward { rcpt, mail } = pool::load(state.conn(), id)? else {
                    unreachable!("`take_drawn` keeps only wire mails in the pool")
                };
                match transport.send(Some(config.address.as_str()), &[rcpt], &mail) {
                    Ok(()) => {
                        state.remove_counted_with(Queue::Pool, id, &[], |tx| sum.tally(tx, counters::POOL_SENT, 1))?
                    }
                    Err(_) => sum.tally(state.conn(), counters::POOL_DEFERRED, 1)?,
                }
            }
            Outgoing::Exit(entry) => sum.delivered += exit::deliver(state, &exit, entry)?.originals,
            Outgoing::Dummy(d) => {
                let ok = transport.send(Some(config.address.as_str()), &[d.to.to_string()], &d.mail).is_ok();
                sum.tally(state.conn(), if ok { counters::DUMMY_SENT } else { counters::DUMMY_FAILED }, 1)?;
            }
        }
    }
    Ok(())
}
