//! The flood (issue #6, item 3): a spool of 50 000 files in one node's Maildir, taken by
//! real `mixtasyd --round` runs, with every file accounted for and the round's memory flat.
//!
//! The spool mixes what a mix's Maildir gets on a bad day: valid wire messages for the
//! node (each distinct: forwarded ones, finals it delivers as the exit, and the two parts
//! of multipart messages), replays of those (byte-identical copies, and copies an MTA
//! re-armored with CRLF line ends, trace headers and an armor header), truncated copies,
//! binary garbage, valid armor around garbage, ordinary mail to the mix address and
//! Postfix bounces quoting a wire message (both moved to `.operator`), and a share of each
//! other drop reason (another mix's mail, oversized bodies, layers tagged in the verified
//! window and in the unverified tail, layers
//! encrypted to another key). Files are shuffled, and one in ten sits in `cur/`.
//!
//! The same valid messages serve a flood of 5 000 and one of 50 000 (each in its own home
//! made from the same key, so no replay cache spans them). After the rounds: every valid
//! message is in the pool or was sent (or, for finals and assembled multipart messages, was
//! delivered), every other file was counted exactly once under its reason, `.operator`
//! holds exactly the non-mix mail, and nothing is left in `new/` or `cur/`. The peak RSS
//! of each round process (its VmHWM, polled: see `measured_round`) stays under `RSS_BOUND_MIB` and the 50 000 flood's peak is at most `RSS_GROWTH` times
//! the 5 000 flood's. Figures are printed: `cargo test --test tests flood:: -- --nocapture`,
//! or `scripts/flood` for a release build.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use mixtasy::format::message::{self, Kind};
use mixtasy::format::sizes::{INNER, OUTER};
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::keys::{self, KeyRing};
use mixtasy::mixes::modes::Modes;
use mixtasy::node::peel::{self, Node};
use mixtasy::{format::armor, format::verification, format::wire, sender::create};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

use crate::util::*;

const SMALL: usize = 5_000;
const BIG: usize = 50_000;
const FQDN: &str = "flood.test";
/// The round bench measured ~30 MiB flat from 1 000 to 10 000 valid messages: a batch of
/// 256 peeled messages (~42 KB each, ~11 MB), SQLite's 8 MiB page cache, the binary and
/// its libraries. 64 MiB is the target and leaves room for allocator slack.
const RSS_BOUND_MIB: f64 = 64.0;
/// "Does not grow with the spool": ten times the files may cost at most this factor in
/// peak RSS. What a round holds is bounded by the batch and SQLite's page cache, both full
/// at 5 000 files already (the pool alone is then ~38 MB on disk); the rest is noise.
const RSS_GROWTH: f64 = 1.25;

/// What a spool file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Forward,
    Final,
    Part,
    Replay,
    Rearmored,
    Truncated,
    Garbage,
    ArmoredGarbage,
    Operator,
    Bounce,
    NotForThisMix,
    Oversized,
    Tagged,
    TailTagged,
    UnknownKey,
}

impl What {
    const ALL: [What; 15] = [
        What::Forward,
        What::Final,
        What::Part,
        What::Replay,
        What::Rearmored,
        What::Truncated,
        What::Garbage,
        What::ArmoredGarbage,
        What::Operator,
        What::Bounce,
        What::NotForThisMix,
        What::Oversized,
        What::Tagged,
        What::TailTagged,
        What::UnknownKey,
    ];

    /// Files of this kind in a flood of 50 000 (ten times fewer at 5 000): 10 000 valid.
    fn per_50k(self) -> usize {
        match self {
            What::Forward => 9000,
            What::Final => 800,
            What::Part => 200,
            What::Replay => 6000,
            What::Rearmored => 2000,
            What::Truncated => 6000,
            What::Garbage => 5000,
            What::ArmoredGarbage => 5000,
            What::Operator => 4000,
            What::Bounce => 4000,
            What::NotForThisMix => 2000,
            What::Oversized => 2000,
            What::Tagged => 1000,
            What::TailTagged => 1000,
            What::UnknownKey => 2000,
        }
    }

