//! One run of `mixtasy-nymd` (what the timer starts): finish what a crash interrupted,
//! take every mail of the Maildir, expire idle nyms, empty the outbox.
//!
//! Each mail is handled in one transaction that records its whole effect (nym changes,
//! outbox rows, counts) with a `done` row; the file is removed only after the commit
//! (`batch::state`'s crash ordering). The recipient is read from `X-Original-To:` (what
//! Postfix adds when it delivers a whole domain into one Maildir), else `Delivered-To:`,
//! else the first `To:`. `config@` takes requests, `send@` mail to send as a nym,
//! `block@` block requests and `bounces@` bounces (`blocking`); any other local part is
//! inbound mail for a nym. Nothing printed or counted names a nym.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rand::RngCore;
use rusqlite::Transaction;
use sequoia_openpgp::Cert;

use crate::batch::lock;
use crate::batch::spool::Spool;
use crate::batch::state::{self, bump, finish_pending, Action, State};
use crate::mixes::directory::Mix;
use crate::mixes::keys::KeyRing;
use crate::nymserv::blocking;
use crate::nymserv::config::{self, Config};
use crate::nymserv::deliver::{self, Target};
use crate::nymserv::home::NymHome;
use crate::nymserv::pgp::{self, Refused};
use crate::nymserv::request::{self, Delivery};
use crate::nymserv::store::{self, Nym};

/// A nym with no signed request for this long is warned (nym.alias.net).
pub const WARN_AFTER: Duration = Duration::from_secs(90 * 86400);
/// ... and deleted after this long.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(120 * 86400);

/// What one run did, for its one line of output (counts only).
#[derive(Debug, Default)]
pub struct Summary {
    pub taken: u64,
    pub sent: u64,
    pub failed: u64,
    pub expired: u64,
}

struct Ctx<'a> {
    cfg: &'a Config,
    server: &'a Cert,
    ring: KeyRing,
    mixes: Vec<Mix>,
    now: SystemTime,
}

/// One run. `Ok(None)` when another run holds the lock.
pub fn run(home: &NymHome, now: SystemTime) -> Result<Option<Summary>> {
    let cfg = home.config()?;
    let Some(_lock) = lock::try_lock(&home.dir)? else { return Ok(None) };
    let (server, _) = home.rotate(now)?;
    let ring = KeyRing::from_cert(&server, Duration::from_secs(3600))?;
    let mixes = home.directory().usable(now).unwrap_or_default();
    let ctx = Ctx { cfg: &cfg, server: &server, ring, mixes, now };
    let mut st = home.state()?;
    store::backfill_keys(st.conn(), |c| Ok(pgp::handles(&pgp::cert(c)?, now))).context("indexing the nyms' keys")?;
    let spool = Spool::open_for_round(&cfg.maildir)?;
    finish_pending(&mut st, &spool)?;
    let mut sum = Summary::default();
    for entry in spool.list()? {
        let Ok(mail) = std::fs::read(&entry.path) else { continue };
        if local_part(&mail, &cfg.domain).is_some_and(|l| config::OPERATOR.contains(&l.as_str())) {
            // Mail for people (postmaster@, abuse@): filed for the operator, unread.
            let tx = st.transaction()?;
            bump(&tx, "operator.kept", 1)?;
            bump(&tx, "intake.taken", 1)?;
            state::record_done(&tx, &entry.source, Action::ToOperator)?;
            tx.commit()?;
            spool.to_operator(&entry.path)?;
            sum.taken += 1;
            continue;
        }
        let tx = st.transaction()?;
        let counter = match handle(&tx, &ctx, &mail) {
            Ok(c) => c,
            Err(e) => {
                // Nothing of it is committed and the file stays for the next run: a
                // failure of ours (no mixes for a `mixtasy:` delivery, a full disk) must
                // not lose a request or a nym's mail. The error names no file or nym.
                drop(tx);
                eprintln!("mixtasy-nymd: a mail is kept for the next run: {e:#}");
                st.bump("intake.deferred", 1)?;
                continue;
            }
        };
        bump(&tx, counter, 1)?;
        bump(&tx, "intake.taken", 1)?;
        state::record_done(&tx, &entry.source, Action::Remove)?;
        tx.commit()?;
        spool.remove(&entry.path)?;
        sum.taken += 1;
    }
    spool.sync()?;
    st.clear_done()?;
    let capped = spool.cap_operator(config::MAX_OPERATOR)?;
    if capped > 0 {
        st.bump("operator.over-cap", capped as i64)?;
    }
    sum.expired = expire(&mut st, &ctx)?;
    store::purge(st.conn(), now)?;
    crate::abuse::block::purge(st.conn(), now)?;
    let (sent, failed) = deliver::flush(&mut st, &cfg)?;
    sum.sent = sent;
    sum.failed = failed;
    st.set_meta("last_run", state::unix(now))?;
    Ok(Some(sum))
}

