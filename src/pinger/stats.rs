//! Echolot's statistics (its doc/methodology and Stats.pm), over the pings of the last 12
//! days:
//!
//! - reliability: received / sent, each ping weighted by its age in days (`WEIGHT`: 0.5 the
//!   first day, when many are still under way, full for days 2–5, fading to 0.1 on day 12).
//!   A ping still out counts as received with the probability that it is merely slow: the
//!   share of this mix's returned pings whose latency exceeds (its age − 15 min) × 0.8. A
//!   mix that never answered gets 0 for its outstanding pings;
//! - latency: the median of the returned pings' latencies;
//! - per day (0 = the last 24 hours): the same reliability without the age weight, and the
//!   median latency, for the 12-character histories;
//! - broken chains: a chain (A, B) pinged at least 3 times (not counting pings sent less
//!   than 1.5 × (latency A + latency B) ago) whose received / sent is at most
//!   0.3 × rel(A) × rel(B), over the last 10 days.

use crate::pinger::store::Ping;

pub const DAYS: usize = 12;
const DAY: i64 = 86400;
/// Echolot's `stats_weight`, by age in whole days.
pub const WEIGHT: [f64; DAYS] = [0.5, 1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.5, 0.3, 0.2, 0.2, 0.1];
const SKEW_ABS: i64 = 15 * 60;
const SKEW_PERCENT: f64 = 0.80;
const CHAIN_PERIOD: i64 = 10 * DAY;
const CHAIN_GRACE: f64 = 1.5;
const CHAIN_FUDGE: f64 = 0.3;
const CHAIN_MIN_SAMPLE: u32 = 3;

/// The figures of one mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// 0.0 to 1.0; 0 when nothing was sent.
    pub reliability: f64,
    /// Median latency in seconds, `None` when no ping returned.
    pub latency: Option<i64>,
    /// Pings sent in the window.
    pub sent: u32,
    pub returned: u32,
    /// Index 0: the last 24 hours.
    pub reliability_day: [Option<f64>; DAYS],
    pub latency_day: [Option<i64>; DAYS],
}

fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n.is_multiple_of(2) => Some((sorted[(n - 1) / 2] + sorted[n / 2]) / 2),
        _ => Some(sorted[(n - 1) / 2]),
    }
}

/// The share of `sorted` latencies strictly above `x`.
fn share_above(x: f64, sorted: &[i64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let below = sorted.iter().take_while(|&&l| (l as f64) <= x).count();
    (sorted.len() - below) as f64 / sorted.len() as f64
}

/// The statistics of one mix from its single-mix pings (`next` empty), at `now`.
pub fn calculate<'p>(pings: impl IntoIterator<Item = &'p Ping>, now: i64) -> Stats {
    let window: Vec<&Ping> = pings.into_iter().filter(|p| p.sent > now - DAYS as i64 * DAY && p.sent <= now).collect();
    let day = |p: &Ping| (((now - p.sent) / DAY) as usize).min(DAYS - 1);
    let mut lat_all: Vec<i64> = Vec::new();
    let mut lat_day: Vec<Vec<i64>> = vec![Vec::new(); DAYS];
    let (mut sent_w, mut recv_w) = (0.0, 0.0);
    let (mut sent_d, mut recv_d) = ([0.0f64; DAYS], [0.0f64; DAYS]);
    for p in window.iter().filter(|p| p.returned.is_some()) {
        let l = p.returned.unwrap_or(p.sent) - p.sent;
        let d = day(p);
        lat_all.push(l);
        lat_day[d].push(l);
        sent_w += WEIGHT[d];
        recv_w += WEIGHT[d];
        sent_d[d] += 1.0;
        recv_d[d] += 1.0;
    }
    lat_all.sort_unstable();
    for p in window.iter().filter(|p| p.returned.is_none()) {
        let d = day(p);
        let still_coming = share_above((now - p.sent - SKEW_ABS) as f64 / SKEW_PERCENT, &lat_all);
        sent_w += WEIGHT[d];
        recv_w += WEIGHT[d] * still_coming;
        sent_d[d] += 1.0;
        recv_d[d] += still_coming;
    }
    let mut reliability_day = [None; DAYS];
    let mut latency_day = [None; DAYS];
    for d in 0..DAYS {
        if sent_d[d] > 0.0 {
            reliability_day[d] = Some(recv_d[d] / sent_d[d]);
        }
        lat_day[d].sort_unstable();
        latency_day[d] = median(&lat_day[d]);
    }
    Stats {
        reliability: if sent_w > 0.0 { (recv_w / sent_w).clamp(0.0, 1.0) } else { 0.0 },
        latency: median(&lat_all),
        sent: window.len() as u32,
        returned: lat_all.len() as u32,
        reliability_day,
        latency_day,
    }
}

