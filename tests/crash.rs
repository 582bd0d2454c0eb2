//! Crash safety of `mixtasyd --round`: SIGKILL at random instants over a spool of valid,
//! replayed and broken messages, then rounds to completion.
//!
//! After every kill, on the state as the next round will find it (a copy, recovered from
//! its hot journal if there is one), the test checks that no message was lost or taken
//! twice: every valid message sits in the spool, the pool or the exit queue, or has gone
//! out; the pool and exit queue together hold it at most once; each counter counts exactly the
//! files whose fate committed; `.operator` holds only non-mix mail. At the end every valid
//! message has gone out (each output accepted by the next mix and identified by the
//! Verification hash that mix finds), every replay and broken message is counted exactly
//! once, non-mix mail sits in `.operator` exactly once, and nothing stays behind.
//!
//! ## Crash windows (see `state`'s module doc) and what each one leaves
//! 1. Before an intake batch commits (startup, reading, peeling, inside the transaction):
//!    nothing happened. The next round reads and peels the same files again; nothing was
//!    pooled, queued or counted, so nothing is pooled, queued or counted twice.
//! 2. After the commit, before or among the unlinks and `.operator` moves: the `done` rows
//!    name each file's fate. The next round finishes those actions first, without peeling
//!    or counting again.
//!
//! 2b. When the pool draws a final, one transaction moves it into the exit queue: a kill
//!    leaves it in exactly one of the two (the test counts both as "queued").
//! 3. While the pool fires or the exit queue is delivered, before the transport accepted a
//!    mail (a half-written file in the recipient Maildir's `tmp/`, which no reader takes):
//!    the row stays and is sent by a later round.
//! 4. After the transport accepted a pool mail, before its pool row is deleted: the row is
//!    sent again by a later round, byte for byte, so the next mix peels the same inner
//!    layer, finds the same Verification hash, and its replay cache drops the second copy.
//!    The test feeds every copy to a replay cache and checks exactly one per message passes.
//! 5. After the transport accepted an exit delivery for one recipient, before that
//!    recipient is recorded done (`exit_rcpt`): a later round delivers the original again to
//!    that recipient alone (`exitq::a_crash_mid_delivery_loses_no_recipient` pins this
//!    down). No mix follows to drop it: **the recipient gets it twice**, and if the original had no Message-ID each copy gets its
//!    own random one, so nothing downstream can tell they are the same. `state`'s "the only
//!    duplicate a crash can cause" overlooks this one; the test counts it and reports it.
//! 6. After a pool or exit-queue row's deletion, before its separate `pool.sent` /
//!    `exit.delivered` bump: the mail left once but is not counted, so those two counters
//!    may fall short by up to one per crash (statistics, not ledgers; the test bounds them).
//!
//! Sends are sequential, so a crash causes at most one duplicate (4 or 5): the test asserts
//! duplicates never outnumber kills.
//!
//! The node under test is a real home driven through the real binary (`maildir:`
//! transport); the next mixes (B, C) exist only as keys in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mixtasy::batch::state::State;
use mixtasy::format::sizes::OUTER;
use mixtasy::format::verification::Hash;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::keys::{self, KeyRing};
use mixtasy::mixes::modes::Modes;
use mixtasy::node::peel::{self, DropReason, Node, Peeled};
use mixtasy::{format::armor, format::wire, node::replay, sender::create};
use rand::seq::SliceRandom;
use rand::Rng;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

use crate::util::*;

/// Valid messages A forwards (each its own original), valid messages A delivers as the
/// exit, replayed copies of forwarded ones.
const VALID: usize = 200;
const FINAL: usize = 20;
const REPLAYS: usize = 30;
/// Kill iterations, one delivery each.
const KILLS: usize = 100;
/// Further kills, all aimed just after the intake commit, while none has landed there yet
/// (that window is a fraction of a millisecond where fsync costs nothing).
const EXTRA: usize = 20;
/// Wall-clock bound for the kill loop: on a slow machine fewer kills, never a slow test.
const KILL_BUDGET: Duration = Duration::from_secs(30);
/// A forwarded mail is recognised by its first bytes: headers and the start of the next
/// layer are fixed when A peels; only the padding at the end is fresh randomness.
const KEY: usize = 1200;

/// What an input is, for the accounts.
#[derive(Debug, Clone)]
enum What {
    /// The `i`th forwarded message, or a replayed copy of it.
    Forward(usize),
    /// The `j`th message A delivers as the exit.
    Final(usize),
    /// A broken message: the counter it must land in.
    Broken(String),
}