/// The local part a mail was delivered to, if it is in the nym domain.
fn local_part(mail: &[u8], domain: &str) -> Option<String> {
    let (headers, _) = mailparse::parse_headers(mail).ok()?;
    let rcpt = ["X-Original-To", "Delivered-To"]
        .iter()
        .find_map(|h| {
            headers.iter().find(|f| f.get_key().eq_ignore_ascii_case(h)).map(|f| f.get_value().trim().to_string())
        })
        .or_else(|| {
            headers
                .iter()
                .find(|f| f.get_key().eq_ignore_ascii_case("To"))
                .and_then(|f| crate::mixes::address::header_addresses(f).into_iter().next())
        })?;
    let (local, d) = rcpt.trim_matches(['<', '>']).rsplit_once('@')?;
    d.eq_ignore_ascii_case(domain).then(|| local.to_ascii_lowercase())
}

/// The OpenPGP message in a mail's body (armored, or the raw body).
fn pgp_body(mail: &[u8]) -> Vec<u8> {
    let body = mailparse::parse_mail(mail).ok().and_then(|m| m.get_body_raw().ok()).unwrap_or_default();
    let start = b"-----BEGIN PGP MESSAGE-----";
    match body.windows(start.len()).position(|w| w == start) {
        Some(i) => body[i..].to_vec(),
        None => body,
    }
}

/// Handles one mail in `tx`; returns the counter of its outcome.
fn handle(tx: &Transaction<'_>, ctx: &Ctx<'_>, mail: &[u8]) -> Result<&'static str> {
    let Some(local) = local_part(mail, &ctx.cfg.domain) else { return Ok("drop.foreign") };
    match local.as_str() {
        "config" => config(tx, ctx, mail),
        "send" => send(tx, ctx, mail),
        blocking::BLOCK => blocking::take(tx, ctx.cfg, mail, ctx.now),
        // Bounces of what the server sent quote a nym's mail: destroyed unread.
        blocking::BOUNCES => Ok("drop.bounce"),
        l if ctx.cfg.reserved(l) => Ok("drop.reserved"),
        l => inbound(tx, ctx, l, mail),
    }
}

/// A signed request opened: its text, the signature, and the nym that signed it (if any).
type Opened = (Vec<u8>, pgp::Signed, Option<Nym>);

/// Opens a signed request: decrypt, find the signer (`candidates`, else the nyms the
/// signature names), verify, then freshness and the replay cache, in that order.
fn open_signed(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    mail: &[u8],
    max: usize,
    key_of: impl Fn(&[u8]) -> Option<Cert>,
) -> Result<Result<Opened, Refused>> {
    let msg = pgp_body(mail);
    let first = match pgp::open(&ctx.ring, &msg, &[], ctx.now, max) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(Err(e)) = first.claimed.map(|t| pgp::fresh(t, ctx.now)) {
        return Ok(Err(e));
    }
    let (signers, nyms) = match key_of(&first.plaintext) {
        Some(c) => (vec![c], Vec::new()),
        None => {
            let (certs, nyms) = candidates(tx, &first.issuers, pgp::cert)?;
            if nyms.is_empty() {
                return Ok(Err(Refused::Unsigned));
            }
            (certs, nyms)
        }
    };
    let opened = match pgp::open(&ctx.ring, &msg, &signers, ctx.now, max) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let Some(signed) = opened.signed else { return Ok(Err(Refused::Unsigned)) };
    if let Err(e) = pgp::fresh(signed.created, ctx.now) {
        return Ok(Err(e));
    }
    if !store::first_use(tx, &signed.hash, ctx.now)? {
        return Ok(Err(Refused::Replay));
    }
    let nym = nyms.into_iter().find(|n| n.fingerprint == signed.fingerprint);
    Ok(Ok((opened.plaintext, signed, nym)))
}

