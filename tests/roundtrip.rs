//! Whole messages across node homes through the real binaries: the GnuPG-framed vector,
//! singlepart and multipart round trips, and the sizes D2 and D5 fix.

use crate::util::*;

const FIXTURE_FQDNS: [&str; 4] = ["mix1.test", "mix2.test", "mix3.test", "mix4.test"];

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn vector_net() -> Net {
    let mut net = Net::new(VECTOR_NOW);
    for f in FIXTURE_FQDNS {
        net.add_node_from_key(f, &fixture(&format!("gnupg-4hop/keys/mixtasy@{f}.sec.asc")));
    }
    net
}

#[test]
fn gnupg_vector_peels_to_its_original() {
    let net = vector_net();
    let mut mail = std::fs::read(fixture("gnupg-4hop/wire-to-mix1.eml")).unwrap();
    for (i, fqdn) in FIXTURE_FQDNS.iter().enumerate() {
        let (out, _) = net.peel(fqdn, &mail).unwrap_or_else(|e| panic!("hop {} dropped: {e}", i + 1));
        if i < 3 {
            assert_eq!(wire_to(&out), FIXTURE_FQDNS[i + 1]);
            assert_eq!(wire_body(&out).len(), mixtasy::format::sizes::OUTER);
        }
        mail = out;
    }
    assert_eq!(mail, std::fs::read(fixture("gnupg-4hop/original.eml")).unwrap());
}

#[test]
fn gnupg_tampered_vector_is_dropped_for_verification() {
    let net = vector_net();
    let tampered = std::fs::read(fixture("gnupg-4hop/tampered-to-mix1.eml")).unwrap();
    let err = net.peel("mix1.test", &tampered).unwrap_err();
    assert!(err.contains("dropped: verification"), "{err}");
}

/// Four node homes that all run every mode, and a sender that knows them.
fn four_node_net() -> Net {
    let mut net = Net::new(now());
    for f in ["m1.test", "m2.test", "m3.test", "m4.test"] {
        net.add_node(f, "middleman,exitpublic");
    }
    net.publish_all_to_client();
    net
}

/// Follows one wire message hop by hop; returns the exit's output, its stderr, and the
/// number of hops. Checks on the way that every wire body is exactly `OUTER` bytes.
fn deliver(net: &Net, mut mail: Vec<u8>) -> (Vec<u8>, String, usize) {
    for hop in 1..=10 {
        assert_eq!(wire_body(&mail).len(), mixtasy::format::sizes::OUTER, "hop {hop}: wire body size");
        let to = wire_to(&mail);
        let (out, stderr) = net.peel(&to, &mail).unwrap_or_else(|e| panic!("hop {hop} at {to} dropped: {e}"));
        if !out.starts_with(b"From: mixtasy@") {
            return (out, stderr, hop);
        }
        mail = out;
    }
    panic!("message did not reach an exit in 10 hops");
}

fn original(body_len: usize) -> Vec<u8> {
    let mut m = b"To: Bob <bob@rcpt.test>\r\nSubject: round trip\r\n\r\n".to_vec();
    let mut i = 0u32;
    while m.len() < body_len {
        m.extend_from_slice(format!("line {i} of a message that must arrive byte for byte\r\n").as_bytes());
        i += 1;
    }
    m
}

#[test]
fn four_hop_singlepart_round_trip() {
    let net = four_node_net();
    let orig = original(3000);
    let wires = net.create(&orig, &[]);
    assert_eq!(wires.len(), 1);
    let (out, _, hops) = deliver(&net, wires[0].clone());
    assert_eq!(hops, 4);
    assert_eq!(out, orig);
}

#[test]
fn first_mix_is_first_and_more_hops_work() {
    let net = four_node_net();
    let orig = original(500);
    let wires = net.create(&orig, &["--first-mix", "m3.test", "--hops", "6"]);
    assert_eq!(wire_to(&wires[0]), "m3.test");
    let (out, _, hops) = deliver(&net, wires[0].clone());
    assert_eq!((hops, out), (6, orig));
}