struct Input {
    /// Maildir file name (unique name plus, in `cur/`, flags).
    name: String,
    in_cur: bool,
    mail: Vec<u8>,
    what: What,
    /// The kill iteration before which it is delivered.
    wave: usize,
}

impl Input {
    /// The Maildir unique name, as `done` rows name it.
    fn source(&self) -> &str {
        self.name.split(':').next().unwrap()
    }
}

/// What A made of something, recognised in the pool, the exit queue or its output.
#[derive(Debug, Clone, Copy)]
enum Made {
    Forward(usize),
    Final(usize),
}

/// Everything the test knows about the inputs, and what it has recognised so far.
struct Ledger {
    inputs: Vec<Input>,
    forward_keys: HashMap<Vec<u8>, usize>,
    final_tags: Vec<String>,
    outputs: HashMap<PathBuf, Made>,
}

/// Duplicates found by one check.
#[derive(Debug, Default)]
struct Duplicates {
    /// Sent, and still in the pool or exit queue to be sent again (window 4 or 5 just now).
    in_flight: usize,
    /// Sent more than once already.
    resent: usize,
}

impl Ledger {
    fn recognise(&self, mail: &[u8]) -> Made {
        if let Some(i) = mail.get(..KEY).and_then(|k| self.forward_keys.get(k)) {
            return Made::Forward(*i);
        }
        let text = String::from_utf8_lossy(mail);
        match self.final_tags.iter().position(|t| text.contains(&format!("\n{t}\r\n"))) {
            Some(j) => Made::Final(j),
            None => panic!("A made a mail of no input:\n{}", &text[..text.len().min(400)]),
        }
    }

    /// Checks the accounts on `state` (a recovered copy) and the files as a kill left them,
    /// with deliveries up to `delivered` made.
    fn check(&mut self, delivered: usize, maildir: &Path, out_root: &Path, state: &State) -> Duplicates {
        let pending: HashSet<String> = state.pending_actions().unwrap().into_iter().map(|(s, _)| s).collect();
        let mut in_spool = HashSet::new();
        for sub in ["new", "cur"] {
            for f in files(&maildir.join(sub)) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                let input =
                    self.inputs.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("stray spool file {name}"));
                assert!(input.wave <= delivered && sub == if input.in_cur { "cur" } else { "new" }, "{name} in {sub}/");
                in_spool.insert(input.source().to_string());
            }
        }
        // Not yet taken: in the spool with no committed fate.
        let live = |i: &Input| in_spool.contains(i.source()) && !pending.contains(i.source());

        // A final waits in the pool, then in the exit queue once drawn: `queued` counts both,
        // so "queued at most once" also says the move between them never doubles it.
        let (mut pool, mut queued) = (vec![0usize; VALID], vec![0usize; FINAL]);
        let mut st = state.conn().prepare("SELECT mail FROM pool").unwrap();
        for mail in st.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            match self.recognise(&mail.unwrap()) {
                Made::Forward(i) => pool[i] += 1,
                Made::Final(j) => queued[j] += 1,
            }
        }
        let mut st = state.conn().prepare("SELECT original FROM exitq").unwrap();
        for original in st.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            match self.recognise(&original.unwrap()) {
                Made::Final(j) => queued[j] += 1,
                Made::Forward(i) => panic!("forwarded message {i} in the exit queue"),
            }
        }
        let (mut sent, mut delivered_to) = (vec![0usize; VALID], vec![0usize; FINAL]);
        for (_, f) in outputs(out_root) {
            let made = match self.outputs.get(&f) {
                Some(m) => *m,
                None => {
                    let m = self.recognise(&std::fs::read(&f).unwrap());
                    self.outputs.insert(f, m);
                    m
                }
            };
            match made {
                Made::Forward(i) => sent[i] += 1,
                Made::Final(j) => delivered_to[j] += 1,
            }
        }

        // Files taken (fate committed), per message and per counter.
        let (mut taken_forward, mut taken_final) = (vec![0usize; VALID], vec![0usize; FINAL]);
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        let mut operator_pending = 0;
        for input in self.inputs.iter().filter(|i| i.wave <= delivered && !live(i)) {
            *want.entry("intake.taken".into()).or_default() += 1;
            match &input.what {
                What::Forward(i) => taken_forward[*i] += 1,
                What::Final(j) => taken_final[*j] += 1,
                What::Broken(counter) => {
                    *want.entry(counter.clone()).or_default() += 1;
                    if counter == "intake.operator" && in_spool.contains(input.source()) {
                        operator_pending += 1;
                    }
                }
            }
        }
        let mut dup = Duplicates::default();
        let (mut forwarded, mut replays) = (0, 0);
        for i in 0..VALID {
            assert!(pool[i] <= 1, "message {i} pooled {} times", pool[i]);
            if taken_forward[i] == 0 {
                assert!(pool[i] + sent[i] == 0, "message {i} pooled or sent before it was taken");
                continue;
            }
            assert!(pool[i] + sent[i] > 0, "message {i} lost: taken, neither pooled nor sent");
            forwarded += 1;
            replays += taken_forward[i] - 1;
            dup.in_flight += usize::from(pool[i] == 1 && sent[i] > 0);
            dup.resent += sent[i].saturating_sub(1);
        }
        let mut finals = 0;
        for j in 0..FINAL {
            assert!(queued[j] <= 1, "original {j} queued {} times", queued[j]);
            if taken_final[j] == 0 {
                assert!(queued[j] + delivered_to[j] == 0, "original {j} queued or delivered before it was taken");
                continue;
            }
            assert!(queued[j] + delivered_to[j] > 0, "original {j} lost: taken, neither queued nor delivered");
            finals += 1;
            dup.in_flight += usize::from(queued[j] == 1 && delivered_to[j] > 0);
            dup.resent += delivered_to[j].saturating_sub(1);
        }
        want.insert("intake.forwarded".into(), forwarded as i64);
        want.insert("intake.final".into(), finals as i64);
        want.insert("drop.replay".into(), replays as i64);
        want.retain(|_, v| *v != 0);
        let mut got: BTreeMap<String, i64> = state
            .counters()
            .unwrap()
            .into_iter()
            .filter(|(k, v)| (k.starts_with("drop.") || k.starts_with("intake.")) && *v != 0)
            .collect();
        if !got.contains_key("intake.taken") {
            want.remove("intake.taken"); // a mixtasyd that does not count it
        }
        got.retain(|_, v| *v != 0);
        assert_eq!(got, want, "counters against the files taken");
        assert_eq!(state.count("replay").unwrap(), (forwarded + finals) as i64, "replay cache entries");

        // .operator: non-mix mail only, each once, as taken.
        let moved = files(&maildir.join(".operator/new"));
        for f in &moved {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let input =
                self.inputs.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("stray .operator file {name}"));
            assert!(matches!(&input.what, What::Broken(c) if c == "intake.operator"), "{name} moved to .operator");
            assert_eq!(std::fs::read(f).unwrap(), input.mail);
        }
        assert_eq!(
            moved.len() + operator_pending,
            want.get("intake.operator").copied().unwrap_or(0) as usize,
            ".operator"
        );
        dup
    }
}

