//! Tagging and bad input: every fault is a clean drop with its reason, never a panic, and
//! a flipped byte anywhere in a layer's verified window drops that layer.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use mixtasy::format::sizes::{INNER, OUTER};
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::keys::{self, KeyRing};
use mixtasy::mixes::modes::Modes;
use mixtasy::node::peel::{self, DropReason, Node, Peeled};
use mixtasy::{format::armor, format::verification, format::wire, sender::create};
use proptest::prelude::*;

use crate::util::*;

/// Four mixes in memory, a message through them, and the wire mail as each hop sees it.
struct World {
    now: SystemTime,
    nodes: Vec<Node>,
    certs: Vec<sequoia_openpgp::Cert>,
    /// `hops[k]` is the wire mail mix `path[k]` receives; `path[k]` indexes `nodes`.
    hops: Vec<Vec<u8>>,
    path: Vec<usize>,
    original: Vec<u8>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let now = SystemTime::now();
        let modes = Modes::parse("middleman,exitpublic").unwrap();
        let mut mixes: Vec<Mix> = Vec::new();
        let mut nodes = Vec::new();
        let mut certs = Vec::new();
        for i in 1..=4 {
            let address = MixAddress::for_fqdn(&format!("t{i}.test")).unwrap();
            let cert = keys::generate("T", &modes, &address, now, keys::SUBKEY_VALIDITY).unwrap();
            mixes.push(directory::check(&cert, now).unwrap());
            nodes.push(Node { address, modes, ring: KeyRing::from_cert(&cert, Duration::from_secs(3600)).unwrap() });
            certs.push(cert);
        }
        let original = b"To: carol@elsewhere.test\r\nSubject: tag me\r\n\r\nbody\r\n".to_vec();
        let mut rng = rand::rng();
        let wires = create::create(&original, &mixes, &create::Options::default(), now, &mut rng).unwrap();
        let mut mail = wires[0].mail.clone();
        let mut to = wires[0].to.clone();
        let (mut hops, mut path) = (Vec::new(), Vec::new());
        loop {
            let k = nodes.iter().position(|n| n.address == to).unwrap();
            hops.push(mail.clone());
            path.push(k);
            match peel::peel(&mail, &nodes[k], now, &mut rng).unwrap().peeled {
                Peeled::Forward { to: next, mail: m } => {
                    to = next;
                    mail = m;
                }
                Peeled::Final { payload, .. } => {
                    assert_eq!(payload, original);
                    break;
                }
            }
        }
        assert_eq!(hops.len(), 4);
        World { now, nodes, certs, hops, path, original }
    })
}

/// Where the revealed message starts inside a D4 layer body: PKESK packet, SED header,
/// CFB prefix, literal header.
fn revealed_offset(body: &[u8]) -> usize {
    let pkesk = mixtasy::format::packet::read_packet(body).unwrap();
    let pkesk_len = body.len() - pkesk.rest.len();
    pkesk_len + 1 + mixtasy::format::cfb::PREFIX_LEN + 7
}

fn peel_at(w: &World, hop: usize, mail: &[u8]) -> Result<peel::Outcome, peel::Dropped> {
    peel::peel(mail, &w.nodes[w.path[hop]], w.now, &mut rand::rng())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// A flipped byte (any bit pattern) anywhere in the Verification line or the INNER
    /// bytes it covers, at any layer: that layer is dropped for verification.
    #[test]
    fn tagging_the_verified_window_of_any_layer_is_detected(hop in 0usize..4, pos in 0usize..(verification::LINE_LEN + INNER), mask in 1u8..=255) {
        let w = world();
        let mut body = armor::decode(&w.hops[hop]).unwrap();
        let at = revealed_offset(&body) + pos;
        body[at] ^= mask;
        let dropped = peel_at(w, hop, &rewrap(&w.hops[hop], &body)).unwrap_err();
        prop_assert_eq!(dropped.reason, DropReason::Verification, "hop {} pos {}", hop, pos);
    }

    /// Arbitrary damage to a wire mail's text never panics and never yields anything but
    /// a drop or (if the damage missed everything checked) the honest result.
    #[test]
    fn damaged_mail_never_panics(hop in 0usize..4, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<Option<usize>>()) {
        let w = world();
        let mut mail = w.hops[hop].clone();
        for (p, b) in edits {
            let p = p % mail.len();
            mail[p] = b;
        }
        if let Some(c) = cut { mail.truncate(c % mail.len()); }
        let _ = peel_at(w, hop, &mail);
    }
}

#[test]
fn untouched_world_delivers() {
    let w = world();
    let out = peel_at(w, 3, &w.hops[3]).unwrap();
    let Peeled::Final { payload, .. } = out.peeled else { panic!("exit gives a final message") };
    assert_eq!(payload, w.original);
}

