//! The sender's side (issue 12) through the real binaries: `mixtasy send` as the sendmail
//! of the real NeoMutt, sysexits, copies over independent paths delivered once (a first mix
//! dead too), PGP/MIME read by stock GnuPG, what GnuPG writes (partial-length literals, its
//! armored-file label, [SC] mix keys), and a Maildir that does not exist yet.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::round::{body_of, lab, rounds_until};
use crate::util::*;

/// A sendmail for the sender that delivers into the lab network as the `maildir:`
/// transport does: the last argument is the mix address, the mail goes to its Maildir.
fn lab_sendmail(net: &Net) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = net.dir.path().join("lab-sendmail");
    let body = format!(
        "#!/bin/sh\nfor a; do rcpt=$a; done\nd={root}/$rcpt\nmkdir -p $d/tmp $d/new $d/cur\n\
         f=sent.$$.$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')\ncat > $d/tmp/$f && mv $d/tmp/$f $d/new/$f\necho \"$@\" >> {log}\n",
        root = net.mail_root().display(),
        log = net.dir.path().join("lab-sendmail.log").display()
    );
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The command line a mail program is given as its sendmail.
fn sendmail_line(net: &Net, extra: &str) -> String {
    format!(
        "{} --home {} --now {} send --sendmail {}{extra}",
        env!("CARGO_BIN_EXE_mixtasy"),
        net.client_home().display(),
        net.now,
        lab_sendmail(net).display()
    )
}

/// The text between a header and a body line, or the body of a mail.
fn header_of(mail: &[u8]) -> String {
    let text = String::from_utf8_lossy(mail);
    text.split("\n\n").next().unwrap().to_string()
}