/// What A must forward for a valid message: where, and the Verification hash the next mix
/// finds (its replay cache key), which identifies the message at the next hop.
struct Expected {
    to: MixAddress,
    next_hash: Hash,
}

/// Where a kill found the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Window {
    /// Startup, peeling, or inside the intake transaction: no visible trace.
    BeforeCommit,
    /// The intake batch committed; some of its unlinks and moves may not have happened.
    ActionsPending,
    /// Intake finished; the pool was firing (some of it still there).
    Sending,
    /// The pool was empty: exit deliveries, or the end of the round.
    AfterSending,
    /// The round had ended before the kill.
    Finished,
}

fn node(cert: &Cert, address: &MixAddress, modes: Modes) -> Node {
    Node { address: address.clone(), modes, ring: KeyRing::from_cert(cert, Duration::from_secs(3600)).unwrap() }
}

/// Replaces `key = ...` lines of a config file.
fn set_config(path: &Path, settings: &[(&str, &str)]) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = HashSet::new();
    let out: Vec<String> = text
        .lines()
        .map(|l| match settings.iter().find(|(k, _)| l.starts_with(&format!("{k} = "))) {
            Some((k, v)) => {
                assert!(seen.insert(*k), "{k} set twice");
                format!("{k} = {v}")
            }
            None => l.to_string(),
        })
        .collect();
    assert_eq!(seen.len(), settings.len(), "every setting replaced");
    std::fs::write(path, out.join("\n") + "\n").unwrap();
}

/// Where the revealed message starts inside a layer body (as in `badinput`).
fn revealed_offset(body: &[u8]) -> usize {
    let pkesk = mixtasy::format::packet::read_packet(body).unwrap();
    body.len() - pkesk.rest.len() + 1 + mixtasy::format::cfb::PREFIX_LEN + 7
}

/// The state as the next round will find it, read from a copy (so SQLite's rollback of a
/// hot journal happens there, and the home stays exactly as the crash left it). Also says
/// whether there was a hot journal: the kill came inside a write transaction.
fn recovered_state(home: &Path, scratch: &Path) -> (State, bool) {
    let (db, journal) = (scratch.join("state.sqlite"), scratch.join("state.sqlite-journal"));
    let _ = std::fs::remove_file(&journal);
    std::fs::copy(home.join("state.sqlite"), &db).unwrap();
    let hot = std::fs::copy(home.join("state.sqlite-journal"), &journal).is_ok_and(|n| n > 0);
    (State::open(&db).unwrap(), hot)
}

