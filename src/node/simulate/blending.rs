//! The blending (n−1) attack (thesis 5.1.2) on one node: the attacker holds back every
//! other sender's mail, floods the node with his own until the pool holds nothing of
//! anyone else (the flush), then lets the target in with his flood and keeps flooding
//! until it has left. Every output that is not his is a candidate for the target.
//!
//! The attacker here is the strongest one: besides watching the node's input and output
//! and knowing his own messages, he knows when the pool holds nothing he did not send (a
//! real attacker must guess that, and pays more rounds). Without dummies the target is
//! then always isolated: the one unknown output. Time-triggered dummies keep unknown
//! entries in the pool and flush-triggered ones add unknown outputs to every send, so the
//! attack needs more rounds and ends with more than one candidate.

use rand::Rng;

use crate::node::dummy;
use crate::node::simulate::{Setting, Traffic};

/// What one pool entry is, to the attacker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Attacker,
    /// Anyone else's message, a dummy, or the target: what he cannot tell apart.
    Unknown,
}

/// The figures of the attack, means over the trials.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Rounds from the first flooding round until the target has surely left.
    pub rounds: f64,
    /// Messages the attacker sent in those rounds.
    pub messages: f64,
    /// Outputs that could have been the target (1: isolated).
    pub candidates: f64,
    /// Share of trials in which the target was isolated.
    pub isolated: f64,
    /// Share of trials that reached the round cap without the target surely gone.
    pub gave_up: f64,
}

/// Runs `trials` attacks with `flood` attacker messages a round, each on a node that ran
/// 200 rounds of `traffic` first; an attack stops after `max_rounds`.
pub fn simulate(
    setting: &Setting,
    traffic: &Traffic,
    flood: u64,
    trials: usize,
    max_rounds: usize,
    rng: &mut impl Rng,
) -> Outcome {
    let mut out = Outcome::default();
    for _ in 0..trials {
        let mut pool = vec![];
        for r in 0..200 {
            let arrivals = traffic.arrivals(r, rng);
            pool.extend((0..arrivals).map(|_| Entry::Unknown));
            let k = dummy::geometric(setting.time_p(pool.len() as u64), rng) + setting.arrival_dummies(arrivals, rng);
            pool.extend((0..k).map(|_| Entry::Unknown));
            fire(&mut pool, setting, rng);
        }
        let (mut rounds, mut candidates, mut target_in) = (0usize, 0u64, false);
        let mut done = false;
        while rounds < max_rounds {
            rounds += 1;
            pool.extend((0..flood).map(|_| Entry::Attacker));
            let mut arrived = flood;
            if !target_in && !pool.contains(&Entry::Unknown) {
                // The flush is done: the target goes in with this round's flood.
                pool.push(Entry::Unknown);
                target_in = true;
                arrived += 1;
            }
            // The flood (and the target) trigger arrival dummies like any mail.
            let k = dummy::geometric(setting.time_p(pool.len() as u64), rng) + setting.arrival_dummies(arrived, rng);
            pool.extend((0..k).map(|_| Entry::Unknown));
            let unknown_out = fire(&mut pool, setting, rng);
            if target_in {
                candidates += unknown_out;
                if !pool.contains(&Entry::Unknown) {
                    done = true;
                    break;
                }
            }
        }
        out.rounds += rounds as f64;
        out.messages += (rounds as u64 * flood) as f64;
        if done {
            out.candidates += candidates as f64;
            out.isolated += (candidates == 1) as u64 as f64;
        } else {
            out.gave_up += 1.0;
        }
    }
    let t = trials.max(1) as f64;
    let finished = (t - out.gave_up).max(1.0);
    Outcome {
        rounds: out.rounds / t,
        messages: out.messages / t,
        candidates: out.candidates / finished,
        isolated: out.isolated / t,
        gave_up: out.gave_up / t,
    }
}

/// Fires the pool as a round does; returns the outputs the attacker cannot call his own
/// (drawn unknown entries and flush-triggered dummies).
fn fire(pool: &mut Vec<Entry>, setting: &Setting, rng: &mut impl Rng) -> u64 {
    let mut chosen = setting.pick(pool.len(), rng);
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    let sent_any = !chosen.is_empty();
    let unknown = chosen.into_iter().filter(|&i| pool.swap_remove(i) == Entry::Unknown).count() as u64;
    unknown + if sent_any { dummy::geometric(setting.dummy_flush_p, rng) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::pool;
    use rand::SeedableRng;

    fn node(time_p: f64, flush_p: f64) -> Setting {
        Setting {
            name: "t".into(),
            pool: pool::Params { min_pool: 25, threshold: 5, rate: 0.65 },
            batching: Default::default(),
            dummy_time_p: time_p,
            dummy_flush_p: flush_p,
            dummy_starved_p: 0.0,
            dummy_arrival_p: 0.0,
            interval: 900,
        }
    }

    /// Without dummies the strongest attacker always isolates the target.
    #[test]
    fn without_dummies_the_target_is_isolated() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let o = simulate(&node(0.0, 0.0), &Traffic::Poisson(10.0), 60, 200, 1000, &mut rng);
        assert_eq!((o.isolated, o.gave_up, o.candidates), (1.0, 0.0, 1.0), "{o:?}");
        assert!(o.rounds > 2.0 && o.messages == o.rounds * 60.0, "{o:?}");
    }

    /// Dummies cost the attacker rounds and leave him several candidates.
    #[test]
    fn dummies_hide_the_target() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let bare = simulate(&node(0.0, 0.0), &Traffic::Poisson(10.0), 60, 300, 1000, &mut rng);
        let o = simulate(&node(0.3, 0.3), &Traffic::Poisson(10.0), 60, 300, 1000, &mut rng);
        assert!(o.candidates > 1.5 && o.isolated < 0.5 && o.rounds > bare.rounds, "{o:?} against {bare:?}");
    }
}
