//! What the pinger publishes into its `output` directory each round, and the table `status`
//! prints:
//!
//! - `mlist2.txt`: Echolot's "Stats-Version: 2.0" list (its Stats.pm `build_list2`), which
//!   remailer clients already read, with a detached armored signature `mlist2.txt.asc` by
//!   the pinger key (the list itself stays byte for byte what readers expect). A mix's
//!   nickname is its host name (in full: Mixtasy has no nicknames);
//! - `pubring.asc`: one armored keyring of every mix key pinged, each carrying the pinger's
//!   latest certification, with a detached armored signature `pubring.asc.sig`;
//! - certifications (`mixes::ranking`) on each mix key pinged, merged into `pubring.asc`
//!   and uploaded to the keyserver.

use std::time::SystemTime;

use anyhow::{Context, Result};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::Cert;
use sequoia_openpgp as openpgp;
use std::io::Write;

use crate::mixes::directory::Mix;
use crate::pinger::stats::{Stats, DAYS};
use crate::util::clock;

/// One mix's line.
pub struct Row<'a> {
    pub mix: &'a Mix,
    pub stats: Stats,
}

/// `make_min_hr` of Echolot without seconds: `h:mm`, ` :mm`, `99:59` for none.
fn latency(secs: Option<i64>) -> String {
    match secs {
        Some(s) if (0..100 * 3600).contains(&s) => {
            let (h, m) = (s / 3600, s / 60 % 60);
            if h > 0 {
                format!("{h:2}:{m:02}")
            } else {
                format!("  :{m:02}")
            }
        }
        _ => "99:59".into(),
    }
}

/// The 12-day latency history, oldest day first: 0 under 20 minutes, 1–9 hours, A to H up to
/// 48 hours and beyond, `?` for a day without a returned ping.
pub fn latency_history(s: &Stats) -> String {
    const STEPS: [(i64, char); 17] = [
        (20 * 60, '0'),
        (3600, '1'),
        (2 * 3600, '2'),
        (3 * 3600, '3'),
        (4 * 3600, '4'),
        (5 * 3600, '5'),
        (6 * 3600, '6'),
        (7 * 3600, '7'),
        (8 * 3600, '8'),
        (9 * 3600, '9'),
        (12 * 3600, 'A'),
        (18 * 3600, 'B'),
        (24 * 3600, 'C'),
        (30 * 3600, 'D'),
        (36 * 3600, 'E'),
        (42 * 3600, 'F'),
        (48 * 3600, 'G'),
    ];
    (0..DAYS)
        .rev()
        .map(|d| s.latency_day[d].map_or('?', |l| STEPS.iter().find(|(lim, _)| l < *lim).map_or('H', |(_, c)| *c)))
        .collect()
}

/// The 12-day reliability history, oldest day first: `+` for 100 %, else the tens digit.
pub fn reliability_history(s: &Stats) -> String {
    (0..DAYS)
        .rev()
        .map(|d| match s.reliability_day[d] {
            None => '?',
            Some(r) if r >= 0.9999 => '+',
            Some(r) => char::from_digit(((r * 10.0) as u32).min(9), 10).unwrap_or('?'),
        })
        .collect()
}

/// Whether a mix is a middleman only for everyone else (Echolot's `middle`, option `D`).
fn middle(m: &Mix) -> bool {
    !m.modes.exitpublic
}