#[test]
fn every_bad_input_is_a_named_drop() {
    let w = world();
    let good = &w.hops[0];
    let body = armor::decode(good).unwrap();
    let reason = |mail: &[u8]| peel_at(w, 0, mail).unwrap_err().reason;
    // Garbage and empty input are not mix mail.
    assert_eq!(reason(b""), DropReason::NotMixMail);
    assert_eq!(reason(&[0xffu8; 3000]), DropReason::NotMixMail);
    assert_eq!(
        reason(b"From: MAILER-DAEMON@x.test\nTo: mixtasy@t1.test\nSubject: Undelivered\n\nsorry\n"),
        DropReason::NotMixMail
    );
    // Truncated armor.
    assert_eq!(reason(&good[..good.len() / 2]), DropReason::Malformed);
    // Re-armored: valid armor around a shortened body. The layer still decrypts, but the
    // revealed message cannot hold the verified window: D6 step 4 fails.
    assert_eq!(reason(&rewrap(good, &body[..5000])), DropReason::Verification);
    // Cut inside the session key packet: malformed.
    assert_eq!(reason(&rewrap(good, &body[..50])), DropReason::Malformed);
    // Valid armor around garbage.
    assert_eq!(reason(&rewrap(good, &[0x42u8; OUTER])), DropReason::Malformed);
    // Oversized.
    let mut big = body.clone();
    big.extend_from_slice(&[0u8; 100]);
    assert_eq!(reason(&rewrap(good, &big)), DropReason::Oversized);
    // Wrong recipient: the mail names another mix.
    let other = MixAddress::for_fqdn("t9.test").unwrap();
    assert_eq!(reason(&wire::build(None, &other, &body)), DropReason::NotForThisMix);
    // Wrong key: the next hop's mail, re-addressed to this mix.
    let me = w.nodes[w.path[0]].address.clone();
    let next_body = armor::decode(&w.hops[1]).unwrap();
    assert_eq!(reason(&wire::build(None, &me, &next_body)), DropReason::UnknownKey);
    // Expired subkey.
    let later = w.now + keys::SUBKEY_VALIDITY + Duration::from_secs(1);
    let d = peel::peel(good, &w.nodes[w.path[0]], later, &mut rand::rng()).unwrap_err();
    assert_eq!(d.reason, DropReason::ExpiredKey);
    // Drop details never carry addresses or hashes.
    let r = reason(&wire::build(None, &other, &body));
    assert!(!format!("{r:?}").contains('@'));
}

#[test]
fn modes_are_applied() {
    let w = world();
    let mut rng = rand::rng();
    let n0 = &w.nodes[w.path[0]];
    let exit_only = Node {
        address: n0.address.clone(),
        modes: Modes::parse("exitpublic").unwrap(),
        ring: KeyRing::from_cert(&w.certs[w.path[0]], Duration::from_secs(3600)).unwrap(),
    };
    assert_eq!(peel::peel(&w.hops[0], &exit_only, w.now, &mut rng).unwrap_err().reason, DropReason::Mode);
    let n3 = &w.nodes[w.path[3]];
    let middle_only = Node {
        address: n3.address.clone(),
        modes: Modes::parse("middleman").unwrap(),
        ring: KeyRing::from_cert(&w.certs[w.path[3]], Duration::from_secs(3600)).unwrap(),
    };
    assert_eq!(peel::peel(&w.hops[3], &middle_only, w.now, &mut rng).unwrap_err().reason, DropReason::Mode);
}

#[test]
fn cli_drops_say_why_and_exit_1() {
    let mut net = Net::new(VECTOR_NOW);
    net.add_node_from_key("mix1.test", &fixture("gnupg-4hop/keys/mixtasy@mix1.test.sec.asc"));
    let good = std::fs::read(fixture("gnupg-4hop/wire-to-mix1.eml")).unwrap();
    let cases: [(&[u8], &str); 3] = [
        (b"garbage\x00\xff", "not-mix-mail"),
        (&good[..good.len() - 300], "malformed"),
        (b"From: a@b.test\nTo: mixtasy@mix1.test\nRemailer-Type: Mixtasy v1\n\nhello\n", "malformed"),
    ];
    for (input, why) in cases {
        let err = net.peel("mix1.test", input).unwrap_err();
        assert!(err.contains(&format!("dropped: {why}")), "{why}: {err}");
        assert!(!err.contains("panicked"));
    }
    // After expiry of the fixture's subkeys (2026-11-23 00:00 UTC).
    let mut late = mixtasyd();
    late.arg("--home").arg(net.home("mix1.test")).args(["--now", "1795392001", "peel"]);
    let o = run(late, &good);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("dropped: expired-key"));
}

