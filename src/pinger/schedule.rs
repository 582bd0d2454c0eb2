//! When and along which path each mix is pinged.
//!
//! Each mix (and each chain) has its own offset in the interval, derived from the ping
//! secret and its fingerprint(s) (Echolot derives it from the name and the date): it is
//! due once in every slot `[k·interval + offset, (k+1)·interval + offset)`, at the first
//! round in the slot. Offsets spread the pings over the interval and are unknown to the
//! mixes, so a mix cannot tell from the hour which message is a ping.

use std::time::{Duration, SystemTime};

use crate::batch::state::unix;
use crate::mixes::directory::Mix;
use crate::pinger::ping::hmac_sha256;

/// The offset of `what` (a fingerprint, or two for a chain) in `interval`.
pub fn offset(secret: &[u8], what: &str, interval: Duration) -> u64 {
    let h = hmac_sha256(secret, format!("mixtasy-ping offset\n{what}").as_bytes());
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % interval.as_secs().max(1)
}

/// Whether a ping last sent at `last` is due again at `now`.
pub fn due(now: SystemTime, last: Option<i64>, interval: Duration, offset: u64) -> bool {
    let (now, iv) = (unix(now), interval.as_secs().max(1) as i64);
    let slot_start = now - (now - offset as i64).rem_euclid(iv);
    last.is_none_or(|l| l < slot_start || l > now)
}

/// Whether `mix` delivers to the pinger's domain itself (then it is pinged over one hop).
pub fn delivers_to(mix: &Mix, domain: &str) -> bool {
    mix.modes.exitpublic || (mix.modes.exitprivate && mix.address.fqdn().eq_ignore_ascii_case(domain))
}

/// The path of a ping of `mix`: itself when it delivers to the pinger, else itself then the
/// trusted exit (a middleman); `None` when neither works.
pub fn path<'m>(mix: &'m Mix, trusted_exit: Option<&'m Mix>, domain: &str) -> Option<Vec<&'m Mix>> {
    if delivers_to(mix, domain) {
        return Some(vec![mix]);
    }
    match trusted_exit {
        Some(e) if mix.modes.middleman && e.address != mix.address && delivers_to(e, domain) => Some(vec![mix, e]),
        _ => None,
    }
}

/// The chains pinged: every middleman A, then every other mix B that delivers to the pinger.
pub fn chains<'m>(mixes: &'m [Mix], domain: &str) -> Vec<(&'m Mix, &'m Mix)> {
    let mut out = Vec::new();
    for a in mixes.iter().filter(|m| m.modes.middleman) {
        for b in mixes.iter().filter(|b| b.address != a.address && delivers_to(b, domain)) {
            out.push((a, b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ping_a_slot_at_its_offset() {
        let iv = Duration::from_secs(7200);
        let t = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64);
        let base: i64 = 1_800_000_000; // a multiple of 7200
        let off = 1000;
        assert!(due(t(base + 1000), None, iv, off));
        // Sent at the slot start: not due again in the slot, due in the next.
        assert!(!due(t(base + 7000), Some(base + 1000), iv, off));
        assert!(!due(t(base + 8199), Some(base + 1000), iv, off));
        assert!(due(t(base + 8200), Some(base + 1000), iv, off));
        // Before the offset, the slot began in the previous interval.
        assert!(!due(t(base + 500), Some(base - 7200 + 1000), iv, off));
        // A send time in the future (the clock went back) does not stop pinging.
        assert!(due(t(base + 1000), Some(base + 90_000), iv, off));
        let a = offset(b"s", "A", iv);
        assert!(a < 7200);
        assert_ne!(
            (0..20).map(|i| offset(b"s", &format!("M{i}"), iv)).collect::<std::collections::BTreeSet<_>>().len(),
            1,
            "offsets differ"
        );
    }
}