/// Regular files in a directory (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

/// Every mail A has handed to the transport: (recipient directory name, file).
fn outputs(out: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(out) else { return Vec::new() };
    let mut v = Vec::new();
    for e in rd {
        let e = e.unwrap();
        let rcpt = e.file_name().to_string_lossy().into_owned();
        for sub in ["new", "cur"] {
            v.extend(files(&e.path().join(sub)).into_iter().map(|f| (rcpt.clone(), f)));
        }
    }
    v
}

/// How many mails A has handed to the transport so far.
fn output_count(out: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(out) else { return 0 };
    rd.map(|e| std::fs::read_dir(e.unwrap().path().join("new")).map_or(0, |d| d.count())).sum()
}

/// The integer after `"key":` in flat JSON (keys are unique where this is used).
fn json_int(json: &str, key: &str) -> i64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} missing from {json}")) + pat.len();
    let digits: String = json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} is not an integer in {json}"))
}

/// The `"counters":{...}` object of `status --json`, as a map.
fn json_counters(json: &str) -> BTreeMap<String, i64> {
    let start = json.find("\"counters\":{").expect("counters in status") + "\"counters\":{".len();
    let end = start + json[start..].find('}').expect("counters object closes");
    let mut out = BTreeMap::new();
    for pair in json[start..end].split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.rsplit_once(':').expect("name:value");
        out.insert(k.trim_matches('"').to_string(), v.parse().expect("counter value"));
    }
    out
}

