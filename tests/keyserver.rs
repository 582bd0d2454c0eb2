//! A real keyserver (thesis 6.3.2, D8): Debian's SKS, started on loopback in a temporary
//! root for each test. Five nodes publish, a sender discovers exactly the five (a non-mix key
//! and a malformed mix key on the same server are refused with reasons), a rotation
//! republished shows up with its new subkey, and stock GnuPG imports what a node published.
//! A keyserver that is down fails a fetch cleanly and never stops a round from mixing.
//!
//! A missing `sks` is a failure, not a skip: `scripts/install-deps --test` installs it. The
//! `Sks` guard lives in util.rs, shared with tests/postfix.rs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::cert::CertBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::KeyFlags;
use sequoia_openpgp as openpgp;

use crate::util::*;

const MODES: &str = "middleman,exitpublic";
/// A round this much later rotates: the newest subkey (2 days) is past half its validity.
const LATER: u64 = 95_040; // 1.1 days

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Armored public certs that are not mix keys but contain the search word: an ordinary key
/// (`Bob <bob@mixtasy.org>`), and a mix-like key with two user ids. Also one without the
/// word, which discovery must not even find.
fn non_mix_keys() -> Vec<Vec<u8>> {
    let bob = CertBuilder::general_purpose(Some("Bob <bob@mixtasy.org>")).generate().unwrap().0;
    let two = CertBuilder::new()
        .set_primary_key_flags(KeyFlags::empty().set_certification())
        .add_userid("A (mixtasy-mode:middleman) <mixtasy@evil1.test>")
        .add_userid("B (mixtasy-mode:middleman) <mixtasy@evil2.test>")
        .add_subkey(
            KeyFlags::empty().set_transport_encryption().set_storage_encryption(),
            Duration::from_secs(2 * 86400),
            None,
        )
        .generate()
        .unwrap()
        .0;
    let carol = CertBuilder::general_purpose(Some("Carol <carol@example.org>")).generate().unwrap().0;
    [bob, two, carol].iter().map(|c| c.armored().to_vec().unwrap()).collect()
}

/// `mixtasy directory …` for the sender, acting at `at`.
fn client_at(net: &Net, at: u64, args: &[&str]) -> String {
    let mut c = mixtasy();
    c.arg("--home").arg(net.client_home()).args(["--now", &at.to_string()]).args(args);
    String::from_utf8(ok(c, b"").stdout).unwrap()
}

fn fingerprint(net: &Net, fqdn: &str) -> String {
    openpgp::Cert::from_bytes(&net.export(fqdn, false)).unwrap().fingerprint().to_hex()
}