    fn count(self, total: usize) -> usize {
        self.per_50k() * total / BIG
    }

    /// The one counter each file of this kind must raise (besides `intake.taken`).
    fn counter(self) -> &'static str {
        match self {
            What::Forward => "intake.forwarded",
            What::Final => "intake.final",
            What::Part => "intake.part",
            What::Replay | What::Rearmored => "drop.replay",
            What::Truncated | What::ArmoredGarbage => "drop.malformed",
            What::Garbage | What::Operator | What::Bounce => "intake.operator",
            What::NotForThisMix => "drop.not-for-this-mix",
            What::Oversized => "drop.oversized",
            What::Tagged => "drop.verification",
            What::TailTagged => "drop.tagged",
            What::UnknownKey => "drop.unknown-key",
        }
    }

    fn valid(self) -> bool {
        matches!(self, What::Forward | What::Final | What::Part)
    }
}

/// The distinct valid messages (enough for the big flood) and a few layers for another key.
struct Valid {
    forwards: Vec<Vec<u8>>,
    finals: Vec<Vec<u8>>,
    /// Both parts of each multipart message.
    parts: Vec<[Vec<u8>; 2]>,
    /// Layers sealed to the next mix's key, addressed to this node.
    unknown: Vec<Vec<u8>>,
}

fn original(rng: &mut impl RngCore, what: &str) -> String {
    let n = rng.next_u64();
    format!("From: alice@sender.test\r\nTo: bob@rcpt.test\r\nSubject: flood {what} {n:016x}\r\n\r\nflood {what} {n:016x}\r\n")
}

/// Builds the valid messages on every core: the only expensive part of the set-up.
fn make_valid(me: &Mix, next: &Mix, now: SystemTime) -> Valid {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = |n: usize, w: usize| n / workers + usize::from(w < n % workers);
    let parts: Vec<Valid> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut rng = rand::rng();
                    let single = |rng: &mut rand::rngs::ThreadRng, kind: Kind, payload: &[u8], path: &[&Mix]| {
                        let fin = message::build_final(&message::new_id(rng), kind, payload, rng);
                        create::wrap(fin, path, None, now, rng).unwrap().mail
                    };
                    let forwards = (0..share(What::Forward.per_50k(), w))
                        .map(|_| {
                            single(
                                &mut rng,
                                Kind::Singlepart,
                                original(&mut rand::rng(), "forward").as_bytes(),
                                &[me, next],
                            )
                        })
                        .collect();
                    let finals = (0..share(What::Final.per_50k(), w))
                        .map(|_| {
                            single(&mut rng, Kind::Singlepart, original(&mut rand::rng(), "final").as_bytes(), &[me])
                        })
                        .collect();
                    let parts = (0..share(What::Part.per_50k() / 2, w))
                        .map(|_| {
                            let id = message::new_id(&mut rng);
                            let whole = original(&mut rng, "multipart");
                            let (a, b) = whole.as_bytes().split_at(whole.len() / 2);
                            let one = |part, payload: &[u8], rng: &mut rand::rngs::ThreadRng| {
                                let fin = message::build_final(&id, Kind::Multipart { part, total: 2 }, payload, rng);
                                create::wrap(fin, &[me], None, now, rng).unwrap().mail
                            };
                            [one(1, a, &mut rng), one(2, b, &mut rng)]
                        })
                        .collect();
                    let unknown = (0..share(50, w))
                        .map(|_| {
                            let m = single(
                                &mut rng,
                                Kind::Singlepart,
                                original(&mut rand::rng(), "unknown").as_bytes(),
                                &[next],
                            );
                            wire::build(None, &me.address, &armor::decode(&m).unwrap())
                        })
                        .collect();
                    Valid { forwards, finals, parts, unknown }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Valid { forwards: Vec::new(), finals: Vec::new(), parts: Vec::new(), unknown: Vec::new() };
    for p in parts {
        all.forwards.extend(p.forwards);
        all.finals.extend(p.finals);
        all.parts.extend(p.parts);
        all.unknown.extend(p.unknown);
    }
    all
}