#[test]
fn neomutt_sends_through_five_mixes_and_a_bcc_gets_its_own_copy() {
    let net = lab(5);
    let muttdir = tempfile::tempdir_in(net.dir.path()).unwrap();
    let muttrc = muttdir.path().join("muttrc");
    // The one line a user adds, plus what keeps a batch run off the user's own files.
    std::fs::write(
        &muttrc,
        format!(
            "set sendmail=\"{}\"\nset from=\"Alice <alice@home.example>\"\nset use_envelope_from=yes\nset hostname=home.example\n\
             set record=\"\"\nset copy=no\nset folder=\"{d}\"\nset tmpdir=\"{d}\"\n",
            sendmail_line(&net, " -oem -oi"),
            d = muttdir.path().display()
        ),
    )
    .unwrap();
    let mut c = Command::new("neomutt");
    c.env("HOME", muttdir.path()).env("TERM", "dumb").env_remove("MAIL");
    c.args(["-n", "-F"]).arg(&muttrc).args(["-s", "sent from NeoMutt", "-c", "carol@rcpt.test", "-b", "dave@rcpt.test", "--", "bob@rcpt.test"]);
    let desc = format!("{c:?}");
    if Command::new("neomutt").arg("-v").stdin(std::process::Stdio::null()).output().is_err() {
        panic!("NeoMutt is not installed: this test runs the real one; run scripts/install-deps --test");
    }
    let out = run(c, b"Hello Bob,\nthis went through five mixes.\n");
    assert!(out.status.success(), "NeoMutt failed\n{}", describe(&Command::new(desc), &out));
    let log = std::fs::read_to_string(net.dir.path().join("lab-sendmail.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "the original and dave's copy, one wire message each: {log}");
    rounds_until(&net, 20, || ["bob", "carol", "dave"].iter().all(|u| !net.delivered(&format!("{u}@rcpt.test")).is_empty()));
    for n in &net.nodes {
        net.round(n);
    }
    let (bob, carol, dave) = (net.delivered("bob@rcpt.test"), net.delivered("carol@rcpt.test"), net.delivered("dave@rcpt.test"));
    assert_eq!((bob.len(), carol.len(), dave.len()), (1, 1, 1));
    assert_eq!(bob, carol, "To and Cc get one and the same mail");
    for (mail, to) in [(&bob[0], "bob@rcpt.test"), (&dave[0], "dave@rcpt.test")] {
        let header = header_of(mail);
        assert!(header.lines().any(|l| l.starts_with("To: ") && l.contains(to)), "{header}");
        assert!(header.contains("Subject: sent from NeoMutt"), "{header}");
        for leak in ["alice", "home.example", "NeoMutt/"] {
            assert!(!String::from_utf8_lossy(mail).to_lowercase().contains(&leak.to_lowercase()), "{leak} delivered:\n{header}");
        }
        assert!(String::from_utf8_lossy(mail).contains("Hello Bob,\nthis went through five mixes.\n"));
    }
    assert!(!String::from_utf8_lossy(&bob[0]).contains("dave"), "the Bcc stays hidden from To and Cc");
    assert!(!header_of(&dave[0]).contains("carol"), "the Bcc copy is addressed to dave alone");
}

#[test]
fn send_exit_codes_follow_sysexits_with_one_line() {
    let net = lab(5);
    let sendmail = lab_sendmail(&net);
    let send = |home: &Path, args: &[&str], mail: &[u8]| {
        let mut c = mixtasy();
        c.arg("--home").arg(home).args(["--now", &net.now.to_string(), "send", "--sendmail"]).arg(&sendmail).args(args);
        let o = run(c, mail);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.code(), err)
    };
    let empty = net.dir.path().join("empty-client");
    let (code, err) = send(&empty, &["-oi", "--", "bob@rcpt.test"], b"Subject: s\n\nx\n");
    assert_eq!(code, Some(78), "EX_CONFIG without mix keys: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("directory fetch"), "{err}");
    let (code, err) = send(&net.client_home(), &["-oi", "-oem"], b"Subject: nobody to send to\n\nx\n");
    assert_eq!(code, Some(65), "EX_DATAERR for an original without a recipient: {err}");
    assert!(err.contains("no To: recipient"), "{err}");
    let (code, err) = send(&net.client_home(), &["--first-mix", "nowhere.test"], b"To: bob@rcpt.test\n\nx\n");
    assert_eq!(code, Some(78), "EX_CONFIG for a first mix not in the directory: {err}");
    // What a mail program passes is understood; -f and -F change nothing that leaves.
    let (code, err) = send(&net.client_home(), &["-t", "-i", "-oi", "-oem", "-f", "alice@home.example", "-F", "Alice", "--", "bob@rcpt.test"], b"To: bob@rcpt.test\nBcc: erin@rcpt.test\n\nx\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("handed 2 wire message(s)"), "-t sends the Bcc field's own copy: {err}");
    assert!(!err.contains("erin") && !err.contains("alice"), "{err}");
}

/// The mixes a wire message crosses, peeled by hand through the binary (peeling by hand
/// changes no state).
fn trace(net: &Net, mail: &[u8]) -> Vec<String> {
    let mut mail = mail.to_vec();
    let mut hops = Vec::new();
    for _ in 0..10 {
        let to = wire_to(&mail);
        hops.push(to.clone());
        let (out, _) = net.peel(&to, &mail).unwrap_or_else(|e| panic!("peeling at {to}: {e}"));
        if !out.starts_with(b"From: mixtasy@") {
            return hops;
        }
        mail = out;
    }
    panic!("no exit within 10 hops");
}

fn text_original(tag: &str, len: usize) -> Vec<u8> {
    let mut m = format!("To: Bob <bob@rcpt.test>\nSubject: {tag}\n\n").into_bytes();
    let mut i = 0;
    while m.len() < len {
        m.extend_from_slice(format!("{tag} line {i}\n").as_bytes());
        i += 1;
    }
    m
}

#[test]
fn copies_are_delivered_once_even_with_a_first_mix_dead() {
    let net = lab(5);
    // Three copies of a singlepart, every node alive: one delivery, two copies dropped.
    let single = text_original("three copies", 500);
    let wires = net.create(&single, &["--copies", "3"]);
    assert_eq!(wires.len(), 3);
    let ends: std::collections::BTreeSet<String> = wires.iter().map(|w| trace(&net, w).pop().unwrap()).collect();
    assert_eq!(ends.len(), 1, "all copies go to one exit");
    for w in &wires {
        net.inject(w);
    }
    rounds_until(&net, 20, || !net.delivered("bob@rcpt.test").is_empty());
    for _ in 0..6 {
        for n in &net.nodes {
            net.round(n);
        }
    }
    let got = net.delivered("bob@rcpt.test");
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(strip_footer(body_of(&got[0])), body_of(&single));
    let exit = ends.iter().next().unwrap();
    let st = net.status(exit);
    assert_eq!(st.get("drop.copy-taken"), 2, "{}", st.0);
    assert_counters_add_up(&st);
    for n in &net.nodes {
        assert_eq!(net.status(n).get("pool"), 0, "every copy went somewhere");
    }

    // Three copies of a two-part original; the first mix of the first copy never runs.
    let multi = text_original("dead first mix", 30 * 1024);
    let (wires, dead) = (0..40)
        .find_map(|_| {
            let wires = net.create(&multi, &["--copies", "3"]);
            assert_eq!(wires.len(), 6, "two parts, three copies each");
            let paths: Vec<Vec<String>> = wires.iter().map(|w| trace(&net, w)).collect();
            let dead = paths[0][0].clone();
            let exit = paths[0].last().unwrap();
            // Usable when the dead mix is not the exit and each part has a copy avoiding it.
            let fine = *exit != dead && paths.chunks(3).all(|copies| copies.iter().any(|p| !p.contains(&dead)));
            fine.then_some((wires, dead))
        })
        .expect("in 40 tries, a first mix whose loss some copy of every part avoids");
    for w in &wires {
        net.inject(w);
    }
    let alive: Vec<&String> = net.nodes.iter().filter(|n| **n != dead).collect();
    let mut delivered = false;
    for _ in 0..20 {
        for n in &alive {
            net.round(n);
        }
        if net.delivered("bob@rcpt.test").len() == 2 {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the multipart original arrived without {dead}");
    for _ in 0..6 {
        for n in &alive {
            net.round(n);
        }
    }
    let got = net.delivered("bob@rcpt.test");
    assert_eq!(got.len(), 2, "the first original once, the multipart once");
    assert!(got.iter().any(|m| strip_footer(body_of(m)) == body_of(&multi)), "the multipart original arrived whole");
}