/// The nyms a signature's issuers name, through the key index, and their keys read by
/// `parse`: only theirs, however many nyms there are. A signature that names a nym's key
/// but was made by another key finds that nym here and then fails to verify.
fn candidates(
    tx: &Transaction<'_>,
    issuers: &[sequoia_openpgp::KeyHandle],
    mut parse: impl FnMut(&[u8]) -> Result<Cert>,
) -> Result<(Vec<Cert>, Vec<Nym>)> {
    let names: Vec<String> = issuers.iter().flat_map(pgp::handle_names).collect();
    let nyms = store::by_handles(tx, &names)?;
    let certs = nyms.iter().map(|n| parse(&n.cert)).collect::<Result<_>>()?;
    Ok((certs, nyms))
}

/// A name is 1 to 32 of `a-z 0-9 . - _`, starting with a letter or digit.
fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
        && n.as_bytes()[0].is_ascii_alphanumeric()
}

/// The one user id of a nym key as `name@domain`, or why not.
fn nym_name(cert: &Cert, domain: &str) -> Result<String, String> {
    let uids: Vec<_> = cert.userids().collect();
    if uids.len() != 1 {
        return Err(format!("the key must carry exactly one user id, not {}", uids.len()));
    }
    let email = uids[0].userid().email().ok().flatten().ok_or("the user id holds no address")?.to_ascii_lowercase();
    let (local, d) = email.rsplit_once('@').ok_or("the user id holds no address")?;
    if !d.eq_ignore_ascii_case(domain) {
        return Err(format!("the address must be in {domain}"));
    }
    if !valid_name(local) {
        return Err("a name is 1 to 32 of a-z, 0-9, '.', '-', '_'".into());
    }
    Ok(local.to_string())
}

/// An answer from the server: a small mail the nym's mail program shows.
fn answer(cfg: &Config, name: &str, subject: &str, text: &str, now: SystemTime) -> Vec<u8> {
    format!(
        "From: Nym server <config@{d}>\r\nTo: {name}@{d}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n",
        d = cfg.domain,
        date = crate::util::clock::rfc5322(now)
    )
    .into_bytes()
}

/// Tells a nym `text` under `subject`, from config@, over its own delivery.
fn tell_nym(tx: &Transaction<'_>, ctx: &Ctx<'_>, n: &Nym, cert: &Cert, subject: &str, text: &str) -> Result<()> {
    tell(tx, ctx, n, cert, &delivery_of(n), &answer(ctx.cfg, &n.name, subject, text, ctx.now))
}

fn delivery_of(n: &Nym) -> Delivery {
    Delivery::parse(&n.delivery).unwrap_or(Delivery::Newsgroup)
}

/// Queues `content` for `n` over `delivery`.
fn tell(tx: &Transaction<'_>, ctx: &Ctx<'_>, n: &Nym, cert: &Cert, delivery: &Delivery, content: &[u8]) -> Result<()> {
    let t = Target { cert, hsub: &n.hsub, symmetric: &n.symmetric, delivery };
    deliver::to_nym(tx, ctx.cfg, ctx.server, &ctx.mixes, &t, content, ctx.now, &mut rand::rng())
}

/// Sends a confirmation code for `delivery` over that very channel; at most one waits per
/// `mixtasy:` address (an address nobody confirmed gets one mail).
fn confirmation(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    n: &Nym,
    cert: &Cert,
    delivery: &Delivery,
) -> Result<&'static str> {
    let setting = delivery.as_setting();
    if matches!(delivery, Delivery::Mixtasy(_)) && store::confirmation_waiting(tx, &setting, ctx.now)? {
        return Ok("confirm.held");
    }
    let mut code = [0u8; 8];
    rand::rng().fill_bytes(&mut code);
    let code = crate::format::message::hex(&code);
    store::add_confirmation(tx, &n.name, &setting, &code, ctx.now)?;
    let text = format!(
        "To confirm this delivery for {name}@{d}, send to config@{d} a request signed by the nym key holding the line\r\n\r\nconfirm: {code}\r\n\r\nUntil then nothing else is delivered here.",
        name = n.name,
        d = ctx.cfg.domain
    );
    tell(tx, ctx, n, cert, delivery, &answer(ctx.cfg, &n.name, "Confirm your nym's delivery", &text, ctx.now))?;
    Ok("confirm.sent")
}

