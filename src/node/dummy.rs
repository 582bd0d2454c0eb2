//! Dummy traffic (thesis 5.8, 6.6): random payloads on 1–4 random hops, indistinguishable
//! from user mail on the wire. Time-triggered dummies join the pool before each round;
//! flush-triggered ones leave with every non-empty send.

use std::time::SystemTime;

use anyhow::Result;
use rand::{CryptoRng, Rng};

use crate::format::message::{self, Kind};
use crate::mixes::directory::Mix;
use crate::sender::create::{self, WireMessage};
use crate::sender::path;

/// A geometric count like Mixmaster's: keep adding one while a coin of probability `p`
/// comes up (P(k) = (1-p) p^k, mean p/(1-p)).
pub fn geometric(p: f64, rng: &mut impl Rng) -> u64 {
    let mut k = 0;
    while k < 1000 && rng.random_bool(p.clamp(0.0, 0.999)) {
        k += 1;
    }
    k
}

/// The probability of the time-triggered dummies before a round whose pool holds `pooled`
/// (arrivals included): `starved_p` while the pool is too small to fire (under min_pool +
/// threshold), so that a trickle of mail is not stranded in it for days past its subkeys;
/// `time_p` otherwise (the larger of the two, should `starved_p` be the smaller).
pub fn time_p(time_p: f64, starved_p: f64, pooled: u64, pool: crate::node::pool::Params) -> f64 {
    if pooled < pool.min_pool + pool.threshold {
        time_p.max(starved_p)
    } else {
        time_p
    }
}

/// Builds one dummy from this mix (`me`), routed over `mixes` (the node's directory; the
/// mix itself when that is empty). With trusted pingers in the node's home, only mixes
/// their rankings pass (`path::Rules::default()`, any hop) are used while there are any,
/// so that dummies do not die in dead mixes.
pub fn build(me: &Mix, mixes: &[Mix], now: SystemTime, rng: &mut (impl Rng + CryptoRng)) -> Result<WireMessage> {
    let own = std::slice::from_ref(me);
    let candidates = if mixes.is_empty() { own } else { mixes };
    let mut hops = path::choose_dummy_ranked(candidates, Some(&path::Rules::default()), rng);
    if hops.is_empty() {
        hops.push(me);
    }
    let id = message::new_id(rng);
    let fin = message::build_final(&id, Kind::Dummy, &[], rng);
    create::wrap(fin, &hops, Some(&me.address), now, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_mean() {
        let mut rng = rand::rng();
        let n = 20000;
        let total: u64 = (0..n).map(|_| geometric(0.5, &mut rng)).sum();
        let mean = total as f64 / n as f64;
        assert!((0.9..1.1).contains(&mean), "mean {mean}, expected 1");
        assert_eq!((0..100).map(|_| geometric(0.0, &mut rng)).sum::<u64>(), 0);
    }

    #[test]
    fn starved_p_only_below_min_pool_plus_threshold() {
        let p = crate::node::pool::Params { min_pool: 25, threshold: 5, rate: 0.65 };
        assert_eq!(time_p(0.3, 0.75, 29, p), 0.75);
        assert_eq!(time_p(0.3, 0.75, 30, p), 0.3);
        assert_eq!(time_p(0.3, 0.0, 0, p), 0.3, "0 turns it off");
    }
}
