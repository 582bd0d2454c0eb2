//! Security properties checked through the real binaries (issue #6, item 5).
//!
//! Already covered elsewhere, and not repeated here: a replay after a node restart (every
//! round is a new process) and within one round (`round::replay_is_dropped_across_restarts_
//! and_within_a_round`); a message made before its subkey expired and peeled after it, and
//! the destroyed secrets gone from every file of the home (`keys::a_simulated_week_of_rounds`,
//! `round::expired_subkey_and_modes_drop`); a tag in the unverified tail
//! (`badinput::a_tag_in_the_unverified_tail_is_dropped_at_the_next_hop`); the home's modes
//! right after `init` (`badinput::init_refuses_an_existing_home_and_changes_nothing`).
//!
//! Here:
//! - a layer sealed now, by a sender holding a stale certificate, to a subkey that has
//!   expired and whose secret rotation destroyed, is dropped as `expired-key` (and the same
//!   layer sealed while that subkey was still valid passes: the drop is the expiry's);
//! - no file or directory a node or a sender creates is group- or world-accessible, after
//!   `init`, `directory import`, `status`, rounds with traffic, `key rotate`, a round that
//!   destroys an expired secret, `key export --secret` and `peel`, with a umask of 022;
//! - everything the binaries print while a five-node network with dummies and a keyserver
//!   delivers mail, rotates and publishes its keys names no address (a node's `status`
//!   may name its own), no Message-ID or Mixtasy-ID, no Verification (replay) hash in any
//!   usual encoding, no subject or body text and no message size.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mixtasy::format::message::{self, Kind};
use mixtasy::format::sizes::OUTER;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::keys::{self, KeyRing};
use mixtasy::mixes::modes::Modes;
use mixtasy::node::peel::{self, Node, Peeled};
use mixtasy::{format::layer, format::wire};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::Cert;

use crate::util::*;

const HOUR: u64 = 3600;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