/// Where the headers of a mail end (after the blank line).
fn body_start(mail: &[u8]) -> usize {
    mail.windows(2).position(|w| w == b"\n\n").expect("blank line") + 2
}

/// Where the revealed message starts inside a layer body (as in `badinput`).
fn revealed_offset(body: &[u8]) -> usize {
    let pkesk = mixtasy::format::packet::read_packet(body).unwrap();
    body.len() - pkesk.rest.len() + 1 + mixtasy::format::cfb::PREFIX_LEN + 7
}

/// The same wire message as an MTA might store it after re-armoring: CRLF line ends, trace
/// headers, an armor header, another line length. Same binary body, other bytes.
fn rearmored(mail: &[u8], me: &MixAddress, i: usize) -> Vec<u8> {
    let body = armor::decode(mail).unwrap();
    let armored = armor::encode(&body);
    let mut lines = armored.lines();
    let mut text = format!(
        "Return-Path: <sender{i}@sender.test>\r\nDelivered-To: {me}\r\nReceived: from relay{i}.sender.test (relay{i}.sender.test [192.0.2.{}])\r\n\tby {FQDN} (Postfix) with ESMTPS id {i:X}\r\n\tfor <{me}>; Sat, 21 Nov 2026 12:00:00 +0000 (UTC)\r\nTo: {me}\r\nRemailer-Type: Mixtasy v1\r\n\r\n",
        i % 250 + 1
    );
    text += lines.next().unwrap(); // BEGIN
    text += "\r\nComment: re-armored by a relay\r\n";
    // Base64 lines of 76 characters instead of 64.
    let rest: Vec<&str> = lines.collect();
    let (b64, tail): (Vec<&str>, Vec<&str>) =
        rest.iter().partition(|l| !l.is_empty() && !l.starts_with('=') && !l.starts_with("-----"));
    let joined = b64.concat();
    for chunk in joined.as_bytes().chunks(76) {
        text += std::str::from_utf8(chunk).unwrap();
        text += "\r\n";
    }
    for l in tail.iter().filter(|l| !l.is_empty()) {
        text += l;
        text += "\r\n";
    }
    text.into_bytes()
}

/// A bounce as Postfix makes it for a wire message this node sent: a DSN quoting the whole
/// message (`message/rfc822`) or only its headers (`text/rfc822-headers`).
fn bounce(quoted: &[u8], me: &MixAddress, i: usize) -> Vec<u8> {
    let id = format!("4F{i:08X}");
    let boundary = format!("{id}.1795262400/{FQDN}");
    let next = format!("mixtasy@next{}.test", i % 7);
    let (kind, part) = if i.is_multiple_of(2) {
        ("message/rfc822", quoted.to_vec())
    } else {
        ("text/rfc822-headers", quoted[..body_start(quoted)].to_vec())
    };
    let mut m = format!(
        "Return-Path: <>\nX-Original-To: {me}\nDelivered-To: {me}\nReceived: by {FQDN} (Postfix)\n\tid {id}; Sat, 21 Nov 2026 12:00:00 +0000 (UTC)\n\
         Date: Sat, 21 Nov 2026 12:00:00 +0000 (UTC)\nFrom: MAILER-DAEMON@{FQDN} (Mail Delivery System)\nSubject: Undelivered Mail Returned to Sender\n\
         To: {me}\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\
         Content-Transfer-Encoding: 8bit\nMessage-Id: <20261121120000.{id}@{FQDN}>\n\nThis is a MIME-encapsulated message.\n\n--{boundary}\n\
         Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\nThis is the mail system at host {FQDN}.\n\n\
         I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\n\
         <{next}>: host mx.next.test[192.0.2.7] said: 550 5.1.1 <{next}>:\n    Recipient address rejected: User unknown (in reply to RCPT TO command)\n\n\
         --{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; {FQDN}\nX-Postfix-Queue-ID: {id}\n\
         X-Postfix-Sender: rfc822; {me}\nArrival-Date: Sat, 21 Nov 2026 11:59:58 +0000 (UTC)\n\nFinal-Recipient: rfc822; {next}\nOriginal-Recipient: rfc822;{next}\n\
         Action: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.next.test\nDiagnostic-Code: smtp; 550 5.1.1 <{next}>: Recipient address rejected: User unknown\n\n\
         --{boundary}\nContent-Description: Undelivered Message\nContent-Type: {kind}\nContent-Transfer-Encoding: 8bit\n\n\
         Return-Path: <{me}>\nReceived: by {FQDN} (Postfix, from userid 998)\n\tid {id}; Sat, 21 Nov 2026 11:59:58 +0000 (UTC)\nFrom: {me}\n"
    )
    .into_bytes();
    // The quoted wire message, readdressed as the one this node sent on.
    let text = String::from_utf8_lossy(&part).replace(&format!("To: {me}"), &format!("To: {next}"));
    m.extend_from_slice(text.as_bytes());
    m.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    m
}

