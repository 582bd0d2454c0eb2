//! One pinger round (`mixtasy-pinger --round`, run by a timer): refresh the directory, take
//! returned pings from the Maildir, send the pings that are due, then compute the figures
//! and publish them.
//!
//! Crash safety as in the node: a Maildir file leaves only after the transaction that
//! counted it committed (a crash before: it is read again; after: it is read again and
//! found returned already, counted as `ping.replayed`, never twice as returned); mail that
//! is not a ping is moved to `.operator`, never deleted. A ping's row commits before the
//! transport takes it (`store`).

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sequoia_openpgp::Cert;

use crate::batch::lock;
use crate::batch::spool::Spool;
use crate::batch::state::{self, unix, State};
use crate::batch::transport::Transport;
use crate::mixes::directory::{self, Directory, Mix};
use crate::mixes::keyserver::Keyserver;
use crate::mixes::ranking::{self, Ranking};
use crate::pinger::config::Config;
use crate::pinger::home::PingerHome;
use crate::pinger::ping::{self, Intake};
use crate::pinger::publish::{self, Row};
use crate::pinger::schedule;
use crate::pinger::stats::{self, DAYS};
use crate::pinger::store::{self, Return};
use crate::util::fsutil;

/// How often the certifications go to the keyserver (they hold `ranking::VALIDITY`).
pub const UPLOAD_INTERVAL: Duration = Duration::from_secs(86400);

/// What one round did (counts only).
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub send_failed: u64,
    pub returned: u64,
    pub forged: u64,
    pub replayed: u64,
    pub unknown: u64,
    pub operator: u64,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "pinger round: sent {}, send failed {}, returned {}, forged {}, replayed {}, unknown {}, to operator {}",
            self.sent, self.send_failed, self.returned, self.forged, self.replayed, self.unknown, self.operator
        )
    }
}

/// Runs one round; `Ok(None)` when another round holds the lock.
pub fn run(home: &PingerHome, now: SystemTime) -> Result<Option<Summary>> {
    let Some(_lock) = lock::try_lock(&home.dir)? else { return Ok(None) };
    let config = home.config()?;
    let cert = home.cert()?;
    let secret = home.ping_secret()?;
    let mut state = store::open(&home.state_path())?;
    let mut sum = Summary::default();
    if let Some(url) = &config.keyserver {
        let refreshed = Keyserver::new(url, Duration::from_secs(60))
            .and_then(|ks| ks.fetch_all())
            .and_then(|a| home.directory().refresh(a.as_deref(), now));
        state.bump(if refreshed.is_ok() { "directory.fetched" } else { "directory.fetch-failed" }, 1)?;
    }
    intake(&config, &cert, &secret, &mut state, now, &mut sum)?;
    let mixes = home.directory().usable(now)?;
    send_due(&config, &cert, &secret, &mut state, &mixes, now, &mut sum)?;
    store::prune(&state, now)?;
    publish(&config, &cert, &mut state, &known(&home.directory(), now)?, now)?;
    Ok(Some(sum))
}

fn intake(
    config: &Config,
    cert: &Cert,
    secret: &[u8],
    state: &mut State,
    now: SystemTime,
    sum: &mut Summary,
) -> Result<()> {
    let spool = Spool::open_for_round(&config.maildir)?;
    for entry in spool.list()? {
        // A file that vanished meanwhile is simply gone.
        let Ok(mail) = std::fs::read(&entry.path) else { continue };
        let counter = match ping::read(&mail, cert, secret, now) {
            Intake::NotPing => {
                spool.to_operator(&entry.path)?;
                sum.operator += 1;
                state.bump("intake.operator", 1)?;
                continue;
            }
            Intake::Forged => {
                sum.forged += 1;
                "ping.forged"
            }
            Intake::Valid { id, .. } => {
                let tx = state.transaction()?;
                let r = store::mark_returned(&tx, &id, now)?;
                let c = match r {
                    Return::Fresh(_) => {
                        sum.returned += 1;
                        "ping.returned"
                    }
                    Return::Again => {
                        sum.replayed += 1;
                        "ping.replayed"
                    }
                    Return::Unknown => {
                        sum.unknown += 1;
                        "ping.unknown"
                    }
                };
                state::bump(&tx, c, 1)?;
                tx.commit()?;
                spool.remove(&entry.path)?;
                continue;
            }
        };
        state.bump(counter, 1)?;
        spool.remove(&entry.path)?;
    }
    spool.sync()?;
    spool.cap_operator(config.max_operator)?;
    Ok(())
}

/// The pinger's mail domain.
fn domain(config: &Config) -> &str {
    config.address.rsplit_once('@').map_or("", |(_, d)| d)
}

fn fpr(m: &Mix) -> String {
    m.cert.fingerprint().to_hex()
}

