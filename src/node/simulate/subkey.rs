//! Does a message outlive its keys? Every layer is sealed to the newest subkey its mix had
//! when the sender made it; a mix adds a subkey at half its validity, so that subkey is
//! between 0 and validity/2 old then, uniformly, and has validity − age left. The layer
//! for hop i is opened when hop i takes the message, in its first round after the mail
//! arrives: at S_{i−1} plus the time to that round, S_{i−1} being the delays of the hops
//! before it. The message reaches its exit in time when every hop, the exit included,
//! takes it before its subkey expires.
//!
//! Hop delays are drawn from a simulation's measured delays (`Report::delays`), every hop
//! running the same settings at the same traffic; a delay d is the time to the intake
//! round (d mod t, the arrival being uniform within the interval) plus whole rounds in the
//! pool. The sender's directory is assumed current (an older copy only makes it worse).

use rand::Rng;

/// The share of `trials` messages over `hops` hops that every hop takes before its subkey
/// expires; `None` without delays to draw from.
pub fn reach_probability(
    delays: &[f64],
    hops: usize,
    validity: f64,
    interval: f64,
    trials: usize,
    rng: &mut impl Rng,
) -> Option<f64> {
    if delays.is_empty() || trials == 0 {
        return None;
    }
    let mut ok = 0usize;
    'trial: for _ in 0..trials {
        let mut elapsed = 0.0;
        for _ in 0..hops {
            let d = delays[rng.random_range(0..delays.len())];
            let to_round = d % interval;
            let left = validity - rng.random::<f64>() * validity / 2.0;
            if elapsed + to_round >= left {
                continue 'trial;
            }
            elapsed += d;
        }
        ok += 1;
    }
    Some(ok as f64 / trials as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const DAY: f64 = 86400.0;

    #[test]
    fn fast_mixes_always_make_it_and_slow_ones_never() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert_eq!(reach_probability(&[60.0, 600.0], 4, 2.0 * DAY, 900.0, 10_000, &mut rng), Some(1.0));
        // Three hops of 17 h each: the exit takes it after 51 h, past every 2-day subkey.
        assert_eq!(reach_probability(&[17.0 * 3600.0], 4, 2.0 * DAY, 900.0, 10_000, &mut rng), Some(0.0));
        assert_eq!(reach_probability(&[], 4, 2.0 * DAY, 900.0, 10, &mut rng), None);
    }

    /// Two hops of exactly 30 h, each one round of 30 h that starts as the mail arrives
    /// (no wait for the round): the second takes it at 30 h, in time when its subkey had
    /// more than 30 h left, i.e. was under 18 h old out of 24: probability 3/4.
    #[test]
    fn the_subkey_age_is_uniform_over_half_the_validity() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let p = reach_probability(&[30.0 * 3600.0], 2, 2.0 * DAY, 30.0 * 3600.0, 200_000, &mut rng).unwrap();
        assert!((p - 0.75).abs() < 0.005, "{p}");
    }
}