fn operator_mail(me: &MixAddress, i: usize) -> Vec<u8> {
    match i % 4 {
        0 => format!("From: reader{i}@example.test\nTo: {me}\nSubject: question {i}\nMessage-ID: <q{i}@example.test>\n\nHow do I use your remailer?\n").into_bytes(),
        1 => format!("From: abuse{i}@isp.test\nTo: Mix operator <{me}>\nSubject: abuse report {i}\nContent-Type: text/plain; charset=utf-8\n\nPlease stop this.\r\n").into_bytes(),
        // Mix-looking, but another remailer type.
        2 => format!("To: {me}\nRemailer-Type: Mixtasy v2\n\n-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n").into_bytes(),
        _ => format!("Return-Path: <list{i}@lists.test>\nFrom: list{i}@lists.test\nTo: {me}\nList-Id: <announce.lists.test>\nSubject: [announce] {i}\n\n{}\n", "news ".repeat(i % 200)).into_bytes(),
    }
}

/// The bytes of spool file `(what, i)`. `valid` is the flood's valid messages in order.
fn content(what: What, i: usize, set: &Valid, valid: &[&Vec<u8>], me: &MixAddress, rng: &mut impl Rng) -> Vec<u8> {
    let other = MixAddress::for_fqdn("elsewhere.test").unwrap();
    let rewrap = |mail: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut body = armor::decode(mail).unwrap();
        f(&mut body);
        wire::build(None, me, &body)
    };
    match what {
        What::Forward | What::Final | What::Part => unreachable!("valid files are written as they are"),
        What::Replay => valid[i].clone(),
        What::Rearmored => rearmored(valid[i], me, i),
        What::Truncated => {
            let m = valid[i % valid.len()];
            m[..rng.random_range(body_start(m) + 40..m.len() - 40)].to_vec()
        }
        What::Garbage => {
            let mut g = vec![0u8; if i.is_multiple_of(100) { 0 } else { rng.random_range(1..4000) }];
            rng.fill_bytes(&mut g);
            g
        }
        What::ArmoredGarbage => {
            let mut g = vec![0u8; OUTER];
            rng.fill_bytes(&mut g);
            g[0] = 0; // not a packet header: never a session key packet by chance
            wire::build(None, me, &g)
        }
        What::Operator => operator_mail(me, i),
        What::Bounce => bounce(valid[i % valid.len()], me, i),
        What::NotForThisMix => {
            let m = valid[i % valid.len()];
            let mut out = format!("To: {other}\nRemailer-Type: Mixtasy v1\n\n").into_bytes();
            out.extend_from_slice(&m[body_start(m)..]);
            out
        }
        What::Oversized => rewrap(valid[i % valid.len()], &|b| b.extend_from_slice(&[0u8; 100])),
        What::Tagged => {
            let at = rng.random_range(0..verification::LINE_LEN + INNER);
            rewrap(valid[i % valid.len()], &|b| {
                let o = revealed_offset(b) + at;
                b[o] ^= 0x20;
            })
        }
        What::TailTagged => {
            // One cipher block copied over another on the CFB grid, past the verified window.
            let from = rng.random_range(0..1500);
            let to = rng.random_range(1500..1900);
            rewrap(valid[i % valid.len()], &|b| {
                let pkesk = mixtasy::format::packet::read_packet(b).unwrap();
                let grid = b.len() - pkesk.rest.len() + 1 + mixtasy::format::cfb::PREFIX_LEN;
                b.copy_within(grid + 16 * from..grid + 16 * (from + 1), grid + 16 * to);
            })
        }
        What::UnknownKey => set.unknown[i % set.unknown.len()].clone(),
    }
}