fn original(tag: &str) -> Vec<u8> {
    format!("From: alice@sender.test\r\nTo: bob@rcpt.test\r\nSubject: {tag}\r\n\r\n{tag}\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// A layer to an expired subkey.

/// A final message carrying `original(tag)`, sealed to `subkey` of the mix at `to`.
fn final_to(
    subkey: &sequoia_openpgp::packet::Key<
        sequoia_openpgp::packet::key::PublicParts,
        sequoia_openpgp::packet::key::SubordinateRole,
    >,
    to: &MixAddress,
    tag: &str,
) -> Vec<u8> {
    let mut rng = rand::rng();
    let fin = message::build_final(&message::new_id(&mut rng), Kind::Singlepart, &original(tag), &mut rng);
    wire::build(None, to, &layer::seal(&fin, subkey, Some(OUTER), &mut rng).unwrap())
}

/// An intermediate message for `next` (its inner layer sealed to `next_subkey`), sealed to
/// `subkey` of the mix at `to`.
fn forward_to(
    subkey: &sequoia_openpgp::packet::Key<
        sequoia_openpgp::packet::key::PublicParts,
        sequoia_openpgp::packet::key::SubordinateRole,
    >,
    to: &MixAddress,
    next: &MixAddress,
    next_subkey: &sequoia_openpgp::packet::Key<
        sequoia_openpgp::packet::key::PublicParts,
        sequoia_openpgp::packet::key::SubordinateRole,
    >,
    tag: &str,
) -> Vec<u8> {
    let mut rng = rand::rng();
    let fin = message::build_final(&message::new_id(&mut rng), Kind::Singlepart, &original(tag), &mut rng);
    let inner = layer::seal(&fin, next_subkey, None, &mut rng).unwrap();
    let revealed = message::build_intermediate(to, next, &inner);
    wire::build(None, to, &layer::seal(&revealed, subkey, Some(OUTER), &mut rng).unwrap())
}

#[test]
fn a_fresh_layer_to_a_rotated_out_subkey_is_dropped_as_expired_key() {
    let mut net = Net::new(1_900_000_000);
    net.add_lab_node("a.test", "middleman,exitpublic");
    net.add_lab_node("b.test", "middleman,exitpublic");
    let a = MixAddress::for_fqdn("a.test").unwrap();
    let b = MixAddress::for_fqdn("b.test").unwrap();
    // The sender's stale copy of a.test's certificate: its first subkey only.
    let stale = Cert::from_bytes(&net.export("a.test", false)).unwrap();
    let subkeys = keys::encryption_subkeys(&stale);
    assert_eq!(subkeys.len(), 1);
    let (first, validity) = subkeys[0].clone();
    let expiry = validity.expires.unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(expiry, net.now + 48 * HOUR);
    let b_subkey = keys::encryption_subkeys(&Cert::from_bytes(&net.export("b.test", false)).unwrap())[0].0.clone();

    // Past half-life: a round adds a second subkey. A layer to the first one still passes.
    let later = 26 * HOUR;
    net.round_later("a.test", later);
    let st = net.status("a.test");
    assert_eq!(st.get("key.added"), 1, "{}", st.0);
    net.inject(&final_to(&first, &a, "control final"));
    net.inject(&forward_to(&first, &a, &b, &b_subkey, "control forward"));
    net.round_later("a.test", later);
    let st = net.status("a.test");
    assert_eq!(
        (st.get("intake.final"), st.get("intake.forwarded"), st.get("drop.expired-key")),
        (1, 1, 0),
        "while valid, the first subkey opens layers: {}",
        st.0
    );

    // The first subkey has expired; the round rotates first and destroys its secret.
    let expired = 49 * HOUR;
    net.round_later("a.test", expired);
    let st = net.status("a.test");
    assert_eq!(st.get("key.destroyed"), 1, "{}", st.0);
    assert!(st.0.contains("\"secret\":false"), "status shows the destroyed secret: {}", st.0);
    // Fresh layers, never seen before (no replay entry), sealed now to the expired subkey.
    net.inject(&final_to(&first, &a, "late final"));
    net.inject(&forward_to(&first, &a, &b, &b_subkey, "late forward"));
    net.round_later("a.test", expired);
    let st = net.status("a.test");
    assert_eq!(st.get("drop.expired-key"), 2, "layers to the expired subkey: {}", st.0);
    assert_eq!(
        (st.get("intake.final"), st.get("intake.forwarded"), st.get("drop.unknown-key"), st.get("drop.replay")),
        (1, 1, 0, 0),
        "{}",
        st.0
    );
    // Only the control messages went anywhere.
    let delivered = net.delivered("bob@rcpt.test");
    assert_eq!(delivered.len(), 1);
    assert!(String::from_utf8_lossy(&delivered[0]).contains("control final"));
    assert_eq!(net.delivered("mixtasy@b.test").len(), 1, "one forward (the control) reached b.test");
}

// ---------------------------------------------------------------------------------------
// File modes.

/// Runs `cmd` with umask 022 (a usual login umask), so that only the binary's own care
/// keeps its files private.
fn with_umask_022(mut cmd: Command) -> Command {
    // SAFETY: umask(2) is async-signal-safe and touches only the child's own mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    cmd
}

/// Every directory under `root` (itself included) that is not exactly 0700 and every file
/// that is not exactly 0600, with its mode; anything else (symlinks, sockets) too.
fn loose_modes(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mode = m.permissions().mode() & 0o7777;
        if m.is_dir() {
            if mode != 0o700 {
                out.push((p.clone(), format!("directory {mode:04o}")));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.is_file() {
            if mode != 0o600 {
                out.push((p, format!("file {mode:04o}")));
            }
        } else {
            out.push((p, format!("not a file or directory ({:?}), mode {mode:04o}", m.file_type())));
        }
    }
    out
}

/// Writes a mail into a Maildir's new/ as an MTA's local delivery does (0600).
fn deliver_0600(maildir: &Path, name: &str, mail: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(maildir.join("new").join(name))
        .unwrap();
    f.write_all(mail).unwrap();
}

#[test]
fn nothing_a_node_or_sender_writes_is_group_or_world_accessible() {
    let t0 = unix_now();
    let mut net = Net::new(t0);
    let home = net.home("a.test");
    // The first loose mode seen for each path, with the step that left it.
    let mut found: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
    let mut check = |step: &str, dir: &Path| {
        for (p, what) in loose_modes(dir) {
            found.entry(p).or_insert_with(|| (step.to_string(), what));
        }
    };
    let node_at = {
        let home = home.clone();
        move |t: u64, args: &[&str]| {
            let mut c = mixtasyd();
            c.arg("--home").arg(&home).args(["--now", &t.to_string()]).args(args);
            with_umask_022(c)
        }
    };

    ok(node_at(t0, &["init", "--address", "mixtasy@a.test", "--modes", "middleman,exitpublic"]), b"");
    net.nodes.push("a.test".into());
    check("init", &home);
    net.add_node("b.test", "middleman,exitpublic");
    ok(node_at(t0, &["directory", "import"]), &net.export("b.test", false));
    check("directory import", &home);
    ok(node_at(t0, &["status"]), b"");
    check("status before the first round", &home);

    // Traffic: forwards, finals, a held part, operator mail, garbage; dummies; a pool that
    // keeps some. The transport delivers outside the home.
    net.configure("a.test", "transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    for (k, v) in
        [("min_pool", "1"), ("threshold", "1"), ("rate", "0.5"), ("dummy_time_p", "0.5"), ("dummy_flush_p", "0.5")]
    {
        net.configure("a.test", k, v);
    }
    let maildir = home.join("Maildir");
    let single = Kind::Singlepart;
    for i in 0..5 {
        deliver_0600(
            &maildir,
            &format!("fwd{i}"),
            &net.wrap_final(single, &original(&format!("fwd {i}")), &["a.test", "b.test"]),
        );
    }
    for i in 0..3 {
        deliver_0600(
            &maildir,
            &format!("fin{i}"),
            &net.wrap_final(single, &original(&format!("fin {i}")), &["a.test"]),
        );
    }
    deliver_0600(
        &maildir,
        "part",
        &net.wrap_final(Kind::Multipart { part: 1, total: 2 }, b"To: bob@rcpt.test\r\n\r\nhalf", &["a.test"]),
    );
    deliver_0600(&maildir, "op", b"From: reader@example.test\nTo: mixtasy@a.test\nSubject: hello\n\nhi\n");
    deliver_0600(&maildir, "bounce", b"Return-Path: <>\nFrom: MAILER-DAEMON@a.test\nTo: mixtasy@a.test\nSubject: Undelivered Mail Returned to Sender\n\nsorry\n");
    deliver_0600(&maildir, "garbage", &[0xffu8; 500]);
    for _ in 0..2 {
        ok(node_at(t0, &["--round"]), b"");
    }
    let st = net.status("a.test");
    assert_eq!(
        (st.get("intake.forwarded"), st.get("intake.final"), st.get("intake.part"), st.get("intake.operator")),
        (5, 3, 1, 3),
        "{}",
        st.0
    );
    assert!(st.get("pool") > 0 && st.get("held_parts") == 1, "state holds pool and parts: {}", st.0);
    check("rounds with traffic", &home);

    ok(node_at(t0 + 26 * HOUR, &["key", "rotate"]), b"");
    check("key rotate", &home);
    ok(node_at(t0 + 49 * HOUR, &["--round"]), b"");
    let st = net.status("a.test");
    assert_eq!(st.get("key.destroyed"), 1, "{}", st.0);
    check("a round destroying an expired secret", &home);
    ok(node_at(t0 + 49 * HOUR, &["key", "export", "--secret"]), b"");
    check("key export --secret", &home);
    let probe = net.wrap_final(single, &original("probe"), &["a.test"]);
    let _ = run(node_at(t0, &["peel"]), &probe);
    ok(node_at(t0 + 49 * HOUR, &["status", "--json"]), b"");
    check("peel and status", &home);

    // The sender: its home, and the wire messages it writes.
    let client = net.client_home();
    let client_at = |args: &[&str]| {
        let mut c = mixtasy();
        c.arg("--home").arg(&client).args(["--now", &t0.to_string()]).args(args);
        with_umask_022(c)
    };
    let mut keys = net.export("b.test", false);
    for f in ["c.test", "d.test"] {
        net.add_node(f, "middleman,exitpublic");
        keys.extend(net.export(f, false));
    }
    keys.extend(net.export("a.test", false));
    ok(client_at(&["directory", "import"]), &keys);
    check("mixtasy directory import", &client);
    let out = net.dir.path().join("outbox");
    ok(client_at(&["create", "--out", out.to_str().unwrap()]), &original("sent"));
    check("mixtasy create", &client);
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if mode != 0o600 {
            found.entry(p).or_insert_with(|| ("mixtasy create (wire message)".into(), format!("file {mode:04o}")));
        }
    }

    let report: Vec<String> =
        found.iter().map(|(p, (step, what))| format!("{} is {what}, after {step}", p.display())).collect();
    assert!(
        report.is_empty(),
        "group- or world-accessible, umask 022 (files must be 0600, directories 0700):\n{}",
        report.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Logs.

/// A stand-in HKP keyserver on loopback: accepts every upload, has no key to give
/// (404, as SKS answers a search without result). Stops when dropped.
struct StubKeyserver {
    url: String,
    stop: Arc<AtomicBool>,
    uploads: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StubKeyserver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("hkp://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let uploads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, u) = (stop.clone(), uploads.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let req = read_request(&mut conn);
                        let answer: &[u8] = if req.starts_with(b"POST /pks/add ") {
                            u.fetch_add(1, Ordering::Relaxed);
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        } else {
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        };
                        let _ = conn.write_all(answer);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("stub keyserver: {e}"),
                }
            }
        });
        StubKeyserver { url, stop, uploads, thread: Some(thread) }
    }
}

/// Reads one HTTP request: headers, then as many body bytes as Content-Length says.
fn read_request(conn: &mut std::net::TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return req;
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if req.len() >= end + 4 + len {
                return req;
            }
        }
    }
}