/// Whether the chain (A, B) is broken, from its chain pings and the two mixes' figures.
pub fn chain_broken<'p>(pings: impl IntoIterator<Item = &'p Ping>, a: &Stats, b: &Stats, now: i64) -> bool {
    let grace = (CHAIN_GRACE * (a.latency.unwrap_or(0) + b.latency.unwrap_or(0)) as f64) as i64;
    let (mut sent, mut received) = (0u32, 0u32);
    for p in pings.into_iter().filter(|p| p.sent > now - CHAIN_PERIOD) {
        if p.returned.is_some() {
            sent += 1;
            received += 1;
        } else if p.sent < now - grace {
            sent += 1;
        }
    }
    sent >= CHAIN_MIN_SAMPLE && received as f64 / sent as f64 <= a.reliability * b.reliability * CHAIN_FUDGE
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    /// A ping every 2 hours over 12 days; `back(i)` says whether the i-th came back, after `lat`.
    fn history(back: impl Fn(usize) -> bool, lat: i64) -> Vec<Ping> {
        (0..DAYS * 12)
            .map(|i| {
                let sent = NOW - 3600 - i as i64 * 7200;
                // One not back by now is still under way.
                Ping {
                    mix: "M".into(),
                    next: String::new(),
                    sent,
                    returned: back(i).then_some(sent + lat).filter(|&r| r <= NOW),
                }
            })
            .collect()
    }

    #[test]
    fn perfect_dead_and_half() {
        let all = calculate(&history(|_| true, 600), NOW);
        assert_eq!(all.reliability, 1.0);
        assert_eq!(all.latency, Some(600));
        assert!(all.reliability_day.iter().all(|d| *d == Some(1.0)));
        assert!(all.latency_day.iter().all(|d| *d == Some(600)));

        let dead = calculate(&history(|_| false, 600), NOW);
        assert_eq!(dead.reliability, 0.0);
        assert_eq!(dead.latency, None);
        assert_eq!(dead.returned, 0);
        assert!(dead.reliability_day.iter().all(|d| *d == Some(0.0)));

        let half = calculate(&history(|i| i % 2 == 0, 600), NOW);
        assert!((half.reliability - 0.5).abs() < 0.01, "{}", half.reliability);
        assert_eq!(calculate(&[], NOW).reliability, 0.0);
    }

    #[test]
    fn pings_in_flight_count_by_how_slow_the_mix_is() {
        // Every ping returns after 4 hours; the two sent in the last 3 hours are out.
        let mut p = history(|_| true, 4 * 3600);
        assert!(p.iter().filter(|p| p.returned.is_none()).count() >= 1);
        let s = calculate(&p, NOW);
        assert_eq!(s.reliability, 1.0, "outstanding pings younger than the mix's latency are not lost");
        // The same pings with one outstanding for 2 days: that one is lost.
        p.push(Ping { mix: "M".into(), next: String::new(), sent: NOW - 2 * DAY - 60, returned: None });
        let s = calculate(&p, NOW);
        assert!(s.reliability < 1.0 && s.reliability > 0.98, "{}", s.reliability);
        // Older pings weigh less than recent ones: a loss 11 days ago costs less than one 3 days ago.
        let mut old = history(|_| true, 600);
        old.iter_mut().filter(|p| (NOW - p.sent) / DAY == 11).for_each(|p| p.returned = None);
        let mut recent = history(|_| true, 600);
        recent.iter_mut().filter(|p| (NOW - p.sent) / DAY == 3).for_each(|p| p.returned = None);
        assert!(calculate(&old, NOW).reliability > calculate(&recent, NOW).reliability);
    }

    #[test]
    fn a_chain_is_broken_when_far_below_its_mixes() {
        let good = calculate(&history(|_| true, 600), NOW);
        let chain = |back: bool, n: i64| -> Vec<Ping> {
            (0..n)
                .map(|i| Ping {
                    mix: "A".into(),
                    next: "B".into(),
                    sent: NOW - DAY * (i + 1),
                    returned: back.then_some(NOW - DAY * (i + 1) + 900),
                })
                .collect()
        };
        assert!(chain_broken(&chain(false, 3), &good, &good, NOW));
        assert!(!chain_broken(&chain(true, 3), &good, &good, NOW));
        assert!(!chain_broken(&chain(false, 2), &good, &good, NOW), "too few pings to judge");
        // Pings too young to have returned are not counted.
        let young: Vec<Ping> =
            (0..5).map(|i| Ping { mix: "A".into(), next: "B".into(), sent: NOW - 60 * i, returned: None }).collect();
        assert!(!chain_broken(&young, &good, &good, NOW));
    }
}