/// A refusal with its reason, posted to the shared group (never to an unconfirmed mailbox),
/// sealed to the key of the request.
fn refuse(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    cert: &Cert,
    name: &str,
    hsub: &str,
    why: &str,
    counter: &'static str,
) -> Result<&'static str> {
    let n = Nym {
        name: name.into(),
        fingerprint: String::new(),
        cert: Vec::new(),
        hsub: hsub.into(),
        symmetric: String::new(),
        acksend: false,
        delivery: String::new(),
        active: false,
        created: ctx.now,
        last_signed: ctx.now,
    };
    tell(
        tx,
        ctx,
        &n,
        cert,
        &Delivery::Newsgroup,
        &answer(ctx.cfg, name, "Request refused", &format!("Your request was refused: {why}."), ctx.now),
    )?;
    Ok(counter)
}

fn config(tx: &Transaction<'_>, ctx: &Ctx<'_>, mail: &[u8]) -> Result<&'static str> {
    let key_in = |p: &[u8]| request::parse(p).ok().and_then(|r| r.key);
    let (plain, signed, known) = match open_signed(tx, ctx, mail, 256 * 1024, key_in)? {
        Ok(x) => x,
        Err(e) => return Ok(e.counter()),
    };
    let req = match request::parse(&plain) {
        Ok(r) => r,
        Err(_) => return Ok("refused.syntax"),
    };
    if let Some(key) = &req.key {
        return create(tx, ctx, key, &req, &signed);
    }
    let Some(mut n) = known else { return Ok("refused.unsigned") };
    let cert = pgp::cert(&n.cert)?;
    n.last_signed = ctx.now;
    if req.delete {
        if n.active {
            tell_nym(
                tx,
                ctx,
                &n,
                &cert,
                "Nym deleted",
                &format!(
                    "Your nym is deleted. Its name is held back for {} days: only this key can take it again.",
                    store::NAME_HELD.as_secs() / 86400
                ),
            )?;
        }
        store::delete(tx, &n, ctx.now)?;
        return Ok("config.deleted");
    }
    if let Some(code) = &req.confirm {
        return match store::take_confirmation(tx, &n.name, code, ctx.now)? {
            Some(d) => {
                n.delivery = d;
                n.active = true;
                store::put(tx, &n)?;
                tell_nym(tx, ctx, &n, &cert, "Delivery confirmed", "Your nym's delivery is confirmed and active.")?;
                Ok("config.confirmed")
            }
            None => {
                store::put(tx, &n)?;
                Ok("refused.bad-code")
            }
        };
    }
    apply_settings(&mut n, &req);
    store::put(tx, &n)?;
    if let Some(d) = &req.delivery {
        if Some(d) != Delivery::parse(&n.delivery).as_ref() {
            return confirmation(tx, ctx, &n, &cert, d);
        }
    }
    if n.active {
        tell_nym(tx, ctx, &n, &cert, "Nym modified", "Your settings are changed.")?;
    }
    Ok("config.modified")
}

fn apply_settings(n: &mut Nym, req: &request::Request) {
    if let Some(h) = &req.hsub {
        n.hsub = h.clone();
    }
    if let Some(s) = &req.symmetric {
        n.symmetric = s.clone();
    }
    if let Some(a) = req.acksend {
        n.acksend = a;
    }
}