#[test]
fn nodes_publish_sender_discovers_rotation_shows_gpg_imports() {
    let sks = Sks::start();
    let mut net = Net::new(unix_now());
    let fqdns: Vec<String> = (1..=5).map(|i| format!("ks{i}.test")).collect();
    for f in &fqdns {
        net.add_lab_node(f, MODES);
        net.configure(f, "keyserver", &format!("{:?}", sks.url));
    }
    // Four publish by command; the junk goes up; the fifth publishes in its first round
    // (`last_publish` unset), then discovers in the same round.
    for f in &fqdns[..4] {
        let mut c = net.node_cmd(f);
        c.args(["key", "publish"]);
        let out = String::from_utf8(ok(c, b"").stdout).unwrap();
        assert_eq!(out.trim(), format!("published {} to {}", fingerprint(&net, f), sks.url));
        assert_eq!(net.status(f).get("last_publish"), net.now as i64);
    }
    for k in non_mix_keys() {
        sks.keyserver().publish(std::str::from_utf8(&k).unwrap()).unwrap();
    }
    assert!(net.round("ks5.test").starts_with("mixtasyd: round:"));
    let st = net.status("ks5.test");
    assert_eq!(
        (st.get("key.published"), st.get("key.publish-failed"), st.get("last_publish")),
        (1, 0, net.now as i64),
        "{}",
        st.0
    );
    assert_eq!((st.get("directory.fetched"), st.get("last_discovery")), (1, net.now as i64), "{}", st.0);
    let mut c = net.node_cmd("ks5.test");
    c.args(["directory", "list"]);
    let node_list = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert_eq!(node_list.lines().count(), 5, "the node discovered the five mixes:\n{node_list}");

    // The sender finds the seven keys with the word, keeps the five mixes.
    let url = sks.url.as_str();
    let out = client_at(&net, net.now, &["directory", "fetch", "--keyserver", url]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "found 7, kept 5, refused 2", "{out}\nSKS log:\n{}", sks.log());
    assert!(lines.contains(&"  refused 1: has 2 user ids, a mix key has exactly one"), "{out}");
    assert!(lines.contains(&"  refused 1: user id is not `Name (mixtasy-mode:MODES) <mixtasy@FQDN>`"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    let list = client_at(&net, net.now, &["directory", "list"]);
    let listed: Vec<&str> = list.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    let expected: Vec<String> = fqdns.iter().map(|f| format!("mixtasy@{f}")).collect();
    assert_eq!(listed, expected, "{list}");
    assert!(list.lines().all(|l| l.contains(&format!("  {MODES}  subkey expires "))), "{list}");

    // Stock GnuPG fetches a node's key by fingerprint over HKP and sees its subkeys.
    let gpg = Gpg::new();
    gpg.kill("dirmngr");
    let fpr = fingerprint(&net, "ks2.test");
    gpg.ok(&["--keyserver", url, "--recv-keys", &fpr], b"");
    let colons = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys", &fpr], b"").stdout).unwrap();
    let subs: Vec<Vec<&str>> =
        colons.lines().filter(|l| l.starts_with("sub:")).map(|l| l.split(':').collect()).collect();
    let mix = net.mix("ks2.test");
    assert_eq!(subs.len(), mix.subkeys.len(), "{colons}");
    for (sub, (_, validity)) in subs.iter().zip(&mix.subkeys) {
        assert_eq!(sub[16], "cv25519", "{colons}");
        assert!(sub[11].contains('e'), "an encryption subkey: {colons}");
        let expires = validity.expires.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(sub[6], expires.to_string(), "subkey expiry: {colons}");
    }
    assert!(colons.lines().any(|l| l.starts_with("uid:") && l.contains("<mixtasy@ks2.test>")), "{colons}");
    drop(gpg);

    // A round 1.1 days later rotates ks3 and republishes; the sender sees the new subkey.
    let later = net.now + LATER;
    assert!(net.round_later("ks3.test", LATER).starts_with("mixtasyd: round:"));
    let st = net.status("ks3.test");
    assert_eq!((st.get("key.published"), st.get("last_publish")), (1, later as i64), "{}", st.0);
    let out = client_at(&net, later, &["directory", "fetch", "--keyserver", url]);
    assert_eq!(out.lines().next(), Some("found 7, kept 5, refused 2"), "{out}");
    let stored = std::fs::read(net.client_home().join("directory/mixtasy@ks3.test.pgp")).unwrap();
    let stored = openpgp::Cert::from_bytes(&stored).unwrap();
    let subkeys = mixtasy::mixes::keys::encryption_subkeys(&stored);
    assert_eq!(subkeys.len(), 2, "the republished key carries the rotated subkey");
    let newest = subkeys.iter().map(|(_, v)| v.expires.unwrap()).max().unwrap();
    assert_eq!(newest, UNIX_EPOCH + Duration::from_secs(later + 2 * 86400));
    let list = client_at(&net, later, &["directory", "list"]);
    let ks3 = list.lines().find(|l| l.starts_with("mixtasy@ks3.test ")).expect("ks3 listed");
    assert!(ks3.ends_with(&mixtasy::cli::utc(newest)), "{list}");
    let ks1 = list.lines().find(|l| l.starts_with("mixtasy@ks1.test ")).expect("ks1 listed");
    assert!(ks1.ends_with(&mixtasy::cli::utc(UNIX_EPOCH + Duration::from_secs(net.now + 2 * 86400))), "{list}");
}

/// Every file of a directory, by name, with its bytes.
pub(crate) fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_dead_keyserver_fails_a_fetch_cleanly_and_never_stops_a_round() {
    let dead = format!("hkp://127.0.0.1:{}", free_port());
    let mut net = Net::new(unix_now());
    net.add_lab_node("ka.test", MODES);
    net.add_lab_node("kb.test", MODES);
    net.publish_all_to_client();
    let dir = net.client_home().join("directory");
    let before = snapshot(&dir);
    assert_eq!(before.len(), 2);
    let mut c = net.client_cmd();
    c.args(["directory", "fetch", "--keyserver", &dead]);
    let out = run(c, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("mixtasy: keyserver ") && stderr.contains("did not answer"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(snapshot(&dir), before, "a failed fetch leaves the directory as it was");

    // A node whose keyserver is down still mixes: a final message is delivered.
    net.configure("ka.test", "keyserver", &format!("{dead:?}"));
    let original = b"To: Bob <bob@rcpt.test>\nSubject: dead keyserver\n\nstill mixing\n";
    net.inject(&net.wrap_final(mixtasy::format::message::Kind::Singlepart, original, &["ka.test"]));
    assert!(net.round("ka.test").starts_with("mixtasyd: round:"));
    assert_eq!(net.delivered("bob@rcpt.test").len(), 1);
    let st = net.status("ka.test");
    assert_eq!((st.get("key.publish-failed"), st.get("key.published"), st.get("last_publish")), (1, 0, 0), "{}", st.0);
    assert_eq!(st.get("directory.fetch-failed"), 1, "{}", st.0);
    // Retried next round, still failing, still mixing.
    net.round_later("ka.test", 60);
    assert_eq!(net.status("ka.test").get("key.publish-failed"), 2);
}
