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

mod fire;
mod intake;
mod keyserver;

use std::time::SystemTime;

use anyhow::Result;

use crate::abuse::{block, quota};
use crate::batch::lock;
use crate::batch::spool::Spool;
use crate::batch::state::{self, State};
use crate::batch::transport::Transport;
use crate::node::config::Config;
use crate::node::counters::{self, meta, Counter, Line};
use crate::node::home::NodeHome;
use crate::node::peel::Node;
use crate::node::{copies, exit, metrics, parts, replay};

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

impl Summary {
    /// Raises `counter` by `by` (in the transaction open on `conn`, if any) and adds it to
    /// the figure of this line it belongs to: the one way a round counts, so that its line
    /// and the stored counters agree.
    pub fn tally(&mut self, conn: &rusqlite::Connection, counter: Counter, by: u64) -> Result<()> {
        counters::bump(conn, counter, by as i64)?;
        let figure = match counter.line {
            None => return Ok(()),
            Some(Line::Taken) => &mut self.taken,
            Some(Line::Pooled) => &mut self.pooled,
            Some(Line::PartsHeld) => &mut self.parts_held,
            Some(Line::Operator) => &mut self.operator,
            Some(Line::Dropped) => &mut self.dropped,
            Some(Line::Dummies) => &mut self.dummies,
            Some(Line::Sent) => &mut self.sent,
            Some(Line::Deferred) => &mut self.deferred,
        };
        *figure += by;
        Ok(())
    }
}

pub enum RoundResult {
    /// Another round holds the lock.
    Busy,
    Done(Summary),
}

/// What every step of one round works on, opened once by `run`.
pub(crate) struct Round {
    pub config: Config,
    pub state: State,
    pub spool: Spool,
    pub transport: Transport,
    pub now: SystemTime,
    pub rng: rand::rngs::ThreadRng,
    /// What the round did so far, for its one line.
    pub sum: Summary,
    /// The pool's size when it fired and how many it drew (`fire::draw`), for the
    /// per-round counts of `metrics`.
    pub fired: (u64, u64),
}

impl Round {
    /// Opens the state, loads the settings, rotates the mix key (D8) and opens the spool.
    /// Returns the round, the mix key as it is now, and what peeling needs.
    fn open(home: &NodeHome, now: SystemTime) -> Result<(Round, sequoia_openpgp::Cert, Node)> {
        let mut state = State::open(&home.state_path())?;
        crate::node::daily::snapshot(&mut state, now)?;
        let config = home.resolved_config()?;
        let (cert, _) = home.rotate(now, &config, &mut state)?;
        let node = crate::node::home::node_of(&config, &cert)?;
        let spool = Spool::open_for_round(&config.maildir)?;
        let transport = config.transport();
        let round =
            Round { config, state, spool, transport, now, rng: rand::rng(), sum: Summary::default(), fired: (0, 0) };
        Ok((round, cert, node))
    }

    /// Forgets what has aged out: replay hashes, block requests, delivered Message-IDs,
    /// quota windows.
    fn purge(&mut self) -> Result<()> {
        replay::purge(&mut self.state, self.now)?;
        block::purge(self.state.conn(), self.now)?;
        exit::purge_sent(self.state.conn(), self.now)?;
        quota::purge(self.state.conn(), self.now)
    }

    /// After intake: caps the operator's folder, expires stale parts and taken ids.
    fn trim(&mut self) -> Result<()> {
        let trimmed = self.spool.cap_operator(self.config.max_operator)?;
        counters::bump(self.state.conn(), counters::OPERATOR_OVER_CAP, trimmed as i64)?;
        parts::expire(&mut self.state, self.now, self.config.part_expiry)?;
        copies::purge(&mut self.state, self.now)
    }
}

/// Runs one round for `home` at time `now`.
pub fn run(home: &NodeHome, now: SystemTime) -> Result<RoundResult> {
    let Some(_lock) = lock::try_lock(&home.dir)? else {
        return Ok(RoundResult::Busy);
    };
    let (mut round, cert, node) = Round::open(home, now)?;
    if let Some(last) = round.state.meta(meta::LAST_ROUND)? {
        round.state.set_meta(meta::LAST_GAP, state::unix(now) - last)?;
    }

    state::finish_pending(&mut round.state, &round.spool)?;
    round.purge()?;
    intake::intake(&mut round, &node)?;
    round.trim()?;

    let dummies = fire::Dummies::new(home, &cert, &round);
    fire::add_pool_dummies(&mut round, &dummies)?;
    let out = fire::draw(&mut round, &dummies)?;
    fire::send(&mut round, out)?;
    // What still waits after the sends (failing recipients, quota waits) is capped: a
    // flood drawn in one round is delivered first, never cut by the cap.
    exit::cap_queue(&mut round.state, round.config.max_exit_queue)?;
    let (pool, departures) = round.fired;
    let counts = metrics::RoundCounts { arrivals: round.sum.pooled, departures, pool, dummies: round.sum.dummies };
    metrics::record(&mut round.state, now, counts)?;

    if let Some(url) = &round.config.keyserver {
        keyserver::duties(home, &cert, &mut round.state, url, &round.config, now)?;
    }
    round.state.set_meta(meta::LAST_ROUND, state::unix(now))?;
    if let Some(path) = &round.config.metrics_file {
        metrics::write_file(path, &round.state, &round.config)?;
    }
    Ok(RoundResult::Done(round.sum))
}
