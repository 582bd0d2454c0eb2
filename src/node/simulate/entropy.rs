//! The anonymity-set entropy of a message leaving a pool mix (Serjantov and Danezis,
//! "Towards an information theoretic metric for anonymity", 2002): the entropy of the
//! probability that the output is each input.
//!
//! The observer sees how many messages enter before each round, and (conservatively) knows
//! how many time-triggered dummies the node adds. The pool draws uniformly (`pool::pick`),
//! so the m_r − n_r messages that stayed from round r−1 are a uniform sample of its pool.
//! A message drawn at round r is therefore, with n_r = x_r real arrivals + k_r dummies:
//!
//!   a new arrival of round r, each with probability 1/m_r, or
//!   a message of the earlier pool, each with (1 − n_r/m_r) times its earlier probability,
//!
//! so an input that arrived at round s has probability (1/m_s) ∏_{s<j≤r} (1 − n_j/m_j).
//! Two observers, two figures.
//!
//! *Knows the dummies* (`Tracker::round`, the guarantee): an attacker who knows which
//! outputs are dummies (he runs every next hop, or the node). The entropy of a *real*
//! message leaving is that of the distribution above without the dummies' mass d,
//! renormalised, so dummies never count as cover themselves; they change the entropy only
//! through the pool they keep and flush. `Tracker` keeps S = −Σ p log2 p over the real
//! inputs and d, updated in O(1) a round (b = 1 − n_r/m_r):
//!
//!   S_r = x_r/m_r · log2 m_r + b S_{r−1} − b log2 b · (1 − d_{r−1}),
//!   d_r = k_r/m_r + b d_{r−1},      H_r = S_r/(1 − d_r) + log2 (1 − d_r).
//!
//! *Outside* (`Tracker::outside`): an attacker who watches every link but cannot tell a
//! dummy from mail (they are alike on the wire). To him a dummy that joined the pool is one
//! more input he did not see arrive, so every pooled entry is a candidate of its own and
//! the distribution needs no renormalising:
//!
//!   O_r = n_r/m_r · log2 m_r + b O_{r−1} − b log2 b.
//!
//! Flush-triggered dummies never enter the pool and are left out: the figure is
//! conservative for them.
//!
//! Closed form for the steady state with a constant λ arrivals a round and no dummies:
//! the pool fires at the same size m every round and sends λ (what arrived). With
//! a = λ/m, H = a log2 m + (1 − a) H − (1 − a) log2 (1 − a), hence
//!
//!   H = log2 m − ((1 − a)/a) log2 (1 − a)      (= log2 λ + H_b(a)/a),
//!
//! and each message leaves a round with probability a, so it waits a geometric number of
//! rounds, mean (1 − a)/a = (m − λ)/λ (Little's law gives the same: m − λ stay, λ a round).
//! A threshold mix (m = λ, a = 1) gives log2 λ and no wait.

use crate::node::pool;

/// The per-round recursion above.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// −Σ p log2 p over the real inputs.
    s: f64,
    /// The dummies' probability mass.
    d: f64,
    /// −Σ p log2 p over every pooled entry, dummies included (the outside observer's).
    o: f64,
}

impl Tracker {
    /// A round in which `arrivals` real messages and `dummies` dummies joined, so that the
    /// pool fires at `m`: the entropy (bits) of a message it draws. With an empty pool
    /// nothing is drawn and the state stays.
    pub fn round(&mut self, arrivals: u64, dummies: u64, m: u64) -> f64 {
        if m == 0 {
            return 0.0;
        }
        let mf = m as f64;
        let b = 1.0 - (arrivals + dummies) as f64 / mf;
        let old = if b > 0.0 { b * self.s - b * b.log2() * (1.0 - self.d) } else { 0.0 };
        self.s = arrivals as f64 / mf * mf.log2() + old;
        self.d = dummies as f64 / mf + b.max(0.0) * self.d;
        let old = if b > 0.0 { b * self.o - b * b.log2() } else { 0.0 };
        self.o = (arrivals + dummies) as f64 / mf * mf.log2() + old;
        self.entropy()
    }

    /// The entropy of a message drawn now, to the outside observer (every pooled dummy a
    /// candidate of its own).
    pub fn outside(&self) -> f64 {
        self.o.max(0.0)
    }

    /// The entropy of a real message drawn now (0 when the pool holds only dummies).
    pub fn entropy(&self) -> f64 {
        let real = 1.0 - self.d;
        if real <= 1e-12 {
            return 0.0;
        }
        (self.s / real + real.log2()).max(0.0)
    }
}