/// Best first: reliability, then latency, then name.
pub fn sort(rows: &mut [Row<'_>]) {
    rows.sort_by(|a, b| {
        b.stats
            .reliability
            .total_cmp(&a.stats.reliability)
            .then(a.stats.latency.unwrap_or(i64::MAX).cmp(&b.stats.latency.unwrap_or(i64::MAX)))
            .then(a.mix.address.fqdn().cmp(b.mix.address.fqdn()))
    });
}

/// Echolot's `Generated:` date.
fn generated(now: SystemTime) -> String {
    let c = clock::civil(now);
    format!(
        "{} {:02} {} {:4} {:02}:{:02}:{:02} GMT",
        clock::DAYS[c.weekday as usize],
        c.day,
        clock::MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `mlist2.txt`; `broken` are chains (A, B) by host name.
pub fn mlist2(rows: &[Row<'_>], broken: &[(String, String)], now: SystemTime) -> String {
    let mut out = format!("Stats-Version: 2.0\nGenerated: {}\n", generated(now));
    out.push_str("Mixmaster    Latent-Hist   Latent  Uptime-Hist   Uptime  Options\n");
    out.push_str(&"-".repeat(72));
    out.push('\n');
    for r in rows {
        let line = format!(
            "{:<12} {:<12} {:>6}   {:<12}  {:5.1}%  {}",
            r.mix.address.fqdn(),
            latency_history(&r.stats),
            latency(r.stats.latency),
            reliability_history(&r.stats),
            r.stats.reliability * 100.0,
            if middle(r.mix) { "D" } else { "" }
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !broken.is_empty() {
        out.push_str("\nBroken type-II remailer chains:\n");
        for (a, b) in broken {
            out.push_str(&format!("({a} {b})\n"));
        }
    }
    out.push_str("\n\n\nRemailer-Capabilities:\n\n");
    let mut caps: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "$remailer{{\"{}\"}} = \"<{}> mixtasy{}\";",
                r.mix.address.fqdn(),
                r.mix.address,
                if middle(r.mix) { " middle" } else { "" }
            )
        })
        .collect();
    caps.sort();
    for c in caps {
        out.push_str(&c);
        out.push('\n');
    }
    out
}

/// `status`'s table: mix, modes, latency, reliability and both histories.
pub fn table(rows: &[Row<'_>]) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>6} {:>7} {:>5}  {:<12}  {:<12}\n",
        "mix", "modes", "latent", "uptime", "pings", "latent-hist", "uptime-hist"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<28} {:>6} {:>6.1}% {:>5}  {:<12}  {:<12}\n",
            r.mix.address.fqdn(),
            r.mix.modes.to_string(),
            latency(r.stats.latency),
            r.stats.reliability * 100.0,
            r.stats.sent,
            latency_history(&r.stats),
            reliability_history(&r.stats)
        ));
    }
    out
}

/// A detached, armored signature of `data` by the pinger's primary key.
pub fn sign_detached(pinger: &Cert, data: &[u8], now: SystemTime) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    let key = pinger
        .keys()
        .with_policy(&policy, now)
        .secret()
        .for_signing()
        .next()
        .context("the pinger key has no signing key")?;
    let signer = key.key().clone().into_keypair()?;
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = Armorer::new(m).kind(openpgp::armor::Kind::Signature).build()?;
        let mut s = Signer::new(m, signer)?.detached().creation_time(now).build()?;
        s.write_all(data)?;
        s.finalize()?;
    }
    Ok(out)
}

/// One armored keyring of `certs` (public parts).
pub fn keyring(certs: &[Cert]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::PublicKey)?;
        for c in certs {
            c.serialize(&mut w)?;
        }
        w.finalize()?;
    }
    Ok(out)
}

/// A cert's armored public form, for a keyserver upload.
pub fn armored(cert: &Cert) -> Result<String> {
    Ok(String::from_utf8(cert.armored().to_vec()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_and_latency_read_like_echolot() {
        let mut s = crate::pinger::stats::calculate(&[], 0);
        s.latency_day[0] = Some(600);
        s.latency_day[1] = Some(5 * 3600 + 1);
        s.latency_day[11] = Some(50 * 3600);
        s.reliability_day[0] = Some(1.0);
        s.reliability_day[1] = Some(0.55);
        assert_eq!(latency_history(&s), "H?????????60", "5 h 1 s is in the sixth hour");
        assert_eq!(reliability_history(&s), "??????????5+");
        assert_eq!(latency(Some(600)), "  :10");
        assert_eq!(latency(Some(3 * 3600 + 65)), " 3:01");
        assert_eq!(latency(None), "99:59");
    }
}
