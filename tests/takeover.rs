//! Issue 10, section 2: a second key for a mix's address must not take the mix over. The
//! attacker makes a key for `mixtasy@mix2.test` with stock GnuPG a second after the real one
//! and hands it to senders and nodes as a file or through a real keyserver (SKS), where
//! anyone can upload. Only the operator's own moves replace a key: a transition certified
//! by the old primary, a revocation, or a week without a valid subkey (simulated with
//! `--now`). Unrelated keys met together at first sight are a named conflict.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

use crate::util::*;

const MODES: &str = "middleman,exitpublic";
const MIXES: [&str; 4] = ["mix1.test", "mix2.test", "mix3.test", "mix4.test"];
const DAY: u64 = 86400;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mixtasy --home HOME --now AT args…`, asserting success; its stdout.
fn client(home: &Path, at: u64, args: &[&str], stdin: &[u8]) -> String {
    let mut c = mixtasy();
    c.arg("--home").arg(home).args(["--now", &at.to_string()]).args(args);
    text(&ok(c, stdin))
}

fn fingerprint(armored: &[u8]) -> String {
    openpgp::Cert::from_bytes(armored).unwrap().fingerprint().to_hex()
}

/// The attacker's key, made by GnuPG at `at` (a second after the real one): a
/// certification-only Ed25519 primary and a cv25519 encryption subkey valid for 2 days,
/// with the mix's user id. Armored public key.
fn gnupg_impostor(gpg: &Gpg, at: u64) -> Vec<u8> {
    let uid = "Evil (mixtasy-mode:middleman,exitpublic) <mixtasy@mix2.test>";
    let faked = format!("{at}!");
    let base = ["--faked-system-time", faked.as_str(), "--pinentry-mode", "loopback", "--passphrase", ""];
    gpg.ok(&[&base[..], &["--quick-gen-key", uid, "ed25519", "cert", "never"]].concat(), b"");
    let colons = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys", "mixtasy@mix2.test"], b"").stdout).unwrap();
    let fpr = colons.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string();
    gpg.ok(&[&base[..], &["--quick-add-key", &fpr, "cv25519", "encr", "2d"]].concat(), b"");
    gpg.ok(&["--armor", "--export", &fpr], b"").stdout
}

/// Creates one message whose first hop is `first`; returns the first wire mail.
fn first_hop(home: &Path, at: u64, first: &str) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let mut c = mixtasy();
    c.arg("--home").arg(home).args(["--now", &at.to_string(), "create", "--first-mix", first, "--out"]).arg(out.path());
    ok(c, b"To: bob@rcpt.test\n\nhello\n");
    std::fs::read(out.path().join("0001.eml")).unwrap()
}

/// The key id a wire mail's layer is encrypted to (its one PKESK).
fn recipient(mail: &[u8]) -> openpgp::KeyID {
    use openpgp::parse::{PacketParser, PacketParserResult};
    let body = wire_body(mail);
    let ppr = PacketParser::from_bytes(&body).unwrap();
    match ppr {
        PacketParserResult::Some(pp) => match &pp.packet {
            openpgp::Packet::PKESK(p) => p.recipient().map(openpgp::KeyID::from).unwrap(),
            other => panic!("first packet is {other:?}"),
        },
        PacketParserResult::EOF(_) => panic!("empty layer"),
    }
}

fn subkey_ids(armored: &[u8]) -> Vec<openpgp::KeyID> {
    mixtasy::mixes::keys::encryption_subkeys(&openpgp::Cert::from_bytes(armored).unwrap())
        .iter()
        .map(|(k, _)| k.keyid())
        .collect()
}

fn network(now: u64) -> Net {
    let mut net = Net::new(now);
    for f in MIXES {
        net.add_lab_node(f, MODES);
    }
    net
}

#[test]
fn a_gnupg_impostor_from_a_file_or_a_keyserver_does_not_take_over_and_a_fresh_directory_names_the_conflict() {
    let sks = Sks::start();
    let t = unix_now();
    let net = network(t);
    for f in MIXES {
        net.configure(f, "keyserver", &format!("{:?}", sks.url));
        let mut c = net.node_cmd(f);
        c.args(["key", "publish"]);
        ok(c, b"");
    }
    let real = net.export("mix2.test", false);
    let gpg = Gpg::new();
    let evil = gnupg_impostor(&gpg, t + 1);
    let evil_fpr = fingerprint(&evil);
    assert_ne!(evil_fpr, fingerprint(&real));
    let evil_file = net.dir.path().join("evil.asc");
    std::fs::write(&evil_file, &evil).unwrap();
    let later = t + 2;

    // The sender who knows mix2 imports the impostor from a file: ignored, said so.
    net.publish_all_to_client();
    let out = client(&net.client_home(), later, &["directory", "import", evil_file.to_str().unwrap()], b"");
    assert_eq!(
        out.trim(),
        format!(
            "ignored mixtasy@mix2.test key {evil_fpr}: another key is established for it and does not certify this one"
        )
    );
    let mail = first_hop(&net.client_home(), later, "mix2.test");
    assert!(subkey_ids(&real).contains(&recipient(&mail)), "encrypted to the real mix2");
    assert!(net.peel("mix2.test", &mail).is_ok());
    // A node's directory too.
    let mut c = net.node_cmd("mix1.test");
    c.args(["directory", "import"]);
    ok(c, &[real.clone(), net.export("mix3.test", false)].concat());
    let mut c = mixtasyd();
    c.arg("--home")
        .arg(net.home("mix1.test"))
        .args(["--now", &later.to_string(), "directory", "import"])
        .arg(&evil_file);
    assert!(text(&ok(c, b"")).starts_with("ignored mixtasy@mix2.test"));

    // Through the keyserver: anyone may upload.
    sks.keyserver().publish(std::str::from_utf8(&evil).unwrap()).unwrap();
    let url = sks.url.as_str();
    let out = client(&net.client_home(), later, &["directory", "fetch", "--keyserver", url], b"");
    assert!(out.contains(&format!("  ignored mixtasy@mix2.test key {evil_fpr}")), "{out}");
    let mail = first_hop(&net.client_home(), later, "mix2.test");
    assert!(subkey_ids(&real).contains(&recipient(&mail)), "still the real mix2 after a fetch");
    // A node's round refreshes its directory from the keyserver: its key for mix2 stays.
    net.round_later("mix1.test", 2);
    let node_copy = std::fs::read(net.home("mix1.test").join("directory/mixtasy@mix2.test.pgp")).unwrap();
    assert_eq!(fingerprint(&node_copy), fingerprint(&real));

    // A sender who meets both at once, with no history: a conflict, neither used.
    let fresh = net.dir.path().join("fresh");
    let out = client(&fresh, later, &["directory", "fetch", "--keyserver", url], b"");
    let line = out
        .lines()
        .find(|l| l.starts_with("  conflict mixtasy@mix2.test: 2 unrelated keys ("))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&evil_fpr) && line.contains(&fingerprint(&real)) && line.ends_with("neither is used"),
        "{line}"
    );
    let list = client(&fresh, later, &["directory", "list"], b"");
    assert!(list.lines().any(|l| l.starts_with("mixtasy@mix2.test  conflict: 2 unrelated keys")), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("mixtasy@mix2.test  middleman")), "{list}");
    let mut c = mixtasy();
    c.arg("--home")
        .arg(&fresh)
        .args(["--now", &later.to_string(), "create", "--first-mix", "mix2.test", "--out"])
        .arg(net.dir.path().join("o"));
    let o = run(c, b"To: bob@rcpt.test\n\nhi\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unresolved key conflicts (mixtasy@mix2.test)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut c = mixtasy();
    c.arg("--home")
        .arg(&fresh)
        .args(["--now", &later.to_string(), "create", "--despite-conflicts", "--first-mix", "mix2.test", "--out"])
        .arg(net.dir.path().join("o"));
    let o = run(c, b"To: bob@rcpt.test\n\nhi\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("mix2.test is not in the directory"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(mixtasy::node::home::loose_permissions(&fresh).unwrap(), Vec::<PathBuf>::new());
    // The user, having checked the fingerprint with mix2's operator, ends the conflict.
    let out = client(&fresh, later, &["directory", "choose", &fingerprint(&real)], b"");
    assert_eq!(out.trim(), format!("stored mixtasy@mix2.test: key {} chosen", fingerprint(&real)));
    let mail = first_hop(&fresh, later, "mix2.test");
    assert!(subkey_ids(&real).contains(&recipient(&mail)));
    // The same from one file.
    let fresh2 = net.dir.path().join("fresh2");
    let out = client(&fresh2, later, &["directory", "import"], &[evil.clone(), real.clone()].concat());
    assert!(out.starts_with("conflict mixtasy@mix2.test: 2 unrelated keys"), "{out}");

    // mix3 revokes its key (published with the new one); a fetch honours it.
    let old3 = net.export("mix3.test", false);
    let mut c = net.node_cmd("mix3.test");
    c.args(["key", "revoke"]);
    let revoked = ok(c, b"").stdout;
    assert_eq!(fingerprint(&revoked), fingerprint(&old3));
    let new3 = net.export("mix3.test", false);
    let out = client(&net.client_home(), later, &["directory", "fetch", "--keyserver", url], b"");
    assert!(out.contains("  replaced mixtasy@mix3.test: the previous key is revoked"), "{out}");
    let mail = first_hop(&net.client_home(), later, "mix3.test");
    assert!(subkey_ids(&new3).contains(&recipient(&mail)));
    assert!(net.peel("mix3.test", &mail).is_ok());
}

#[test]
fn a_transition_certified_by_the_old_primary_takes_over_and_mail_in_flight_still_peels() {
    let t = 1_900_000_000;
    let net = network(t);
    net.publish_all_to_client();
    let in_flight = first_hop(&net.client_home(), t, "mix2.test");
    let old = net.export("mix2.test", false);
    let mut c = mixtasyd();
    c.arg("--home").arg(net.home("mix2.test")).args([
        "--now",
        &(t + 30).to_string(),
        "key",
        "transition",
        "--modes",
        "middleman",
    ]);
    let out = text(&ok(c, b""));
    let new = net.export("mix2.test", false);
    assert_eq!(out.trim(), format!("transition: new key {} certified by {}", fingerprint(&new), fingerprint(&old)));
    let config = std::fs::read_to_string(net.home("mix2.test").join("mixtasyd.toml")).unwrap();
    assert!(config.lines().any(|l| l == "modes = \"middleman\""), "the home's config follows the key");
    assert_eq!(mixtasy::node::home::loose_permissions(&net.home("mix2.test")).unwrap(), Vec::<PathBuf>::new());
    let out = client(&net.client_home(), t + 60, &["directory", "import"], &new);
    assert_eq!(
        out,
        "stored mixtasy@mix2.test\nreplaced mixtasy@mix2.test: a key transition certified by the previous key\n"
    );
    let list = client(&net.client_home(), t + 60, &["directory", "list"], b"");
    assert!(list.lines().any(|l| l.starts_with("mixtasy@mix2.test  middleman  subkey expires")), "{list}");
    // The node still peels what was encrypted to the old key, and what is encrypted to the new.
    assert!(net.peel("mix2.test", &in_flight).is_ok(), "mail in flight to the old key is not lost");
    let mail = first_hop(&net.client_home(), t + 60, "mix2.test");
    let fresh_subkey = subkey_ids(&new).into_iter().find(|k| !subkey_ids(&old).contains(k)).unwrap();
    assert_eq!(recipient(&mail), fresh_subkey);
    assert!(net.peel("mix2.test", &mail).is_ok());
    // Rounds go on with the new key, and it rotates as ever (a day on: a new subkey).
    assert!(net.round_later("mix2.test", 120).starts_with("mixtasyd: round:"));
    net.round_later("mix2.test", DAY + 60);
    assert_eq!(net.status("mix2.test").get("key.added"), 1);
    // The old key, met again, does not come back.
    let out = client(&net.client_home(), t + 120, &["directory", "import"], &old);
    assert!(out.starts_with("ignored mixtasy@mix2.test"), "{out}");
}

#[test]
fn a_revoked_key_is_never_used_and_its_successor_is_taken() {
    let t = 1_900_000_000;
    let net = network(t);
    net.publish_all_to_client();
    let mut c = net.node_cmd("mix2.test");
    c.args(["key", "revoke"]);
    let revoked = ok(c, b"").stdout;
    let out = client(&net.client_home(), t + 60, &["directory", "import"], &revoked);
    assert_eq!(out, "stored mixtasy@mix2.test\n");
    let list = client(&net.client_home(), t + 60, &["directory", "list"], b"");
    assert!(
        list.lines().any(
            |l| l == "mixtasy@mix2.test  unusable: certificate is not valid now (expired, revoked or badly signed)"
        ),
        "{list}"
    );
    let mut c = net.client_cmd();
    c.args(["create", "--first-mix", "mix2.test", "--out"]).arg(net.dir.path().join("o"));
    assert_eq!(run(c, b"To: bob@rcpt.test\n\nhi\n").status.code(), Some(2), "the revoked key is not used");
    let out = client(&net.client_home(), t + 60, &["directory", "import"], &net.export("mix2.test", false));
    assert!(out.contains("replaced mixtasy@mix2.test: the previous key is revoked"), "{out}");
    assert!(net.peel("mix2.test", &first_hop(&net.client_home(), t + 60, "mix2.test")).is_ok());
}

/// A key for mix2's address made elsewhere at `at`.
fn other_key(net: &Net, at: u64) -> Vec<u8> {
    let home: PathBuf = net.dir.path().join(format!("other{at}"));
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args([
        "--now",
        &at.to_string(),
        "init",
        "--address",
        "mixtasy@mix2.test",
        "--modes",
        MODES,
    ]);
    ok(c, b"");
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(["--now", &at.to_string(), "key", "export"]);
    ok(c, b"").stdout
}

#[test]
fn seven_days_without_a_valid_subkey_give_the_address_up() {
    let t = 1_900_000_000;
    let net = network(t);
    net.publish_all_to_client();
    // A second sender who also knew every mix at t, then looked at nothing for 12 days.
    let stale = net.dir.path().join("stale");
    client(&stale, t, &["directory", "import"], &MIXES.iter().flat_map(|f| net.export(f, false)).collect::<Vec<u8>>());
    // mix2 goes silent: its one subkey expires at t + 2 days. This directory first sees
    // it so at t + 3 days, and the week counts from there.
    let soon = t + 3 * DAY;
    let out = client(&net.client_home(), soon, &["directory", "import"], &other_key(&net, soon));
    assert!(out.starts_with("ignored mixtasy@mix2.test"), "one day of silence is not enough: {out}");
    let list = client(&net.client_home(), soon, &["directory", "list"], b"");
    assert!(
        list.lines().any(|l| l == "mixtasy@mix2.test  unusable: no encryption subkey valid now"),
        "kept, unused: {list}"
    );
    let lapse_week = t + 2 * DAY + 7 * DAY;
    let out = client(&net.client_home(), lapse_week, &["directory", "import"], &other_key(&net, lapse_week));
    assert!(out.starts_with("ignored mixtasy@mix2.test"), "a week after the lapse, but only 6 days seen here: {out}");
    // Review attack 4: the stale sender meets a copy without new subkeys (a keyserver that
    // withholds them) and an impostor after 12 days: silence it never watched counts for nothing.
    let late = t + 12 * DAY;
    let out = client(&stale, late, &["directory", "import"], &other_key(&net, late));
    assert!(out.starts_with("ignored mixtasy@mix2.test"), "a stale copy is not a week of silence: {out}");
    let week = soon + 7 * DAY;
    let next = other_key(&net, week);
    let out = client(&net.client_home(), week, &["directory", "import"], &next);
    assert!(
        out.contains(
            "replaced mixtasy@mix2.test: this directory has seen the previous key without a valid subkey for 7 days"
        ),
        "{out}"
    );
    let stored = std::fs::read(net.client_home().join("directory/mixtasy@mix2.test.pgp")).unwrap();
    assert_eq!(fingerprint(&stored), fingerprint(&next));
}

/// Review attack 1: anyone signs a "key revocation" over mix2's primary and hands the key
/// out with it, beside an impostor; review attack 2: a bare user id appended to it. Neither
/// counts, neither is stored, and mail still goes to the real mix2.
#[test]
fn a_forged_revocation_or_a_bare_user_id_neither_frees_nor_breaks_the_address() {
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::types::{ReasonForRevocation, SignatureType};
    let t = 1_900_000_000;
    let net = network(t);
    net.publish_all_to_client();
    let real = openpgp::Cert::from_bytes(&net.export("mix2.test", false)).unwrap();
    let atk = mixtasy::mixes::keys::generate(
        "Atk",
        &mixtasy::mixes::modes::Modes::parse("middleman").unwrap(),
        &mixtasy::mixes::address::MixAddress::for_fqdn("atk.test").unwrap(),
        UNIX_EPOCH + Duration::from_secs(t),
        mixtasy::mixes::keys::SUBKEY_VALIDITY,
    )
    .unwrap();
    let mut signer = atk.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
    let forged = SignatureBuilder::new(SignatureType::KeyRevocation)
        .set_reason_for_revocation(ReasonForRevocation::KeyCompromised, b"")
        .unwrap()
        .set_signature_creation_time(UNIX_EPOCH + Duration::from_secs(t + 60))
        .unwrap()
        .sign_direct_key(&mut signer, Some(real.primary_key().key()))
        .unwrap();
    let poisoned = real.clone().insert_packets(forged).unwrap().0;
    let bare = openpgp::packet::UserID::from("X (mixtasy-mode:middleman) <mixtasy@mix2.test>");
    let poisoned = poisoned.insert_packets(bare).unwrap().0;
    let at = t + 120;
    let evil = other_key(&net, at);
    let input = [poisoned.armored().to_vec().unwrap(), evil.clone()].concat();
    let out = client(&net.client_home(), at, &["directory", "import"], &input);
    assert_eq!(out, format!("stored mixtasy@mix2.test\nignored mixtasy@mix2.test key {}: another key is established for it and does not certify this one\n", fingerprint(&evil)));
    let stored =
        openpgp::Cert::from_bytes(&std::fs::read(net.client_home().join("directory/mixtasy@mix2.test.pgp")).unwrap())
            .unwrap();
    assert_eq!((stored.fingerprint(), stored.userids().count()), (real.fingerprint(), 1));
    assert_eq!(stored.primary_key().other_revocations().count(), 0, "the forged revocation is not stored");
    let mail = first_hop(&net.client_home(), at, "mix2.test");
    assert!(net.peel("mix2.test", &mail).is_ok(), "still the real mix2");
    // A fresh directory takes the poisoned key as the real mix2's, minimised.
    let fresh = net.dir.path().join("fresh");
    let out = client(&fresh, at, &["directory", "import"], &poisoned.armored().to_vec().unwrap());
    assert_eq!(out, "stored mixtasy@mix2.test\n");
}

#[test]
fn future_dated_subkeys_are_neither_used_nor_count() {
    let t = 1_900_000_000;
    let net = network(t);
    // mix2 rotates as if it were a day later: its key now carries a subkey made tomorrow.
    let mut c = mixtasyd();
    c.arg("--home").arg(net.home("mix2.test")).args(["--now", &(t + DAY).to_string(), "key", "rotate"]);
    assert!(text(&ok(c, b"")).starts_with("rotate: added a subkey"));
    let key = net.export("mix2.test", false);
    let subs = mixtasy::mixes::keys::encryption_subkeys(&openpgp::Cert::from_bytes(&key).unwrap());
    assert_eq!(subs.len(), 2);
    net.publish_all_to_client();
    let present = subs.iter().find(|(_, v)| v.created == UNIX_EPOCH + Duration::from_secs(t)).unwrap();
    let mail = first_hop(&net.client_home(), t, "mix2.test");
    assert_eq!(recipient(&mail), present.0.keyid(), "encrypted to the subkey valid now, not tomorrow's");
    let list = client(&net.client_home(), t, &["directory", "list"], b"");
    assert!(
        list.contains(&format!(
            "mixtasy@mix2.test  {MODES}  subkey expires {}",
            mixtasy::cli::utc(present.1.expires.unwrap())
        )),
        "{list}"
    );
    // A key whose only subkey is made tomorrow is no mix key today.
    let bare = openpgp::cert::CertBuilder::new()
        .set_creation_time(UNIX_EPOCH + Duration::from_secs(t))
        .set_primary_key_flags(openpgp::types::KeyFlags::empty().set_certification())
        .add_userid("F (mixtasy-mode:middleman) <mixtasy@future.test>")
        .generate()
        .unwrap()
        .0;
    let (future, _) = mixtasy::mixes::keys::rotate(
        bare,
        UNIX_EPOCH + Duration::from_secs(t + DAY),
        mixtasy::mixes::keys::SUBKEY_VALIDITY,
    )
    .unwrap();
    let mut c = net.client_cmd();
    c.args(["directory", "import"]);
    let out = run(c, &future.armored().to_vec().unwrap());
    assert!(text(&out).ends_with(": no encryption subkey valid now\n"), "{}", text(&out));
}