/// The closed form above: (entropy in bits, mean wait in rounds) of a pool that fires at
/// `m` and gets `lambda` a round.
pub fn closed_form(m: u64, lambda: u64) -> (f64, f64) {
    let a = lambda as f64 / m as f64;
    let h = if a >= 1.0 { (m as f64).log2() } else { (m as f64).log2() - (1.0 - a) / a * (1.0 - a).log2() };
    (h, (m - lambda) as f64 / lambda as f64)
}

/// Where the node's pool settles with exactly `lambda` arrivals a round: (m, λ) once a
/// round fires at the size the previous one did and sends `lambda`; `None` if it never
/// settles within 100 000 rounds (a pool that cannot send that many).
pub fn steady_pool(p: pool::Params, lambda: u64) -> Option<(u64, u64)> {
    let mut kept = 0;
    let mut last = None;
    for _ in 0..100_000 {
        let m = kept + lambda;
        let sent = pool::to_send(m, p).min(m);
        if sent == lambda && last == Some(m) {
            return Some((m, lambda));
        }
        last = Some(m);
        kept = m - sent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The recursion against the explicit sum over every input's probability
    /// (1/m_s) ∏_{s<j≤r} (1 − n_j/m_j), on random round sizes with dummies.
    #[test]
    fn recursion_equals_the_explicit_sum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut t = Tracker::default();
        // Per past round: (arrivals, dummies, m).
        let mut rounds: Vec<(u64, u64, u64)> = Vec::new();
        let mut kept = 0u64;
        for _ in 0..60 {
            let (x, k) = (rng.random_range(0..8u64), rng.random_range(0..3u64));
            let m = kept + x + k;
            let h = t.round(x, k, m);
            rounds.push((x, k, m));
            // Every real input's probability, then renormalised without the dummies.
            let (mut probs, mut dummy, mut every) = (Vec::new(), 0.0, 0.0);
            let mut survive = 1.0;
            for &(xs, ks, ms) in rounds.iter().rev() {
                if ms > 0 {
                    let p = survive / ms as f64;
                    probs.extend((0..xs).map(|_| p));
                    dummy += ks as f64 * p;
                    if p > 0.0 {
                        // The outside observer: every entry, dummies too, is a candidate.
                        every -= (xs + ks) as f64 * p * p.log2();
                    }
                    survive *= 1.0 - (xs + ks) as f64 / ms as f64;
                }
            }
            let sum: f64 = probs.iter().map(|p| p / (1.0 - dummy)).filter(|q| *q > 0.0).map(|q| -q * q.log2()).sum();
            if m > 0 {
                assert!((h - sum).abs() < 1e-9, "{h} {sum}");
                assert!((t.outside() - every).abs() < 1e-9, "{} {every}", t.outside());
            }
            kept = m - pool::to_send(m, pool::Params { min_pool: 3, threshold: 0, rate: 0.5 });
        }
    }

    /// A pool that fires at m = 40 every round and gets 6 messages and 4 dummies a round:
    /// to the outside observer it is a pool of 10 arrivals a round (`closed_form(40, 10)`);
    /// to the one who knows the dummies, 6 a round that leave with the same probability
    /// a = 1/4 a round: log2 6 + H_b(a)/a.
    #[test]
    fn both_observers_in_steady_state() {
        let mut t = Tracker::default();
        let mut h = 0.0;
        for _ in 0..400 {
            h = t.round(6, 4, 40);
        }
        let a: f64 = 0.25;
        let hb = -(a * a.log2()) - (1.0 - a) * (1.0 - a).log2();
        assert!((h - (6f64.log2() + hb / a)).abs() < 1e-9, "{h}");
        assert!((t.outside() - closed_form(40, 10).0).abs() < 1e-9, "{}", t.outside());
        assert!(t.outside() > h, "dummies are cover to the outside observer only");
    }

    #[test]
    fn closed_form_cases() {
        assert_eq!(closed_form(8, 8), (3.0, 0.0));
        let (h, d) = closed_form(40, 10);
        assert!((h - (10f64.log2() + (-(0.25f64 * 0.25f64.log2()) - 0.75 * 0.75f64.log2()) / 0.25)).abs() < 1e-12);
        assert_eq!(d, 3.0);
        assert_eq!(steady_pool(pool::Params { min_pool: 1000, threshold: 0, rate: 0.1 }, 1), Some((1010, 1)));
        assert_eq!(
            steady_pool(pool::Params { min_pool: 0, threshold: 0, rate: 0.0 }, 1),
            None,
            "a pool that never sends"
        );
    }
}