#[allow(clippy::too_many_arguments)]
fn send_due(
    config: &Config,
    cert: &Cert,
    secret: &[u8],
    state: &mut State,
    mixes: &[Mix],
    now: SystemTime,
    sum: &mut Summary,
) -> Result<()> {
    let transport = config.transport();
    let trusted = config.trusted_exit.as_ref().and_then(|a| mixes.iter().find(|m| &m.address == a));
    let mut due: Vec<(String, String, Vec<&Mix>)> = Vec::new();
    for m in mixes {
        let f = fpr(m);
        let Some(path) = schedule::path(m, trusted, domain(config)) else { continue };
        if schedule::due(
            now,
            store::last_sent(state, &f, "")?,
            config.interval,
            schedule::offset(secret, &f, config.interval),
        ) {
            due.push((f, String::new(), path));
        }
    }
    for (a, b) in schedule::chains(mixes, domain(config)) {
        let (fa, fb) = (fpr(a), fpr(b));
        if schedule::due(
            now,
            store::last_sent(state, &fa, &fb)?,
            config.chain_interval,
            schedule::offset(secret, &format!("{fa} {fb}"), config.chain_interval),
        ) {
            due.push((fa, fb, vec![a, b]));
        }
    }
    let mut rng = rand::rng();
    for (mix, next, path) in due {
        let id = ping::new_id(&mut rng);
        let wire = ping::build(cert, &config.address, secret, &id, &path, now, &mut rng)?;
        let tx = state.transaction()?;
        store::record_sent(&tx, &id, &mix, &next, now)?;
        tx.commit()?;
        match send(&transport, &wire) {
            Ok(()) => {
                sum.sent += 1;
                state.bump("ping.sent", 1)?;
            }
            Err(e) => {
                store::forget(state, &id)?;
                sum.send_failed += 1;
                state.bump(e.counter(), 1)?;
            }
        }
    }
    Ok(())
}

fn send(
    transport: &Transport,
    wire: &crate::sender::create::WireMessage,
) -> Result<(), crate::batch::transport::TransportError> {
    transport.send(None, &[wire.to.as_str().to_string()], &wire.mail)
}

/// Every mix key in the directory, usable now or not: a mix whose subkeys expired
/// (a dead one that stopped rotating) still gets its figures, until the directory prunes it.
pub fn known(dir: &Directory, now: SystemTime) -> Result<Vec<Mix>> {
    let mut out = Vec::new();
    for (_, cert) in dir.certs()? {
        if let Ok((address, name, modes)) = directory::identity(&cert, now) {
            out.push(Mix {
                address,
                name,
                modes,
                subkeys: crate::mixes::keys::encryption_subkeys(&cert),
                cert,
                wkd: false,
                standing: None,
            });
        }
    }
    Ok(out)
}

/// The chains (A, B) found broken.
pub type Broken<'m> = Vec<(&'m Mix, &'m Mix)>;

/// The figures of every mix in the directory, best first, and the broken chains.
pub fn figures<'m>(state: &State, mixes: &'m [Mix], now: SystemTime) -> Result<(Vec<Row<'m>>, Broken<'m>)> {
    let pings = store::since(state, now - Duration::from_secs(DAYS as u64 * 86400))?;
    let mut rows: Vec<Row<'m>> = mixes
        .iter()
        .map(|m| {
            let f = fpr(m);
            Row { mix: m, stats: stats::calculate(pings.iter().filter(|p| p.mix == f && p.next.is_empty()), unix(now)) }
        })
        .filter(|r| r.stats.sent > 0)
        .collect();
    let mut broken = Vec::new();
    for a in &rows {
        for b in &rows {
            let (fa, fb) = (fpr(a.mix), fpr(b.mix));
            if fa != fb
                && stats::chain_broken(
                    pings.iter().filter(|p| p.mix == fa && p.next == fb),
                    &a.stats,
                    &b.stats,
                    unix(now),
                )
            {
                broken.push((a.mix, b.mix));
            }
        }
    }
    publish::sort(&mut rows);
    Ok((rows, broken))
}

fn publish(config: &Config, cert: &Cert, state: &mut State, mixes: &[Mix], now: SystemTime) -> Result<()> {
    let (rows, broken) = figures(state, mixes, now)?;
    let out = &config.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let names: Vec<(String, String)> =
        broken.iter().map(|(a, b)| (a.address.fqdn().to_string(), b.address.fqdn().to_string())).collect();
    let list = publish::mlist2(&rows, &names, now);
    let mut certified = Vec::new();
    for r in &rows {
        let ranking = Ranking {
            reliability: r.stats.reliability,
            latency: Duration::from_secs(r.stats.latency.unwrap_or(0).max(0) as u64),
            pings: r.stats.sent,
            broken_next: broken
                .iter()
                .filter(|(a, _)| a.address == r.mix.address)
                .map(|(_, b)| b.cert.fingerprint())
                .collect(),
        };
        let sig = ranking::certify(cert, &r.mix.cert, &ranking, now, ranking::VALIDITY)?;
        certified.push(r.mix.cert.clone().insert_packets(sig)?.0);
    }
    let ring = publish::keyring(&certified)?;
    // Each file before its signature: a reader never finds a signature for a file not yet there.
    for (name, data) in [("mlist2.txt", list.into_bytes()), ("pubring.asc", ring)] {
        let sig = publish::sign_detached(cert, &data, now)?;
        fsutil::write_atomic(&out.join(name), &data, 0o644)?;
        let sig_name = if name == "mlist2.txt" { "mlist2.txt.asc" } else { "pubring.asc.sig" };
        fsutil::write_atomic(&out.join(sig_name), &sig, 0o644)?;
    }
    if let Some(url) = &config.keyserver {
        let due = state
            .meta("last_upload")?
            .is_none_or(|t| unix(now) - t >= UPLOAD_INTERVAL.as_secs() as i64 || t > unix(now));
        if due && !certified.is_empty() {
            let ks = Keyserver::new(url, Duration::from_secs(60))?;
            let mut failed = 0;
            for c in &certified {
                if ks.publish(&publish::armored(c)?).is_err() {
                    failed += 1;
                }
            }
            state.bump("certification.uploaded", (certified.len() - failed) as i64)?;
            state.bump("certification.upload-failed", failed as i64)?;
            if failed == 0 {
                state.set_meta("last_upload", unix(now))?;
            }
        }
    }
    Ok(())
}