/// A create, or a refresh of a nym's own key (same fingerprint).
fn create(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    key: &Cert,
    req: &request::Request,
    signed: &pgp::Signed,
) -> Result<&'static str> {
    if !pgp::can_receive(key, ctx.now) {
        // Nothing can be sealed to it, not even the refusal.
        return Ok("refused.key");
    }
    let hsub = req.hsub.clone().unwrap_or_default();
    let name = match nym_name(key, &ctx.cfg.domain) {
        Ok(n) => n,
        Err(why) => return refuse(tx, ctx, key, "", &hsub, &why, "refused.user-id"),
    };
    if ctx.cfg.reserved(&name) {
        return refuse(
            tx,
            ctx,
            key,
            &name,
            &hsub,
            &format!("{name}@{} is reserved", ctx.cfg.domain),
            "refused.reserved",
        );
    }
    if signed.fingerprint != key.fingerprint().to_hex() {
        return Ok("refused.unsigned");
    }
    // A key block makes a create or a refresh; a delete or a confirm beside it would be
    // ignored silently (the owner thinks the nym gone, or confirmed, and it is not).
    if req.delete || req.confirm.is_some() {
        let why = "a request with a key block creates a nym or refreshes its key; send `delete:` or `confirm:` in a request of its own, without the key";
        return refuse(tx, ctx, key, &name, &hsub, why, "refused.key-and-command");
    }
    let fpr = key.fingerprint().to_hex();
    let delivery = req.delivery.clone().unwrap_or(Delivery::Newsgroup);
    use sequoia_openpgp::serialize::SerializeInto;
    let bytes = key.to_vec()?;
    if let Some((held_for, until)) = store::held(tx, &name, ctx.now)? {
        if held_for != fpr {
            let why = format!(
                "{name}@{} was deleted and is held back until {} so that nobody takes over its correspondence",
                ctx.cfg.domain,
                crate::util::clock::rfc5322(until)
            );
            return refuse(tx, ctx, key, &name, &hsub, &why, "refused.taken");
        }
        store::release(tx, &name)?;
    }
    match store::get(tx, &name)? {
        Some(old) if old.fingerprint != fpr => {
            refuse(tx, ctx, key, &name, &hsub, &format!("{name}@{} is taken", ctx.cfg.domain), "refused.taken")
        }
        Some(mut n) => {
            n.cert = bytes;
            n.last_signed = ctx.now;
            apply_settings(&mut n, req);
            store::put(tx, &n)?;
            store::index_keys(tx, &n.name, &pgp::handles(key, ctx.now))?;
            if !n.active || Some(&delivery) != Delivery::parse(&n.delivery).as_ref() {
                return confirmation(tx, ctx, &n, key, &delivery);
            }
            Ok("config.refreshed")
        }
        None => {
            let mut n = Nym {
                name,
                fingerprint: fpr,
                cert: bytes,
                hsub: String::new(),
                symmetric: String::new(),
                acksend: true,
                delivery: String::new(),
                active: false,
                created: ctx.now,
                last_signed: ctx.now,
            };
            apply_settings(&mut n, req);
            store::put(tx, &n)?;
            store::index_keys(tx, &n.name, &pgp::handles(key, ctx.now))?;
            let c = confirmation(tx, ctx, &n, key, &delivery)?;
            Ok(if c == "confirm.sent" { "config.created" } else { c })
        }
    }
}

/// Inbound mail for `name`: sealed and delivered if the nym is active and within its
/// daily budget; anything else is dropped, counted, and the nym told once a day.
fn inbound(tx: &Transaction<'_>, ctx: &Ctx<'_>, name: &str, mail: &[u8]) -> Result<&'static str> {
    let Some(n) = store::get(tx, name)?.filter(|n| n.active) else { return Ok("drop.unknown") };
    if mail.len() > ctx.cfg.max_size {
        return Ok("drop.size");
    }
    let cert = pgp::cert(&n.cert)?;
    let day = state::unix(ctx.now) / 86400;
    let cost = 1 + mail.len() as i64 / 32768;
    let (rday, used, told): (i64, i64, i64) =
        tx.query_row("SELECT recv_day, recv_cost, told FROM nyms WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let (used, told) = if rday == day { (used, told) } else { (0, 0) };
    if used + cost > ctx.cfg.inbound_budget as i64 {
        if told == 0 {
            tell_nym(
                tx,
                ctx,
                &n,
                &cert,
                "Inbound budget used up",
                "Your nym's inbound budget for today is used up: further mail today is dropped.",
            )?;
        }
        tx.execute(
            "UPDATE nyms SET recv_day = ?2, recv_cost = ?3, told = 1 WHERE name = ?1",
            rusqlite::params![name, day, used],
        )?;
        return Ok("drop.over-budget");
    }
    tx.execute(
        "UPDATE nyms SET recv_day = ?2, recv_cost = ?3, told = ?4 WHERE name = ?1",
        rusqlite::params![name, day, used + cost, told],
    )?;
    tell(tx, ctx, &n, &cert, &delivery_of(&n), mail)?;
    Ok("inbound.delivered")
}