/// The high-water mark of a live process's resident set (VmHWM, KiB), or None once it has
/// exited (a zombie has no memory left to describe).
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `mixtasyd --round`; returns its wall time, its peak RSS (KiB) and its stdout.
///
/// Peak RSS is the round's own VmHWM, polled every 2 ms until it exits (the last value
/// seen: VmHWM never decreases, and a round's peak is in intake, long before its end).
/// Not the child's `ru_maxrss` from wait4(2), which `benches/round.rs` uses: Linux carries
/// into it the RSS of the image the child replaced at exec, and with vfork/posix_spawn
/// that image is this test process, which holds the valid set (over 400 MB here).
fn measured_round(net: &Net, log: &Path) -> (Duration, u64, String) {
    let stdout = std::fs::File::create(log).unwrap();
    let mut c = net.node_cmd(FQDN);
    c.arg("--round").stdin(Stdio::null()).stdout(Stdio::from(stdout)).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().expect("spawning mixtasyd --round");
    let pid = child.id();
    // The child is not reaped before the poller stops, so its pid cannot be reused.
    let poller = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = vm_hwm(pid) {
            peak = kib;
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let peak = poller.join().unwrap();
    let status = child.wait().unwrap();
    let elapsed = t.elapsed();
    let out = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "mixtasyd --round failed ({status}): {out} {err}");
    assert!(peak > 0, "no VmHWM read for the round process");
    (elapsed, peak, out)
}

/// `N` in "took N" of a round's summary line.
fn summary_count(line: &str, what: &str) -> u64 {
    let at = line.find(&format!("{what} ")).unwrap_or_else(|| panic!("no `{what}` in {line}")) + what.len() + 1;
    line[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// The `"counters":{...}` object of `status --json`, as a map.
fn counters(json: &str) -> BTreeMap<String, i64> {
    let start = json.find("\"counters\":{").expect("counters in status") + "\"counters\":{".len();
    let end = start + json[start..].find('}').expect("counters object closes");
    json[start..end]
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.rsplit_once(':').expect("name:value");
            (k.trim_matches('"').to_string(), v.parse().expect("counter value"))
        })
        .collect()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
}

/// What one flood measured.
struct Figures {
    files: usize,
    rounds: usize,
    round_time: Duration,
    peak_rss_kib: u64,
}