/// `N` in "took N" of a round's summary line.
fn summary_count(line: &str, what: &str) -> u64 {
    let at = line.find(&format!("{what} ")).unwrap_or_else(|| panic!("no `{what}` in {line}")) + what.len() + 1;
    line[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

#[test]
fn sigkill_at_random_instants_loses_and_double_counts_nothing() {
    let started = Instant::now();
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(now_secs);
    let mut net = Net::new(now_secs);
    net.add_node("a.test", "middleman,exitpublic");
    let home = net.home("a.test");
    let out_root = net.dir.path().join("out");
    set_config(
        &home.join("mixtasyd.toml"),
        &[
            ("transport", &format!("\"maildir:{}\"", out_root.display())),
            ("min_pool", "0"),
            ("threshold", "1"),
            ("rate", "1.0"),
            ("dummy_time_p", "0.0"),
            ("dummy_flush_p", "0.0"),
            ("dummy_starved_p", "0.0"),
            ("dummy_arrival_p", "0.0"),
        ],
    );
    let maildir = home.join("Maildir");

    // A from its exported keys; B and C in memory.
    let modes = Modes::parse("middleman,exitpublic").unwrap();
    let a_pub = Cert::from_bytes(&net.export("a.test", false)).unwrap();
    let a_mix = directory::check(&a_pub, now).unwrap();
    let a_node = node(&Cert::from_bytes(&net.export("a.test", true)).unwrap(), &a_mix.address, modes);
    // A's domain vouches for its key (as if its WKD held it): A is its recipients' exit (D7).
    let mut mixes: Vec<Mix> = vec![Mix { wkd: true, ..a_mix.clone() }];
    let mut next_nodes: HashMap<MixAddress, Node> = HashMap::new();
    for fqdn in ["b.test", "c.test"] {
        let address = MixAddress::for_fqdn(fqdn).unwrap();
        let cert = keys::generate("T", &modes, &address, now, keys::SUBKEY_VALIDITY).unwrap();
        mixes.push(directory::check(&cert, now).unwrap());
        next_nodes.insert(address.clone(), node(&cert, &address, modes));
    }
    let mut rng = rand::rng();
    let wire_from = |first: &MixAddress, tag: &str, rng: &mut rand::rngs::ThreadRng| -> Vec<u8> {
        let original =
            format!("To: bob@rcpt.test\r\nSubject: crash test {tag}\r\n\r\n{tag} {}\r\n", rng.random::<u64>());
        let opts = create::Options { first_mix: Some(first.clone()), hops: 4, ..Default::default() };
        let mut w = create::create(original.as_bytes(), &mixes, &opts, now, rng).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(&w[0].to, first);
        w.remove(0).mail
    };
    // A message for a recipient in A's domain ends at A (its own exit): peeled here hop by
    // hop up to the mail A gets as the last hop. Returns that mail and the original's tag.
    let last_hop_at_a = |i: usize, rng: &mut rand::rngs::ThreadRng| -> (Vec<u8>, String) {
        let tag = format!("final {i} {}", rng.random::<u64>());
        let original = format!("To: bob@a.test\r\nSubject: crash test\r\n\r\n{tag}\r\n");
        let opts = create::Options { hops: 4, ..Default::default() };
        let w = create::create(original.as_bytes(), &mixes, &opts, now, rng).unwrap().remove(0);
        let (mut to, mut mail) = (w.to, w.mail);
        loop {
            let at = if to == a_node.address { &a_node } else { &next_nodes[&to] };
            match peel::peel(&mail, at, now, rng).unwrap().peeled {
                Peeled::Forward { to: t, mail: m } => (to, mail) = (t, m),
                Peeled::Final { .. } => {
                    assert_eq!(to, a_node.address, "the recipient's own mix is the exit");
                    return (mail, tag);
                }
            }
        }
    };

    // Valid messages, and what A must make of each.
    let mut valid: Vec<Vec<u8>> = Vec::new();
    let mut expected: Vec<Expected> = Vec::new();
    let mut forward_keys: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..VALID {
        let mail = wire_from(&a_mix.address, &format!("valid {i}"), &mut rng);
        let at_a = peel::peel(&mail, &a_node, now, &mut rng).unwrap();
        let Peeled::Forward { to, mail: fwd } = at_a.peeled else { panic!("A is the first of four hops") };
        let next_hash = peel::peel(&fwd, &next_nodes[&to], now, &mut rng).unwrap().hash;
        assert!(forward_keys.insert(fwd[..KEY].to_vec(), i).is_none());
        expected.push(Expected { to, next_hash });
        valid.push(mail);
    }
    let by_next_hash: HashMap<Hash, usize> = expected.iter().enumerate().map(|(i, e)| (e.next_hash, i)).collect();
    assert_eq!(by_next_hash.len(), VALID);
    let (finals, final_tags): (Vec<Vec<u8>>, Vec<String>) = (0..FINAL).map(|i| last_hop_at_a(i, &mut rng)).unzip();

    // Broken messages, two of each.
    let b_address = MixAddress::for_fqdn("b.test").unwrap();
    let elsewhere = MixAddress::for_fqdn("z.test").unwrap();
    let mut broken: Vec<Vec<u8>> = Vec::new();
    for k in 0..2 {
        let good = wire_from(&a_mix.address, &format!("broken {k}"), &mut rng);
        let body = armor::decode(&good).unwrap();
        broken.push(good[..good.len() / 2].to_vec()); // truncated armor
        broken.push(wire::build(None, &a_mix.address, &vec![0x42u8; OUTER])); // armored garbage
        let mut big = body.clone();
        big.extend_from_slice(&[0u8; 100]);
        broken.push(wire::build(None, &a_mix.address, &big)); // oversized
        broken.push(wire::build(None, &elsewhere, &body)); // another mix's mail
        let mut tagged = body.clone();
        let at = revealed_offset(&tagged) + 20 + 300 * k;
        tagged[at] ^= 0x10;
        broken.push(wire::build(None, &a_mix.address, &tagged)); // tagged
        let for_b = armor::decode(&wire_from(&b_address, &format!("for b {k}"), &mut rng)).unwrap();
        broken.push(wire::build(None, &a_mix.address, &for_b)); // encrypted to another key
        broken.push(vec![0xff; 3000 + k]); // binary garbage: not mix mail
        broken.push(
            format!("From: MAILER-DAEMON@a.test\nTo: mixtasy@a.test\nSubject: Undelivered {k}\n\nsorry\n").into_bytes(),
        );
        broken.push(
            format!("From: alice@a.test\nTo: mixtasy@a.test\nSubject: abuse report {k}\n\nplease stop\n").into_bytes(),
        );
    }
    let broken_count = broken.len();

    // The spool, in random order; each file in a random kill iteration's delivery, some in cur/.
    let mut inputs: Vec<Input> = Vec::new();
    let mut push = |mail: Vec<u8>, what: What, rng: &mut rand::rngs::ThreadRng| {
        let in_cur = rng.random_bool(0.15);
        let n = inputs.len();
        let name = format!("{now_secs}.M{n}P{}.a.test{}", rng.random::<u32>(), if in_cur { ":2,S" } else { "" });
        inputs.push(Input { name, in_cur, mail, what, wave: rng.random_range(0..=KILLS + EXTRA) });
    };
    for (i, m) in valid.iter().enumerate() {
        push(m.clone(), What::Forward(i), &mut rng);
    }
    for (j, m) in finals.iter().enumerate() {
        push(m.clone(), What::Final(j), &mut rng);
    }
    for _ in 0..REPLAYS {
        let i = rng.random_range(0..VALID);
        push(valid[i].clone(), What::Forward(i), &mut rng);
    }
    let mut want_drops: BTreeMap<String, i64> = BTreeMap::new();
    let mut operator_mails: Vec<Vec<u8>> = Vec::new();
    for m in broken {
        let reason = peel::peel(&m, &a_node, now, &mut rng).expect_err("broken mail is dropped").reason;
        let counter = if reason == DropReason::NotMixMail {
            operator_mails.push(m.clone());
            "intake.operator".to_string()
        } else {
            let c = format!("drop.{}", reason.name());
            *want_drops.entry(c.clone()).or_default() += 1;
            c
        };
        push(m, What::Broken(counter), &mut rng);
    }
    for (r, n) in [
        ("drop.malformed", 4),
        ("drop.oversized", 2),
        ("drop.not-for-this-mix", 2),
        ("drop.verification", 2),
        ("drop.unknown-key", 2),
    ] {
        assert_eq!(want_drops.get(r), Some(&n), "{r}: {want_drops:?}");
    }
    assert_eq!(operator_mails.len(), 6);
    inputs.shuffle(&mut rng);
    let total_inputs = inputs.len();
    let mut ledger = Ledger { inputs, forward_keys, final_tags, outputs: HashMap::new() };
    let deliver = |ledger: &Ledger, wave: usize| {
        for input in ledger.inputs.iter().filter(|i| i.wave == wave) {
            let tmp = maildir.join("tmp").join(&input.name);
            std::fs::write(&tmp, &input.mail).unwrap();
            std::fs::rename(&tmp, maildir.join(if input.in_cur { "cur" } else { "new" }).join(&input.name)).unwrap();
        }
    };
    let setup = started.elapsed();

    // One clean round on the first delivery: how long a round lasts here.
    let round_cmd = || {
        let mut c = net.node_cmd("a.test");
        c.arg("--round").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    deliver(&ledger, 0);
    let t0 = Instant::now();
    let o = round_cmd().output().unwrap();
    assert!(o.status.success(), "{}", describe(&round_cmd(), &o));
    let calibration = t0.elapsed();

    // Kill rounds at random instants, one delivery before each, four aims in turn:
    // - the whole round: uniform in a window that grows when the kill found the round
    //   running and shrinks when it had finished (about two kills in three land inside a
    //   round, spread over all of it);
    // - its start (startup, peeling, the intake transaction): uniform in a window that grows
    //   when the kill came before the intake commit and shrinks otherwise;
    // - just after the intake commit: as soon as the first spool file it acts on is gone;
    // - amid the sends: when the k-th new mail (k = 1..3) reached its recipient, plus 0-1 ms.
    // The timed aims adapt to the machine; the triggered ones reach the short windows even
    // where fsync is free and peeling dominates (tmpfs). After each kill, the accounts.
    let spool_len = || files(&maildir.join("new")).len() + files(&maildir.join("cur")).len();
    let scratch = net.dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let mut hits: BTreeMap<Window, usize> = BTreeMap::new();
    let (mut kills, mut hot_journals, mut most_in_flight) = (0usize, 0usize, 0usize);
    let loop_start = Instant::now();
    let (mut whole, mut early) = (calibration, calibration / 4);
    let mut delivered = 0;
    for wave in 1..=KILLS + EXTRA {
        if loop_start.elapsed() > KILL_BUDGET || (wave > KILLS && hits.contains_key(&Window::ActionsPending)) {
            break;
        }
        deliver(&ledger, wave);
        delivered = wave;
        let before = (spool_len(), output_count(&out_root));
        // The first file intake will act on once its batch has committed.
        let first =
            mixtasy::batch::spool::Spool::open(&maildir).unwrap().list().unwrap().first().map(|e| e.path.clone());
        let aim = if wave > KILLS { 2 } else { wave % 4 };
        let mut child = round_cmd().spawn().unwrap();
        let ended = match aim {
            0 => {
                std::thread::sleep(whole.mul_f64(rng.random::<f64>()));
                false
            }
            1 => {
                std::thread::sleep(early.mul_f64(rng.random::<f64>()));
                false
            }
            _ => {
                let k = rng.random_range(1..=3);
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if child.try_wait().unwrap().is_some() {
                        break true; // reaped: its pid must not be signalled any more
                    }
                    let fired = if aim == 2 {
                        first.as_ref().is_none_or(|f| !f.exists())
                    } else {
                        output_count(&out_root) >= before.1 + k
                    };
                    if fired || Instant::now() > deadline {
                        if aim == 3 {
                            std::thread::sleep(Duration::from_micros(rng.random_range(0..1000)));
                        }
                        break false;
                    }
                    if aim == 3 {
                        std::thread::yield_now();
                    }
                }
            }
        };
        if !ended {
            // SAFETY: kill(2) on our own child, not yet reaped (its pid cannot be reused).
            assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) }, 0);
        }
        let status = child.wait().unwrap();
        kills += 1;
        let (state, hot) = recovered_state(&home, &scratch);
        hot_journals += usize::from(hot);
        most_in_flight = most_in_flight.max(ledger.check(delivered, &maildir, &out_root, &state).in_flight);
        let window = if status.signal() == Some(libc::SIGKILL) {
            if !state.pending_actions().unwrap().is_empty() {
                Window::ActionsPending
            } else if (spool_len(), output_count(&out_root)) == before {
                Window::BeforeCommit
            } else if state.count("pool").unwrap() > 0 {
                Window::Sending
            } else {
                Window::AfterSending
            }
        } else {
            assert!(status.success(), "round failed after a crash: {status}");
            Window::Finished
        };
        *hits.entry(window).or_default() += 1;
        if aim == 0 {
            whole = if window == Window::Finished { whole.mul_f64(0.7) } else { whole.mul_f64(1.2) };
            whole = whole.clamp(Duration::from_millis(5), Duration::from_secs(3));
        } else if aim == 1 {
            early = if window == Window::BeforeCommit { early.mul_f64(1.2) } else { early.div_f64(1.2) };
            early = early.clamp(Duration::from_millis(2), Duration::from_secs(3));
        }
    }
    for w in delivered + 1..=KILLS + EXTRA {
        deliver(&ledger, w);
    }
    let killed_running = kills - hits.get(&Window::Finished).copied().unwrap_or(0);
    assert!(killed_running * 4 >= kills, "only {killed_running} of {kills} kills landed inside a round: {hits:?}");
    for w in [Window::BeforeCommit, Window::ActionsPending, Window::Sending] {
        assert!(hits.contains_key(&w), "no kill landed in {w:?}: {hits:?}");
    }

    // Rounds to completion.
    let mut clean_rounds = 0;
    loop {
        let o = round_cmd().output().unwrap();
        assert!(o.status.success(), "{}", describe(&round_cmd(), &o));
        clean_rounds += 1;
        let line = String::from_utf8_lossy(&o.stdout).into_owned();
        if ["took", "sent", "delivered"].iter().all(|w| summary_count(&line, w) == 0) {
            assert_eq!(summary_count(&line, "deferred"), 0, "{line}");
            break;
        }
        assert!(clean_rounds < 10, "rounds do not settle: {line}");
    }
    let dup = ledger.check(KILLS + EXTRA, &maildir, &out_root, &recovered_state(&home, &scratch).0);
    assert_eq!(dup.in_flight, 0);

    // Nothing left; .operator holds each non-mix mail once.
    assert!(files(&maildir.join("new")).is_empty(), "left in new/: {:?}", files(&maildir.join("new")));
    assert!(files(&maildir.join("cur")).is_empty(), "left in cur/: {:?}", files(&maildir.join("cur")));
    let mut got_op: Vec<Vec<u8>> =
        files(&maildir.join(".operator/new")).iter().map(|f| std::fs::read(f).unwrap()).collect();
    got_op.extend(files(&maildir.join(".operator/cur")).iter().map(|f| std::fs::read(f).unwrap()));
    got_op.sort();
    operator_mails.sort();
    assert_eq!(got_op, operator_mails, ".operator holds exactly the non-mix mails");

    // Every valid message went out to the right place, accepted by the next mix; a
    // forwarded duplicate is the same mail again.
    let mut sent: HashMap<Hash, Vec<Vec<u8>>> = HashMap::new();
    let mut delivered_to: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    for (rcpt, f) in outputs(&out_root) {
        let mail = std::fs::read(&f).unwrap();
        if rcpt == "bob@a.test" {
            let Made::Final(j) = ledger.recognise(&mail) else { panic!("a forwarded mail delivered to the recipient") };
            delivered_to.entry(j).or_default().push(mail);
            continue;
        }
        let to = MixAddress::parse(&rcpt).unwrap_or_else(|_| panic!("A sent to {rcpt}"));
        let next = next_nodes.get(&to).unwrap_or_else(|| panic!("A sent to {rcpt}"));
        let o = peel::peel(&mail, next, now, &mut rng)
            .unwrap_or_else(|d| panic!("{rcpt} drops A's output {}: {d}", f.display()));
        let i = *by_next_hash.get(&o.hash).expect("every output is a valid input's next layer");
        assert_eq!(expected[i].to, to, "valid message {i} went to the wrong mix");
        sent.entry(o.hash).or_default().push(mail);
    }
    let missing: Vec<usize> =
        expected.iter().enumerate().filter(|(_, e)| !sent.contains_key(&e.next_hash)).map(|(i, _)| i).collect();
    assert!(missing.is_empty(), "valid messages never sent: {missing:?}");
    let undelivered: Vec<usize> = (0..FINAL).filter(|j| !delivered_to.contains_key(j)).collect();
    assert!(undelivered.is_empty(), "originals never delivered: {undelivered:?}");
    let mut duplicates = 0;
    for copies in sent.values() {
        duplicates += copies.len() - 1;
        assert!(copies.iter().all(|c| c == &copies[0]), "a duplicate is not the same pool row resent");
    }
    let exit_duplicates: usize = delivered_to.values().map(|c| c.len() - 1).sum();
    let exit_identical: usize = delivered_to.values().map(|c| c[1..].iter().filter(|d| *d == &c[0]).count()).sum();
    assert_eq!(duplicates + exit_duplicates, dup.resent);
    assert!(dup.resent <= kills, "{} duplicates from {kills} kills: at most one per crash", dup.resent);
    // The next mix's replay cache, fed every copy: the first passes, every later one is dropped.
    let mut cache = State::in_memory().unwrap();
    let tx = cache.transaction().unwrap();
    let mut passed = 0;
    for (hash, copies) in &sent {
        for _ in copies {
            if !replay::seen(&tx, hash).unwrap() {
                replay::insert(&tx, hash, None).unwrap();
                passed += 1;
            }
        }
    }
    assert_eq!(passed, VALID);
    let stray_tmp: usize =
        std::fs::read_dir(&out_root).unwrap().map(|e| files(&e.unwrap().path().join("tmp")).len()).sum();

    // Counters, as `status` shows them: each input counted once.
    let mut c = net.node_cmd("a.test");
    c.args(["status", "--json"]);
    let json = String::from_utf8(ok(c, b"").stdout).unwrap();
    let replay_entries = (VALID + FINAL) as i64;
    for (key, want) in [
        ("spool", 0),
        ("pool", 0),
        ("exit_queue", 0),
        ("held_parts", 0),
        ("replay_entries", replay_entries),
        ("operator_mail", 6),
    ] {
        assert_eq!(json_int(&json, key), want, "status {key}: {json}");
    }
    let counters = json_counters(&json);
    let mut want = want_drops.clone();
    want.insert("drop.replay".into(), REPLAYS as i64);
    want.insert("intake.forwarded".into(), VALID as i64);
    want.insert("intake.final".into(), FINAL as i64);
    want.insert("intake.operator".into(), operator_mails.len() as i64);
    if counters.contains_key("intake.taken") {
        want.insert("intake.taken".into(), total_inputs as i64);
    }
    // What became of messages (sends are bounded below); other counters are not this test's.
    let got: BTreeMap<String, i64> = counters
        .iter()
        .filter(|(k, v)| ["drop.", "intake.", "exit.", "dummy.", "pool."].iter().any(|p| k.starts_with(p)) && **v != 0)
        .filter(|(k, _)| *k != "pool.sent" && *k != "exit.delivered")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(got, want, "counters");
    let pool_sent = counters.get("pool.sent").copied().unwrap_or(0);
    let exit_delivered = counters.get("exit.delivered").copied().unwrap_or(0);
    assert!(
        pool_sent <= VALID as i64 && exit_delivered <= FINAL as i64,
        "pool.sent {pool_sent}, exit.delivered {exit_delivered}"
    );
    assert!(
        pool_sent + exit_delivered + kills as i64 >= (VALID + FINAL) as i64,
        "pool.sent {pool_sent}, exit.delivered {exit_delivered}"
    );

    eprintln!(
        "crash: {total_inputs} spool files ({VALID} to forward, {FINAL} to deliver, {REPLAYS} replays, {broken_count} broken); \
         setup {setup:?}, clean round {calibration:?}; {kills} kills in {:?}: {hits:?}, {hot_journals} inside a write \
         transaction; up to {most_in_flight} mails at once both sent and still to send; {clean_rounds} rounds to finish; {duplicates} \
         forwarded duplicates (dropped by the next replay cache), {exit_duplicates} delivered duplicates ({exit_identical} \
         byte-identical); pool.sent {pool_sent} of {VALID}, exit.delivered {exit_delivered} of {FINAL}; {stray_tmp} \
         half-written files in tmp/; windows {whole:?} {early:?}; total {:?}",
        loop_start.elapsed(),
        started.elapsed()
    );
}