/// Mail a nym sends: signed by the nym, encrypted to the server. Goes out `From:
/// name@domain` to its To and Cc with the exit's header allowlist, a label, and our own
/// Date and Message-ID; blocked recipients are left out.
fn send(tx: &Transaction<'_>, ctx: &Ctx<'_>, mail: &[u8]) -> Result<&'static str> {
    let (plain, _, known) = match open_signed(tx, ctx, mail, ctx.cfg.max_size, |_| None)? {
        Ok(x) => x,
        Err(e) => return Ok(e.counter()),
    };
    let Some(mut n) = known.filter(|n| n.active) else { return Ok("refused.unsigned") };
    let cert = pgp::cert(&n.cert)?;
    n.last_signed = ctx.now;
    store::put(tx, &n)?;
    let day = state::unix(ctx.now) / 86400;
    let (sday, count): (i64, i64) =
        tx.query_row("SELECT sent_day, sent_today FROM nyms WHERE name = ?1", [&n.name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let count = if sday == day { count } else { 0 };
    if count as u64 >= ctx.cfg.sends_per_day {
        if count as u64 == ctx.cfg.sends_per_day {
            tell_nym(
                tx,
                ctx,
                &n,
                &cert,
                "Send limit reached",
                "Your nym reached its sends for today: sending stops until the next UTC day.",
            )?;
            tx.execute(
                "UPDATE nyms SET sent_day = ?2, sent_today = ?3 WHERE name = ?1",
                rusqlite::params![n.name, day, count + 1],
            )?;
        }
        return Ok("send.over-limit");
    }
    let rcpts = match crate::sender::submit::addresses(&plain, &["to", "cc"]) {
        Ok(r) if !r.is_empty() => r,
        _ => return Ok("send.no-recipient"),
    };
    if rcpts.len() > ctx.cfg.max_recipients {
        return Ok("send.too-many-recipients");
    }
    let Ok((filtered, _)) = crate::format::headers::filter(&plain, &[]) else { return Ok("send.malformed") };
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let mut out = format!(
        "From: {name}@{d}\r\nDate: {date}\r\nMessage-ID: <{id}@{d}>\r\n{label}",
        name = n.name,
        d = ctx.cfg.domain,
        date = crate::util::clock::rfc5322(ctx.now),
        id = crate::format::message::hex(&id),
        label = blocking::label(ctx.cfg)
    )
    .into_bytes();
    out.extend_from_slice(&filtered);
    let boundary = format!("nym-{}", crate::format::message::hex(&id));
    let Ok(out) = crate::node::exit::prepare::add_footer(&out, &blocking::footer(ctx.cfg), &boundary) else {
        return Ok("send.malformed");
    };
    let mut queued = 0;
    for r in &rcpts {
        if crate::abuse::block::is_blocked(tx, r, &ctx.cfg.subaddress_delimiter)?
            || !crate::mixes::address::plausible(r)
            || crate::mixes::address::relays(r)
        {
            bump(tx, "send.blocked-recipient", 1)?;
            continue;
        }
        store::queue(tx, "smtp", r, &out)?;
        queued += 1;
    }
    tx.execute(
        "UPDATE nyms SET sent_day = ?2, sent_today = ?3 WHERE name = ?1",
        rusqlite::params![n.name, day, count + 1],
    )?;
    if n.acksend && queued > 0 {
        tell_nym(tx, ctx, &n, &cert, "Sent", &format!("Your mail went to {queued} recipient(s)."))?;
    }
    Ok(if queued > 0 { "send.sent" } else { "send.no-recipient" })
}

/// Warns nyms idle for `WARN_AFTER`, deletes those idle for `EXPIRE_AFTER`. Returns how
/// many were deleted.
fn expire(st: &mut State, ctx: &Ctx<'_>) -> Result<u64> {
    let mut deleted = 0;
    let tx = st.transaction()?;
    for n in store::all(&tx)? {
        if n.last_signed + EXPIRE_AFTER <= ctx.now {
            store::delete(&tx, &n, ctx.now)?;
            bump(&tx, "nym.expired", 1)?;
            deleted += 1;
        } else if n.active && n.last_signed + WARN_AFTER <= ctx.now {
            let warned: i64 = tx.query_row("SELECT warned FROM nyms WHERE name = ?1", [&n.name], |r| r.get(0))?;
            if warned == 0 {
                let cert = pgp::cert(&n.cert)?;
                let text = "Your nym had no signed request for 90 days: it is deleted at 120 days unless you send one (any config@ request, or mail through send@).";
                tell_nym(&tx, ctx, &n, &cert, "Nym expires soon", text)?;
                tx.execute("UPDATE nyms SET warned = 1 WHERE name = ?1", [&n.name])?;
                bump(&tx, "nym.warned", 1)?;
            }
        }
    }
    tx.commit().context("committing expiry")?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_from_postfix_headers_then_to() {
        let m = b"X-Original-To: Alice@Nym.Test\nTo: other@nym.test\n\nx";
        assert_eq!(local_part(m, "nym.test").as_deref(), Some("alice"));
        assert_eq!(local_part(b"To: Bob <bob@nym.test>\n\nx", "nym.test").as_deref(), Some("bob"));
        assert_eq!(local_part(b"To: bob@elsewhere.test\n\nx", "nym.test"), None);
        assert!(valid_name("alice.b-1") && !valid_name("-x") && !valid_name("Al") && !valid_name(&"a".repeat(33)));
    }

    fn stored(name: &str, cert: Vec<u8>, fingerprint: String) -> Nym {
        let t = SystemTime::UNIX_EPOCH;
        Nym {
            name: name.into(),
            fingerprint,
            cert,
            hsub: String::new(),
            symmetric: String::new(),
            acksend: true,
            delivery: "newsgroup".into(),
            active: true,
            created: t,
            last_signed: t,
        }
    }

    /// 1000 nyms, one with a real key: finding the signer of a request parses that one key
    /// and no other (the others' keys do not even parse), whether the signature names its
    /// key by key id or by fingerprint. Before the key index, each request parsed every
    /// nym's key until one matched: up to 1000 here.
    #[test]
    fn the_signer_is_found_by_the_index_parsing_one_key() {
        use sequoia_openpgp::serialize::SerializeInto;
        let mut st = State::in_memory_with(store::MIGRATIONS).unwrap();
        let tx = st.transaction().unwrap();
        for i in 0..999 {
            let name = format!("n{i}");
            store::put(&tx, &stored(&name, b"not a key".to_vec(), format!("{i:040X}"))).unwrap();
            store::index_keys(&tx, &name, &[format!("{i:016X}"), format!("{i:040X}")]).unwrap();
        }
        let (key, _) = sequoia_openpgp::cert::CertBuilder::general_purpose(Some("alice@nym.test")).generate().unwrap();
        let alice = stored("alice", key.to_vec().unwrap(), key.fingerprint().to_hex());
        store::put(&tx, &alice).unwrap();
        let now = SystemTime::now();
        store::index_keys(&tx, "alice", &pgp::handles(&key, now)).unwrap();
        let policy = sequoia_openpgp::policy::StandardPolicy::new();
        let signing = key.keys().with_policy(&policy, now).for_signing().next().unwrap().key().clone();
        for issuer in [signing.keyid().into(), signing.fingerprint().into()] {
            let mut parsed = 0;
            let (certs, nyms) = candidates(&tx, &[issuer], |c| {
                parsed += 1;
                pgp::cert(c)
            })
            .unwrap();
            assert_eq!(parsed, 1, "one key parsed out of 1000");
            assert_eq!((certs.len(), nyms[0].name.as_str()), (1, "alice"));
        }
        // A key nobody holds finds nobody; parses nothing.
        let (other, _) = sequoia_openpgp::cert::CertBuilder::new().generate().unwrap();
        let (certs, _) = candidates(&tx, &[other.key_handle()], |_| panic!("parsed a key")).unwrap();
        assert!(certs.is_empty());
        // Signatures naming many nyms are tried against at most MAX_CANDIDATES keys.
        let many: Vec<_> = (0..50u64).map(|i| sequoia_openpgp::KeyID::from(i).into()).collect();
        let (_, nyms) = candidates(&tx, &many, |_| Ok(key.clone())).unwrap();
        assert_eq!(nyms.len(), store::MAX_CANDIDATES);
    }
}