/// Makes a node home from `key`, fills its Maildir with a flood of `total` files, runs
/// rounds until one takes nothing, and checks the accounts.
fn flood(total: usize, key: &Path, set: &Valid, check_node: &Node, now_secs: u64) -> Figures {
    let started = Instant::now();
    let mut net = Net::new(now_secs);
    net.add_node_from_key(FQDN, key);
    let out_root = net.dir.path().join("out");
    net.configure(FQDN, "transport", &format!("{:?}", format!("maildir:{}", out_root.display())));
    // The pool fires a twentieth of itself each round: intake, sends and exit deliveries in
    // one run, without draining the pool into thousands of files.
    net.configure(FQDN, "min_pool", "0");
    net.configure(FQDN, "threshold", "1");
    net.configure(FQDN, "rate", "0.05");
    net.configure(FQDN, "dummy_time_p", "0.0");
    net.configure(FQDN, "dummy_flush_p", "0.0");
    net.configure(FQDN, "dummy_starved_p", "0.0");
    net.configure(FQDN, "dummy_arrival_p", "0.0");
    // Every non-mix file is accounted for in `.operator` below: no cap deletes any
    // (the caps are attacked in tests/exitq.rs).
    net.configure(FQDN, "max_operator", "1000000");
    let me = MixAddress::for_fqdn(FQDN).unwrap();
    let maildir = net.home(FQDN).join("Maildir");

    // The flood's valid messages: the first ones of each sort.
    let counts: BTreeMap<What, usize> = What::ALL.iter().map(|w| (*w, w.count(total))).collect();
    assert_eq!(counts.values().sum::<usize>(), total);
    let mut valid: Vec<&Vec<u8>> = Vec::new();
    let mut plan: Vec<(What, usize)> = Vec::new();
    for i in 0..counts[&What::Forward] {
        valid.push(&set.forwards[i]);
    }
    for i in 0..counts[&What::Final] {
        valid.push(&set.finals[i]);
    }
    for s in 0..counts[&What::Part] / 2 {
        valid.extend(set.parts[s].iter());
    }
    let n_valid = valid.len();
    plan.extend((0..n_valid).map(|i| (What::Forward, i))); // the sort is fixed up below
    let mut rng = rand::rng();
    for w in What::ALL.iter().filter(|w| !w.valid()) {
        for k in 0..counts[w] {
            let i = if matches!(w, What::Replay | What::Rearmored) { rng.random_range(0..n_valid) } else { k };
            plan.push((*w, i));
        }
    }
    let sort_of = |i: usize| {
        if i < counts[&What::Forward] {
            What::Forward
        } else if i < counts[&What::Forward] + counts[&What::Final] {
            What::Final
        } else {
            What::Part
        }
    };
    for p in plan.iter_mut().take(n_valid) {
        p.0 = sort_of(p.1);
    }
    plan.shuffle(&mut rng);

    // One of each sort, peeled in process first: the plan's reasons are what peeling says.
    for w in What::ALL {
        let (_, i) = *plan.iter().find(|(x, _)| *x == w).unwrap();
        let mail = if w.valid() { valid[i].clone() } else { content(w, i, set, &valid, &me, &mut rng) };
        let got = match peel::peel(&mail, check_node, net.time(), &mut rng) {
            Ok(_) if w.valid() || matches!(w, What::Replay | What::Rearmored) => None,
            Ok(_) => Some("accepted".to_string()),
            Err(d) => {
                let c = if d.reason == peel::DropReason::NotMixMail {
                    "intake.operator".to_string()
                } else {
                    format!("drop.{}", d.reason.name())
                };
                (c != w.counter()).then_some(c)
            }
        };
        assert!(got.is_none(), "a {w:?} file is {got:?} when peeled, not {}", w.counter());
    }

    // The files, written on every core; one in ten in cur/ with flags.
    let t = Instant::now();
    let stamp = now_secs;
    let pid = std::process::id();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let bytes: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (plan, valid, me, maildir) = (&plan, &valid, &me, &maildir);
                s.spawn(move || {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut rng = rand::rng();
                    let mut bytes = 0u64;
                    for (pos, (what, i)) in plan.iter().enumerate().skip(w).step_by(workers) {
                        let owned;
                        let data: &[u8] = if what.valid() {
                            valid[*i]
                        } else {
                            owned = content(*what, *i, set, valid, me, &mut rng);
                            &owned
                        };
                        let name = format!("{stamp}.M{pos:06}P{pid}.{FQDN}");
                        let path = if pos % 10 == 9 {
                            maildir.join("cur").join(format!("{name}:2,S"))
                        } else {
                            maildir.join("new").join(name)
                        };
                        // 0600, as an MTA's local delivery writes.
                        let mut f =
                            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
                        f.write_all(data).unwrap();
                        bytes += data.len() as u64;
                    }
                    bytes
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let written = t.elapsed();
    assert_eq!(count_files(&maildir.join("new")) + count_files(&maildir.join("cur")), total);

    // Rounds until one takes nothing.
    let log = net.dir.path().join("round.log");
    let (mut rounds, mut round_time, mut peak, mut taken) = (0usize, Duration::ZERO, 0u64, 0u64);
    let mut lines = Vec::new();
    loop {
        let (d, rss, line) = measured_round(&net, &log);
        rounds += 1;
        round_time += d;
        peak = peak.max(rss);
        let took = summary_count(&line, "took");
        lines.push(format!("{:.1} s, {:.1} MiB: {}", d.as_secs_f64(), rss as f64 / 1024.0, line.trim()));
        taken += took;
        if took == 0 {
            break;
        }
        assert!(rounds < 5, "rounds keep taking files: {lines:#?}");
    }

    // Nothing left behind.
    assert_eq!(count_files(&maildir.join("new")), 0, "files left in new/");
    assert_eq!(count_files(&maildir.join("cur")), 0, "files left in cur/");
    assert_eq!(taken, total as u64, "the rounds took every file once: {lines:#?}");

    // Every file counted exactly once, under its reason.
    let st = net.status(FQDN);
    let got = counters(&st.0);
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (w, n) in &counts {
        *want.entry(w.counter().to_string()).or_default() += *n as i64;
    }
    want.insert("intake.taken".into(), total as i64);
    let intake: BTreeMap<String, i64> = got
        .iter()
        .filter(|(k, v)| (k.starts_with("intake.") || k.starts_with("drop.")) && **v != 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    // Later events, not intake: exits that found no recipient or gave up.
    let late: Vec<&str> =
        ["drop.recipients", "drop.exit-no-recipient", "drop.exit-gave-up", "drop.parts-expired"].into();
    let intake_only: BTreeMap<String, i64> =
        intake.iter().filter(|(k, _)| !late.contains(&k.as_str())).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(intake_only, want, "counters of the files taken: {}", st.0);
    for k in &late {
        assert_eq!(st.get(k), 0, "{k}: {}", st.0);
    }

    // Every valid one pooled, sent, or pooled, queued and delivered (finals wait in the
    // pool like forwarded mail: mixtasyd(8), The exit mixes).
    let forwards = counts[&What::Forward] as i64;
    let exits = (counts[&What::Final] + counts[&What::Part] / 2) as i64;
    let pooled_finals: i64 = mixtasy::batch::state::State::open(&net.home(FQDN).join("state.sqlite"))
        .unwrap()
        .conn()
        .query_row("SELECT count(*) FROM pool WHERE kind = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(st.get("pool") - pooled_finals + st.get("pool.sent"), forwards, "pool + pool.sent: {}", st.0);
    assert!(st.get("pool.sent") > 0, "the pool fired: {}", st.0);
    assert_eq!(st.get("exit.assembled"), (counts[&What::Part] / 2) as i64, "{}", st.0);
    assert_eq!(
        pooled_finals + st.get("exit_queue") + st.get("exit.delivered"),
        exits,
        "finals pooled + exit queue + delivered: {}",
        st.0
    );
    assert_eq!(st.get("replay_entries"), n_valid as i64, "one replay entry per valid message: {}", st.0);
    assert_eq!((st.get("held_parts"), st.get("spool")), (0, 0), "{}", st.0);
    let sent_files = count_files(&out_root.join("mixtasy@next.test").join("new"));
    let delivered_files = count_files(&out_root.join("bob@rcpt.test").join("new"));
    assert_eq!(
        (sent_files as i64, delivered_files as i64),
        (st.get("pool.sent"), st.get("exit.delivered")),
        "files the transport wrote"
    );

    // Non-mix mail kept, each once.
    let operator = (counts[&What::Garbage] + counts[&What::Operator] + counts[&What::Bounce]) as i64;
    assert_eq!(st.get("operator_mail"), operator, "{}", st.0);
    assert_eq!(count_files(&maildir.join(".operator/new")) as i64, operator);

    let rss_mib = peak as f64 / 1024.0;
    let kinds: Vec<String> = counts.iter().map(|(w, n)| format!("{w:?} {n}")).collect();
    eprintln!(
        "flood {total}: {} ({n_valid} valid); {:.0} MB written in {:.1} s; {rounds} rounds in {:.1} s = {:.0} files/s; peak RSS {rss_mib:.1} MiB; \
         pool {} + sent {}, delivered {}; whole flood {:.1} s\n  rounds: {lines:?}",
        kinds.join(", "),
        bytes as f64 / 1e6,
        written.as_secs_f64(),
        round_time.as_secs_f64(),
        total as f64 / round_time.as_secs_f64(),
        st.get("pool"),
        st.get("pool.sent"),
        st.get("exit.delivered"),
        started.elapsed().as_secs_f64()
    );
    Figures { files: total, rounds, round_time, peak_rss_kib: peak }
}

#[test]
fn a_flood_of_50000_files_is_accounted_for_in_flat_memory() {
    let started = Instant::now();
    let now_secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let mut net = Net::new(now_secs);
    net.add_node(FQDN, "middleman,exitpublic");
    let key = net.dir.path().join("flood-key.asc");
    let secret = net.export(FQDN, true);
    std::fs::write(&key, &secret).unwrap();
    let me = net.mix(FQDN);
    let modes = Modes::parse("middleman,exitpublic").unwrap();
    let check_node = Node {
        address: me.address.clone(),
        modes,
        ring: KeyRing::from_cert(&Cert::from_bytes(&secret).unwrap(), Duration::from_secs(3600)).unwrap(),
    };
    let next_address = MixAddress::for_fqdn("next.test").unwrap();
    let next_cert = keys::generate("Next", &modes, &next_address, net.time(), keys::SUBKEY_VALIDITY).unwrap();
    let next = directory::check(&next_cert, net.time()).unwrap();

    let t = Instant::now();
    let set = make_valid(&me, &next, net.time());
    let made = t.elapsed();
    eprintln!(
        "flood: {} distinct valid messages ({} forwarded, {} final, {} multipart sets) made in {:.1} s on {} threads ({})",
        set.forwards.len() + set.finals.len() + 2 * set.parts.len(),
        set.forwards.len(),
        set.finals.len(),
        set.parts.len(),
        made.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) { "debug build" } else { "release build" }
    );

    let small = flood(SMALL, &key, &set, &check_node, now_secs);
    let big = flood(BIG, &key, &set, &check_node, now_secs);
    let mib = |f: &Figures| f.peak_rss_kib as f64 / 1024.0;
    let ratio = mib(&big) / mib(&small);
    eprintln!(
        "flood: peak RSS {:.1} MiB at {} files ({} rounds, {:.0} files/s), {:.1} MiB at {} files ({} rounds, {:.0} files/s): ratio {ratio:.2}; total {:.1} s",
        mib(&small),
        small.files,
        small.rounds,
        small.files as f64 / small.round_time.as_secs_f64(),
        mib(&big),
        big.files,
        big.rounds,
        big.files as f64 / big.round_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        mib(&small) < RSS_BOUND_MIB && mib(&big) < RSS_BOUND_MIB,
        "peak RSS {:.1} / {:.1} MiB over {RSS_BOUND_MIB} MiB",
        mib(&small),
        mib(&big)
    );
    let per_file = (big.peak_rss_kib as f64 - small.peak_rss_kib as f64) * 1024.0 / (big.files - small.files) as f64;
    assert!(
        ratio <= RSS_GROWTH,
        "peak RSS grows with the spool: {:.1} MiB at {} files, {:.1} MiB at {} files (ratio {ratio:.2} > {RSS_GROWTH}; {per_file:.0} bytes per extra file)",
        mib(&small),
        small.files,
        mib(&big),
        big.files
    );
}