#[test]
fn init_refuses_an_existing_home_and_changes_nothing() {
    let mut net = Net::new(VECTOR_NOW);
    net.add_node("a.test", "middleman");
    let home = net.home("a.test");
    let snapshot = |h: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(h)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&home);
    let mut c = net.node_cmd("a.test");
    c.args(["init", "--address", "mixtasy@b.test", "--modes", "exitpublic"]);
    let o = run(c, b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already a mixtasyd home"));
    assert_eq!(snapshot(&home), before);
    // Modes: the home is 0700, every file in it 0600.
    assert!(mixtasy::node::home::loose_permissions(&home).unwrap().is_empty());
}

/// Every command but `init` (and `check`, which reports on any directory) refuses a
/// directory that is not a home in the same one line, and leaves nothing in it: `key
/// rotate` once took the round lock first and failed on `round.lock` with a raw I/O error.
/// A home whose config is gone (a half-restored backup) is no home either; `--round` says
/// the same with EX_CONFIG.
#[test]
fn every_command_on_a_non_home_says_so_and_leaves_nothing() {
    let net = Net::new(VECTOR_NOW);
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = t.path().join("missing");
    let mut half = Net::new(VECTOR_NOW);
    half.add_node("a.test", "middleman");
    let half = half.home("a.test");
    std::fs::remove_file(half.join("mixtasyd.toml")).unwrap();
    let listing = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let commands: [&[&str]; 11] = [
        &["key", "rotate"],
        &["key", "transition"],
        &["key", "revoke"],
        &["key", "publish"],
        &["key", "export"],
        &["status"],
        &["directory", "list"],
        &["directory", "fetch", "--keyserver", "http://127.0.0.1:9"],
        &["block", "check", "a@b.test"],
        &["peel"],
        &["--round"],
    ];
    for dir in [&empty, &missing, &half] {
        let before = listing(dir);
        for args in commands {
            let mut c = mixtasyd();
            c.arg("--home").arg(dir).arg("--now").arg(net.now.to_string()).args(args);
            let o = run(c, b"");
            let err = String::from_utf8_lossy(&o.stderr);
            let want = if args == ["--round"] { 78 } else { 2 };
            assert_eq!(o.status.code(), Some(want), "{args:?} on {}: {}", dir.display(), describe(&mixtasyd(), &o));
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(
                err.starts_with(&format!("mixtasyd: {} is not a mixtasyd home", dir.display()))
                    && err.contains("run `mixtasyd init` first"),
                "{args:?} on {}: {err}",
                dir.display()
            );
            assert_eq!(listing(dir), before, "{args:?} changed {}", dir.display());
            assert!(o.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&o.stdout));
        }
    }
    assert!(!missing.exists(), "a command made the missing home");
}

#[test]
fn directory_import_refuses_with_reasons_and_stores_nothing_bad() {
    let net = Net::new(VECTOR_NOW);
    let mut c = net.client_cmd();
    c.args(["directory", "import"]);
    let o = run(c, b"this is not a key");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("refused"));
    let mut c = net.client_cmd();
    c.args(["directory", "import"]).arg(fixture("gnupg-4hop/keys/mixtasy@mix2.test.pub.asc"));
    let o = ok(c, b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "stored mixtasy@mix2.test");
    let mut c = net.client_cmd();
    c.args(["directory", "list"]);
    let o = ok(c, b"");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "mixtasy@mix2.test  middleman,exitpublic  subkey expires 2026-11-23 00:00:00 UTC"
    );
}

/// A tag in the unverified tail of a layer (just past the window its Verification line
/// covers) passes that mix, which cannot see it, and is dropped at the next hop, whose
/// window covers those bytes: the thesis' argument (5.7) checked at every intermediate hop.
#[test]
fn a_tag_in_the_unverified_tail_is_dropped_at_the_next_hop() {
    let w = world();
    for hop in 0..3 {
        let mut body = armor::decode(&w.hops[hop]).unwrap();
        let at = revealed_offset(&body) + verification::LINE_LEN + INNER + 100;
        body[at] ^= 0x20;
        let out =
            peel_at(w, hop, &rewrap(&w.hops[hop], &body)).unwrap_or_else(|d| panic!("hop {hop} saw the tag: {d}"));
        let Peeled::Forward { mail, .. } = out.peeled else { panic!("hop {hop} forwards") };
        let dropped = peel_at(w, hop + 1, &mail).unwrap_err();
        assert_eq!(dropped.reason, DropReason::Verification, "hop {}", hop + 1);
    }
}