impl Drop for StubKeyserver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every `local@domain` in `text`.
fn addresses_in(text: &str) -> BTreeSet<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices('@') {
        let local: String =
            text[..i].chars().rev().take_while(|c| ok(*c)).collect::<Vec<_>>().into_iter().rev().collect();
        let domain: String =
            text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || ".-".contains(*c)).collect();
        let domain = domain.trim_end_matches('.');
        if !local.is_empty() && domain.contains('.') {
            out.insert(format!("{local}@{domain}").to_ascii_lowercase());
        }
    }
    out
}

/// The values of every `name:` header (case-insensitive) in the header block of `mail`.
fn header_values(mail: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(mail);
    let head = text.split("\r\n\r\n").next().unwrap().split("\n\n").next().unwrap().to_string();
    head.lines()
        .filter_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
        .collect()
}

/// Whether `number` occurs in `text` as a whole number (no digit right before or after).
fn has_number(text: &str, number: usize) -> bool {
    let n = number.to_string();
    text.match_indices(&n).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_some_and(|c| c.is_ascii_digit());
        let after = text[i + n.len()..].chars().next().is_some_and(|c| c.is_ascii_digit());
        !before && !after
    })
}

#[test]
fn logs_name_no_address_id_hash_or_size() {
    use base64_simd::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let keyserver = StubKeyserver::start();
    let mut net = Net::new(unix_now());
    let names: Vec<String> = (1..=5).map(|i| format!("mix{i}.test")).collect();
    for n in &names {
        net.add_lab_node(n, "middleman,exitpublic");
        net.configure(n, "dummy_time_p", "0.3");
        net.configure(n, "dummy_flush_p", "0.3");
        net.configure(n, "keyserver", &format!("{:?}", keyserver.url));
    }
    net.introduce_nodes();
    net.publish_all_to_client();
    let modes = Modes::parse("middleman,exitpublic").unwrap();
    let nodes: std::collections::HashMap<MixAddress, Node> = names
        .iter()
        .map(|n| {
            let cert = Cert::from_bytes(&net.export(n, true)).unwrap();
            let address = MixAddress::for_fqdn(n).unwrap();
            (
                address.clone(),
                Node { address, modes, ring: KeyRing::from_cert(&cert, Duration::from_secs(3600)).unwrap() },
            )
        })
        .collect();
    net.capture_logs();

    // Originals: distinct addresses, ids, subjects and sizes; one multipart; one with Cc and
    // Bcc; most without a Message-ID, so the exits stamp one.
    let mut rng = rand::rng();
    let mut originals: Vec<Vec<u8>> = Vec::new();
    let token = |rng: &mut rand::rngs::ThreadRng| format!("{:016x}", rand::Rng::random::<u64>(rng));
    let t = token(&mut rng);
    originals.push(format!("From: Alice <alice.{t}@sender.test>\r\nTo: Bob <bob.{t}@rcpt.test>\r\nCc: carol.{t}@rcpt.test\r\nBcc: dave.{t}@hidden.test\r\nReply-To: alice.replies@sender.test\r\nMessage-ID: <orig.{t}@sender.test>\r\nSubject: subject-{t}\r\n\r\nbody-{t}\r\n{}", "x".repeat(11_717)).into_bytes());
    let t = token(&mut rng);
    let mut multi =
        format!("From: erin.{t}@sender.test\r\nTo: frank.{t}@rcpt.test\r\nSubject: subject-{t}\r\n\r\nbody-{t}\r\n")
            .into_bytes();
    while multi.len() < 60_000 + 777 {
        multi.extend_from_slice(format!("line {} of body-{t}\r\n", multi.len()).as_bytes());
    }
    multi.truncate(60_777);
    originals.push(multi);
    // Sizes of five digits and more: smaller numbers occur in any log (years, counts).
    for k in 0..6 {
        let t = token(&mut rng);
        let mut m = format!("From: sender{k}.{t}@sender.test\r\nTo: rcpt{k}.{t}@rcpt{k}.test\r\nSubject: subject-{t}\r\n\r\nbody-{t}\r\n").into_bytes();
        m.resize(10_300 + 1_211 * k, b'.');
        m.extend_from_slice(b"\r\n");
        originals.push(m);
    }

    // Create (logged), learn each wire message's Mixtasy-ID and every hop's Verification
    // hash by peeling it in memory, and inject it.
    let mut wires: Vec<Vec<u8>> = Vec::new();
    let mut mixtasy_ids: BTreeSet<String> = BTreeSet::new();
    let mut hashes: BTreeSet<[u8; 20]> = BTreeSet::new();
    for o in &originals {
        // The sender's tool would strip Bcc (mixtasy(1)); kept so that the exit drops it.
        for w in net.create(o, &["--keep-header", "Bcc"]) {
            let (mut to, mut mail) = (MixAddress::parse(&format!("mixtasy@{}", wire_to(&w))).unwrap(), w.clone());
            loop {
                let out = peel::peel(&mail, &nodes[&to], net.time(), &mut rng).unwrap();
                hashes.insert(out.hash);
                match out.peeled {
                    Peeled::Forward { to: t, mail: m } => (to, mail) = (t, m),
                    Peeled::Final { id, .. } => {
                        mixtasy_ids.insert(id);
                        break;
                    }
                }
            }
            net.inject(&w);
            wires.push(w);
        }
    }
    assert!(wires.len() > originals.len(), "the multipart original made several wire messages");

    // Rounds until every original is delivered to every recipient, status after each.
    let recipients: BTreeSet<String> = originals
        .iter()
        .flat_map(|o| header_values(o, "To").into_iter().chain(header_values(o, "Cc")))
        .flat_map(|v| addresses_in(&v))
        .collect();
    let delivered_all = |net: &Net| recipients.iter().all(|r| !net.delivered(r).is_empty());
    let mut rounds = 0;
    while !delivered_all(&net) {
        rounds += 1;
        assert!(rounds <= 20, "not delivered after 20 rounds of every node");
        for n in &names {
            net.round(n);
            net.status(n);
        }
    }
    // Rotation and publication, then more rounds and both forms of status.
    let later = 26 * HOUR;
    for n in &names {
        let mut c = mixtasyd();
        c.arg("--home").arg(net.home(n)).args(["--now", &(net.now + later).to_string(), "key", "rotate"]);
        net.ok_logged(c, Some(n), b"");
        let mut c = mixtasyd();
        c.arg("--home").arg(net.home(n)).args(["--now", &(net.now + later).to_string(), "key", "publish"]);
        net.ok_logged(c, Some(n), b"");
        net.round_later(n, later);
        let mut c = net.node_cmd(n);
        c.arg("status");
        net.ok_logged(c, Some(n), b"");
        net.status(n);
    }

    // The needles: everything about the messages.
    let mut delivered: Vec<Vec<u8>> = Vec::new();
    for r in &recipients {
        delivered.extend(net.delivered(r));
    }
    let mut texts: Vec<String> = Vec::new(); // addresses, ids, content: matched case-insensitively
    let mut exact: Vec<String> = Vec::new(); // hash encodings: matched as they are
    let mut sizes: BTreeSet<usize> = BTreeSet::new();
    for m in originals.iter().chain(&delivered) {
        let text = String::from_utf8_lossy(m).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap().split("\n\n").next().unwrap();
        texts.extend(addresses_in(head));
        for v in header_values(m, "Message-ID") {
            texts.push(v.trim_matches(['<', '>']).to_string());
        }
        for v in header_values(m, "Subject") {
            texts.push(v);
        }
        sizes.insert(m.len());
    }
    for o in &originals {
        let text = String::from_utf8_lossy(o);
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        texts.push(body.lines().next().unwrap().to_string()); // body-<token>
        sizes.insert(text.split("\r\n\r\n").nth(1).unwrap().len());
    }
    for w in &wires {
        sizes.insert(w.len());
        texts.extend(addresses_in(&String::from_utf8_lossy(&w[..w.windows(2).position(|x| x == b"\n\n").unwrap()])));
    }
    for id in &mixtasy_ids {
        let inner = id.trim_matches(['<', '>']);
        texts.push(inner.to_string());
        texts.push(inner.split('@').next().unwrap().to_string());
    }
    for n in &names {
        texts.push(format!("mixtasy@{n}"));
        texts.push(n.clone());
    }
    for d in &delivered {
        for c in header_values(d, "Comments") {
            texts.extend(addresses_in(&c));
        }
    }
    // Every hash the nodes recorded (dummies' included) and every one seen in memory.
    for n in &names {
        let state = mixtasy::batch::state::State::open(&net.home(n).join("state.sqlite")).unwrap();
        let mut q = state.conn().prepare("SELECT hash FROM replay").unwrap();
        for h in q.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            hashes.insert(h.unwrap().try_into().expect("a 20-byte hash"));
        }
    }
    for h in &hashes {
        let x = mixtasy::format::message::hex(h);
        exact.push(x.clone());
        exact.push(x.to_ascii_uppercase());
        exact.push(x[..12].to_string());
        exact.push(x[..12].to_ascii_uppercase());
        for b64 in [
            STANDARD.encode_to_string(h),
            STANDARD_NO_PAD.encode_to_string(h),
            URL_SAFE.encode_to_string(h),
            URL_SAFE_NO_PAD.encode_to_string(h),
        ] {
            exact.push(b64[..16].to_string());
            exact.push(b64);
        }
    }
    texts.retain(|t| t.len() >= 6);
    texts.sort();
    texts.dedup();
    sizes.retain(|s| *s >= 10_000);

    // What was captured, and that the interesting paths ran.
    let logs = net.log.lock().unwrap().clone().expect("capturing");
    let all: String = logs
        .iter()
        .map(|l| format!("{}{}", String::from_utf8_lossy(&l.stdout), String::from_utf8_lossy(&l.stderr)))
        .collect();
    let count = |what: &str| logs.iter().filter(|l| l.what.contains(what)).count();
    assert!(
        count("--round") >= 5 * rounds + 5
            && count("status") > 0
            && count("create") == originals.len()
            && count("key rotate") == 5
            && count("key publish") == 5
    );
    assert!(
        all.contains("mixtasyd: round: took")
            && all.contains("published ")
            && all.contains("rotate: added a subkey")
            && all.contains("mixtasy: wrote"),
        "{all}"
    );
    let totals = |k: &str| names.iter().map(|n| net.status(n).get(k)).sum::<i64>();
    assert!(totals("dummy.pooled") + totals("dummy.sent") > 0, "dummies ran");
    assert!(
        totals("key.published") >= 5
            && totals("directory.fetched") >= 5
            && keyserver.uploads.load(Ordering::Relaxed) >= 10,
        "the keyserver was used"
    );
    assert!(
        totals("exit.assembled") == 1 && totals("drop.recipients") >= 1,
        "the multipart original and the Bcc went through"
    );

    let scan = |l: &Logged| -> Vec<String> {
        let mut leaks = Vec::new();
        for (stream, bytes) in [("stdout", &l.stdout), ("stderr", &l.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            let lower = text.to_ascii_lowercase();
            // A node's status names the node itself (its address and modes come first).
            let own: Vec<String> = match (&l.node, l.what.contains("status")) {
                (Some(n), true) => vec![format!("mixtasy@{n}"), n.clone()],
                _ => Vec::new(),
            };
            let mut hit =
                |what: String| leaks.push(format!("`{}` ({stream}) prints {what}:\n{}", l.what, text.trim_end()));
            for t in &texts {
                let t_lower = t.to_ascii_lowercase();
                if !own.contains(&t_lower) && lower.contains(&t_lower) {
                    hit(format!("`{t}`"));
                }
            }
            for x in &exact {
                if text.contains(x.as_str()) {
                    hit(format!("hash encoding `{x}`"));
                }
            }
            // The keyserver's port is a number of the same order as a wire message's size.
            let text = text.replace(&keyserver.url, "hkp://KEYSERVER");
            for s in &sizes {
                if has_number(&text, *s) {
                    hit(format!("the size {s}"));
                }
            }
        }
        leaks
    };
    // The scan finds what it looks for: one needle of each sort in a made-up log line, and
    // another mix's name in a node's status.
    let planted = format!("mixtasyd: {} {} {}", texts.last().unwrap(), exact.last().unwrap(), sizes.last().unwrap());
    let fake = |what: &str, node: &str, out: &str| Logged {
        what: what.into(),
        node: Some(node.into()),
        stdout: out.as_bytes().to_vec(),
        stderr: Vec::new(),
    };
    let found = scan(&fake("--round", "mix1.test", &planted)).join("\n");
    for sort in [format!("prints `{}`", texts.last().unwrap()), "prints hash encoding".into(), "prints the size".into()]
    {
        assert!(found.contains(&sort), "the scan misses {sort} in {planted}: {found}");
    }
    assert!(!scan(&fake("status", "mix1.test", "mix mixtasy@mix1.test (middleman)\nnext mixtasy@mix2.test")).is_empty());
    assert!(scan(&fake("status", "mix1.test", "mix mixtasy@mix1.test (middleman)")).is_empty());
    let mut leaks: Vec<String> = logs.iter().flat_map(scan).collect();
    leaks.sort();
    leaks.dedup();
    eprintln!(
        "logs: {} invocations captured ({} bytes) over {rounds} delivery rounds; {} text needles, {} hash encodings of {} hashes, {} sizes; {} leaks",
        logs.len(),
        all.len(),
        texts.len(),
        exact.len(),
        hashes.len(),
        sizes.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "the logs carry what they must not:\n{}", leaks.join("\n---\n"));
}