#[test]
fn four_hop_multipart_100k_round_trip() {
    let net = four_node_net();
    let orig = original(100 * 1024);
    let wires = net.create(&orig, &[]);
    assert!(wires.len() >= 5, "100 KB needs several parts, got {}", wires.len());
    let mut parts: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    for w in wires {
        let (payload, stderr, hops) = deliver(&net, w);
        assert_eq!(hops, 4);
        let (i, n) = stderr
            .split("multipart part ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.split_once('/'))
            .unwrap_or_else(|| panic!("no part line in {stderr}"));
        parts.push((i.parse().unwrap(), n.parse().unwrap(), payload));
    }
    let n = parts[0].1;
    assert!(parts.iter().all(|p| p.1 == n) && parts.len() as u32 == n);
    parts.sort_by_key(|p| p.0);
    let joined: Vec<u8> = parts.into_iter().flat_map(|p| p.2).collect();
    assert_eq!(joined, orig);
}

#[test]
fn wire_messages_of_different_originals_have_one_size() {
    let net = four_node_net();
    let small = net.create(&original(10), &[]);
    let large = net.create(&original(15000), &[]);
    assert_eq!(wire_body(&small[0]).len(), mixtasy::format::sizes::OUTER);
    assert_eq!(wire_body(&large[0]).len(), mixtasy::format::sizes::OUTER);
    assert_eq!(small[0].len(), large[0].len(), "whole wire mails differ in size");
}

#[test]
fn create_errors_write_nothing() {
    let net = four_node_net();
    let out = net.dir.path().join("out");
    // No To: header.
    let mut c = net.client_cmd();
    c.arg("create").arg("--out").arg(&out);
    let o = run(c, b"Subject: no recipient\r\n\r\nbody\r\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no To: recipient"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists());
    // A directory that cannot make a valid path: one mix only.
    let mut lonely = Net::new(now());
    lonely.add_node("solo.test", "middleman,exitpublic");
    lonely.publish_all_to_client();
    let mut c = lonely.client_cmd();
    c.arg("create").arg("--out").arg(&out);
    let o = run(c, &original(100));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("too few middleman"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists());
    // Larger than the maximum.
    let mut c = net.client_cmd();
    c.arg("create").arg("--out").arg(&out).args(["--max-size", "1000"]);
    let o = run(c, &original(5000));
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}

/// A sendmail that records its arguments and input, one numbered file pair per call, and
/// fails with status 75 on call number `fail_at` (0: never).
fn recording_sendmail(dir: &std::path::Path, fail_at: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("sendmail");
    let body = format!(
        "#!/bin/sh\nd={d}\nn=$(($(ls $d/*.args 2>/dev/null | wc -l) + 1))\n[ $n -eq {fail_at} ] && exit 75\necho \"$@\" > $d/$n.args\ncat > $d/$n.mail\n",
        d = dir.display()
    );
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p
}

#[test]
fn send_hands_each_wire_message_to_sendmail_for_its_first_mix() {
    let net = four_node_net();
    let rec = tempfile::tempdir_in(net.dir.path()).unwrap();
    let sendmail = recording_sendmail(rec.path(), 0);
    let orig = original(40 * 1024);
    let mut c = net.client_cmd();
    c.arg("send").arg("--sendmail").arg(&sendmail);
    let out = ok(c, &orig);
    let n = std::fs::read_dir(rec.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "args"))
        .count();
    assert!(n >= 2, "40 KB is multipart; {n} sendmail call(s)");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("handed {n} wire message(s)")));
    let mut joined = Vec::new();
    let mut parts = Vec::new();
    for i in 1..=n {
        let args = std::fs::read_to_string(rec.path().join(format!("{i}.args"))).unwrap();
        let mail = std::fs::read(rec.path().join(format!("{i}.mail"))).unwrap();
        // No -f: the sender's own MTA names the envelope sender.
        assert_eq!(args.trim_end(), format!("-i -- mixtasy@{}", wire_to(&mail)));
        let (payload, stderr, hops) = deliver(&net, mail);
        assert_eq!(hops, 4);
        let part: u32 =
            stderr.split("multipart part ").nth(1).and_then(|s| s.split('/').next()).unwrap().parse().unwrap();
        parts.push((part, payload));
    }
    parts.sort_by_key(|p| p.0);
    parts.into_iter().for_each(|p| joined.extend(p.1));
    assert_eq!(joined, orig);
}

#[test]
fn send_stops_at_a_failing_sendmail_and_says_how_far_it_got() {
    let net = four_node_net();
    let rec = tempfile::tempdir_in(net.dir.path()).unwrap();
    let sendmail = recording_sendmail(rec.path(), 2);
    let mut c = net.client_cmd();
    c.arg("send").arg("--sendmail").arg(&sendmail);
    let o = run(c, &original(40 * 1024));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "EX_TEMPFAIL, as sysexits: {err}");
    assert!(err.contains("status 75") && err.contains("1 of ") && err.contains("send the original again"), "{err}");
    assert!(
        !rec.path().join("2.args").exists() && !rec.path().join("3.args").exists(),
        "nothing handed over after the failure"
    );
    // A missing sendmail: nothing handed over, a clear line.
    let mut c = net.client_cmd();
    c.arg("send").arg("--sendmail").arg(rec.path().join("no-such-sendmail"));
    let o = run(c, &original(100));
    assert_eq!(o.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("could not be started: 0 of 1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
