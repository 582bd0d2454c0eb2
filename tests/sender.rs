//! The sender's side (issue 12) through the real binaries: `mixtasy send` as the sendmail
//! of the real NeoMutt, sysexits, copies over independent paths delivered once (a first mix
//! dead too), PGP/MIME read by stock GnuPG, what GnuPG writes (partial-length literals, its
//! armored-file label, [SC] mix keys), and a Maildir that does not exist yet.

use std::path::Path;
use std::process::Command;

use crate::round::{body_of, lab, rounds_until};
use crate::util::*;

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
    c.args(["-n", "-F"]).arg(&muttrc).args([
        "-s",
        "sent from NeoMutt",
        "-c",
        "carol@rcpt.test",
        "-b",
        "dave@rcpt.test",
        "--",
        "bob@rcpt.test",
    ]);
    let desc = format!("{c:?}");
    if Command::new("neomutt").arg("-v").stdin(std::process::Stdio::null()).output().is_err() {
        panic!("NeoMutt is not installed: this test runs the real one; run scripts/install-deps --test");
    }
    let out = run(c, b"Hello Bob,\nthis went through five mixes.\n");
    assert!(out.status.success(), "NeoMutt failed\n{}", describe(&Command::new(desc), &out));
    let log = std::fs::read_to_string(net.dir.path().join("lab-sendmail.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "the original and dave's copy, one wire message each: {log}");
    rounds_until(&net, 20, || {
        ["bob", "carol", "dave"].iter().all(|u| !net.delivered(&format!("{u}@rcpt.test")).is_empty())
    });
    for n in &net.nodes {
        net.round(n);
    }
    let (bob, carol, dave) =
        (net.delivered("bob@rcpt.test"), net.delivered("carol@rcpt.test"), net.delivered("dave@rcpt.test"));
    assert_eq!((bob.len(), carol.len(), dave.len()), (1, 1, 1));
    assert_eq!(bob, carol, "To and Cc get one and the same mail");
    for (mail, to) in [(&bob[0], "bob@rcpt.test"), (&dave[0], "dave@rcpt.test")] {
        let header = header_of(mail);
        assert!(header.lines().any(|l| l.starts_with("To: ") && l.contains(to)), "{header}");
        assert!(header.contains("Subject: sent from NeoMutt"), "{header}");
        for leak in ["alice", "home.example", "NeoMutt/"] {
            assert!(
                !String::from_utf8_lossy(mail).to_lowercase().contains(&leak.to_lowercase()),
                "{leak} delivered:\n{header}"
            );
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
    let (code, err) = send(&net.client_home(), &["--no-such-option"], b"To: bob@rcpt.test\n\nx\n");
    assert_eq!(code, Some(64), "EX_USAGE for a command line send cannot use: {err}");
    // What a mail program passes is understood; -f and -F change nothing that leaves.
    let (code, err) = send(
        &net.client_home(),
        &["-t", "-i", "-oi", "-oem", "-f", "alice@home.example", "-F", "Alice", "--", "bob@rcpt.test"],
        b"To: bob@rcpt.test\nBcc: erin@rcpt.test\n\nx\n",
    );
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
    // Three copies of a singlepart, every node alive: one delivery, two copies dropped. An
    // adversary on the wire holds the third copy back until the original was delivered.
    let single = text_original("three copies", 500);
    let wires = net.create(&single, &["--copies", "3"]);
    assert_eq!(wires.len(), 3);
    let ends: std::collections::BTreeSet<String> = wires.iter().map(|w| trace(&net, w).pop().unwrap()).collect();
    assert_eq!(ends.len(), 1, "all copies go to one exit");
    for w in &wires[..2] {
        net.inject(w);
    }
    rounds_until(&net, 20, || !net.delivered("bob@rcpt.test").is_empty());
    net.inject(&wires[2]);
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

/// Where `needle` starts in `hay`, if anywhere.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The armored block of a delivered PGP/MIME mail, as a recipient's GnuPG reads it.
fn pgp_block(mail: &[u8]) -> &[u8] {
    let start = find(mail, b"-----BEGIN PGP MESSAGE-----").expect("an armored block");
    let end = find(mail, b"-----END PGP MESSAGE-----").expect("its end") + 25;
    &mail[start..end]
}

#[test]
fn an_encrypted_original_is_read_by_the_recipient_with_gnupg() {
    let net = lab(5);
    let gpg = Gpg::new();
    // Made a day before the lab's clock, which the sender's tool acts at.
    let made = format!("{}!", net.now - 86400);
    gpg.ok(
        &[
            "--faked-system-time",
            &made,
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-generate-key",
            "Bob <bob@rcpt.test>",
            "default",
            "default",
            "never",
        ],
        b"",
    );
    let key = net.dir.path().join("bob.asc");
    std::fs::write(&key, gpg.ok(&["--armor", "--export", "bob@rcpt.test"], b"").stdout).unwrap();
    let inner = b"Content-Type: text/plain; charset=utf-8\n\nMeet at the usual place, 9 o'clock.\n";
    let mut original = b"To: Bob <bob@rcpt.test>\nSubject: the plan\nMIME-Version: 1.0\n".to_vec();
    original.extend_from_slice(inner);
    net.capture_logs();
    for w in net.create(&original, &["--encrypt-to", key.to_str().unwrap()]) {
        net.inject(&w);
    }
    let said: String = net.captured_stderr();
    assert!(said.contains("warning: the body is encrypted but the Subject stays in clear"), "{said}");
    assert!(!said.contains("the plan"), "the warning names no value: {said}");
    rounds_until(&net, 20, || !net.delivered("bob@rcpt.test").is_empty());
    let mail = net.delivered("bob@rcpt.test").remove(0);
    let header = header_of(&mail);
    assert!(
        !String::from_utf8_lossy(&mail).contains("usual place")
            && !String::from_utf8_lossy(&mail).contains("charset=utf-8"),
        "the exit saw the body:\n{}",
        String::from_utf8_lossy(&mail)
    );
    // The exit wraps a PGP/MIME original whole (its two parts stay two) with its footer.
    let parsed = mailparse::parse_mail(&mail).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/mixed", "{header}");
    assert_eq!(parsed.subparts[0].ctype.mimetype, "multipart/encrypted");
    assert_eq!(parsed.subparts[0].ctype.params.get("protocol").map(String::as_str), Some("application/pgp-encrypted"));
    assert_eq!(parsed.subparts[0].subparts.len(), 2, "RFC 3156: exactly two parts");
    assert!(header.contains("Subject: the plan") && header.contains("To: Bob <bob@rcpt.test>"), "{header}");
    assert_eq!(gpg.ok(&["--decrypt"], pgp_block(&mail)).stdout, inner, "Bob's GnuPG gets the original entity");

    // The default key file of the sender's home, and --no-encrypt.
    std::fs::copy(&key, net.client_home().join("encrypt-to.asc")).unwrap();
    let plain = b"To: Bob <bob@rcpt.test>\n\nsecond, by default\n";
    for w in net
        .create(plain, &[])
        .into_iter()
        .chain(net.create(b"To: Bob <bob@rcpt.test>\n\nthird, in clear\n", &["--no-encrypt"]))
    {
        net.inject(&w);
    }
    rounds_until(&net, 20, || net.delivered("bob@rcpt.test").len() == 3);
    let got = net.delivered("bob@rcpt.test");
    let clear: Vec<&Vec<u8>> = got.iter().filter(|m| find(m, b"third, in clear").is_some()).collect();
    assert_eq!(clear.len(), 1, "--no-encrypt sends in clear");
    let second = got.iter().find(|m| {
        find(m, b"second, by default").is_none()
            && find(m, b"third, in clear").is_none()
            && gpg.ok(&["--decrypt"], pgp_block(m)).stdout.ends_with(b"second, by default\n")
    });
    assert!(second.is_some(), "HOME/encrypt-to.asc encrypts by default");

    // A key file that holds no key: EX_CONFIG, nothing sent.
    let mut c = net.client_cmd();
    c.args(["send", "--sendmail", "/bin/false", "--encrypt-to"]).arg(net.dir.path().join("bob.asc-missing"));
    let o = run(c, plain);
    assert_eq!(o.status.code(), Some(78), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn gnupg_partial_length_literal_and_armored_file_are_delivered() {
    use mixtasy::format::message::{self, Kind};
    use rand::RngCore;
    let net = lab(5);
    let literal = std::fs::read(fixture("gnupg-framing/literal-partial.gpg")).unwrap();
    let original = std::fs::read(fixture("gnupg-framing/original.eml")).unwrap();
    assert_eq!(literal[..2], [0xcb, 0xeb], "GnuPG framed it in partial lengths");
    // A final mix message around GnuPG's literal: our header fields, then its packet, then
    // random padding (the headers end where `build_final` puts its own literal header: six
    // bytes, its six-byte body and the two-byte marker follow them in an empty one).
    let mut rng = rand::rng();
    let id = message::new_id(&mut rng);
    let template = message::build_final(&id, Kind::Singlepart, b"", &mut rng);
    let headers_len = mixtasy::format::sizes::INNER - message::capacity(&id, Kind::Singlepart) - 14;
    let line = mixtasy::format::verification::LINE_LEN;
    let mut window = template[line..line + headers_len].to_vec();
    assert!(window.ends_with(b"\r\n\r\n") || window.ends_with(b"\n\n"), "{:?}", String::from_utf8_lossy(&window));
    window.extend_from_slice(&literal);
    let filled = window.len();
    window.resize(mixtasy::format::sizes::INNER, 0);
    rng.fill_bytes(&mut window[filled..]);
    let mut fin = Vec::new();
    mixtasy::format::verification::write_line(&mut fin, &window);
    fin.extend_from_slice(&window);
    let mixes: Vec<mixtasy::mixes::directory::Mix> =
        ["mix1.test", "mix2.test", "mix3.test", "mix4.test"].iter().map(|f| net.mix(f)).collect();
    let refs: Vec<&mixtasy::mixes::directory::Mix> = mixes.iter().collect();
    let wire = mixtasy::sender::create::wrap(fin, &refs, None, net.time(), &mut rng).unwrap().mail;
    // The first mix gets GnuPG's armor: `gpg --enarmor`, label PGP ARMORED FILE, a Comment.
    let gpg = Gpg::new();
    let armored = gpg.ok(&["--enarmor"], &wire_body(&wire)).stdout;
    assert!(
        armored.starts_with(b"-----BEGIN PGP ARMORED FILE-----\nComment: "),
        "{}",
        String::from_utf8_lossy(&armored[..80])
    );
    let mut mail = wire[..find(&wire, b"-----BEGIN PGP MESSAGE-----").unwrap()].to_vec();
    mail.extend_from_slice(&armored);
    net.inject(&mail);
    rounds_until(&net, 20, || !net.delivered("bob@rcpt.test").is_empty());
    let got = net.delivered("bob@rcpt.test");
    let body = &original[find(&original, b"\r\n\r\n").unwrap() + 4..];
    assert!(find(&got[0], body).is_some(), "the original's body byte for byte:\n{}", String::from_utf8_lossy(&got[0]));
    assert!(header_of(&got[0]).contains("Subject: framed by GnuPG"));
    assert_eq!(net.status("mix1.test").get("drop.malformed"), 0);
}

#[test]
fn a_mix_key_made_by_gnupg_with_a_sign_and_certify_primary_is_used() {
    let mut net = Net::new(VECTOR_NOW);
    for i in 1..=3 {
        net.add_node(&format!("mix{i}.test"), "middleman,exitpublic");
    }
    // A node runs on it, restored from GnuPG's secret key export.
    net.add_node_from_key("gpgmix.test", &fixture("gnupg-framing/sc-mix-secret.asc"));
    // The sender's directory takes GnuPG's public key as it is.
    let mut c = net.client_cmd();
    c.args(["directory", "import"]).arg(fixture("gnupg-framing/sc-mix.asc"));
    let out = ok(c, b"");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("refused"), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = net.client_cmd();
    c.args(["directory", "list"]);
    assert!(String::from_utf8_lossy(&ok(c, b"").stdout).contains("mixtasy@gpgmix.test"));
    // But never a primary that may encrypt: a key living for years must not take layers.
    let gpg = Gpg::new();
    let made = format!("{}!", VECTOR_NOW - 3600);
    let uid = "Bad Mix (mixtasy-mode:middleman) <mixtasy@badmix.test>";
    gpg.ok(
        &[
            "--faked-system-time",
            &made,
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-generate-key",
            uid,
            "rsa2048",
            "sign,cert,encr",
            "never",
        ],
        b"",
    );
    let fpr = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys", uid], b"").stdout).unwrap();
    let fpr = fpr.lines().find_map(|l| l.strip_prefix("fpr:")).unwrap().trim_matches(':').to_string();
    gpg.ok(
        &[
            "--faked-system-time",
            &made,
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-add-key",
            &fpr,
            "cv25519",
            "encr",
            "2d",
        ],
        b"",
    );
    let mut c = net.client_cmd();
    c.args(["directory", "import"]);
    let o = run(c, &gpg.ok(&["--armor", "--export", &fpr], b"").stdout);
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("primary key may encrypt"), "{said}");
    let mut c = net.client_cmd();
    c.args(["directory", "list"]);
    assert!(!String::from_utf8_lossy(&ok(c, b"").stdout).contains("badmix"));
    // A message crosses it as its exit, peeled through the binaries.
    let original = b"To: bob@rcpt.test\n\nvia a key GnuPG made\n";
    let wire = net.wrap_final(
        mixtasy::format::message::Kind::Singlepart,
        original,
        &["mix1.test", "mix2.test", "mix3.test", "gpgmix.test"],
    );
    let mut mail = wire;
    for hop in ["mix1.test", "mix2.test", "mix3.test"] {
        mail = net.peel(hop, &mail).unwrap_or_else(|e| panic!("{hop}: {e}")).0;
    }
    assert_eq!(net.peel("gpgmix.test", &mail).unwrap().0, original);
}

#[test]
fn a_missing_maildir_is_created_and_status_says_no_mail_yet() {
    use std::os::unix::fs::PermissionsExt;
    let mut net = Net::new(VECTOR_NOW);
    net.add_lab_node("mix1.test", "middleman,exitpublic");
    // Postfix has not delivered yet; a setting naming a missing parent is still an error.
    net.configure("mix1.test", "maildir", &format!("{:?}", net.dir.path().join("typo/Maildir").display().to_string()));
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let o = run(c, b"");
    assert_eq!(o.status.code(), Some(74), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!net.dir.path().join("typo").exists(), "no tree is made for a wrong setting");
    let md = net.dir.path().join("Maildir-not-yet");
    net.configure("mix1.test", "maildir", &format!("{:?}", md.display().to_string()));
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    assert!(String::from_utf8_lossy(&ok(c, b"").stdout).contains("none received yet"));
    assert!(net.status("mix1.test").0.contains("\"received_mail\":false"));
    net.round("mix1.test");
    for d in [md.clone(), md.join("new"), md.join("cur"), md.join("tmp")] {
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
    }
    assert!(net.status("mix1.test").0.contains("\"received_mail\":false"));
    // The first mail arrives (not mix traffic: the operator's folder).
    std::fs::write(md.join("new/first"), b"To: mixtasy@mix1.test\nSubject: hello\n\nhello operator\n").unwrap();
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert!(st.0.contains("\"received_mail\":true"), "{}", st.0);
    assert_eq!(st.get("intake.operator"), 1);
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    assert!(!String::from_utf8_lossy(&ok(c, b"").stdout).contains("none received yet"));
}

#[test]
fn git_send_email_sends_a_patch_through_the_mixes() {
    let net = lab(5);
    let home = tempfile::tempdir_in(net.dir.path()).unwrap();
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.env("HOME", home.path()).env("GIT_CONFIG_NOSYSTEM", "1").current_dir(home.path());
        c.args(["-c", "user.name=Alice", "-c", "user.email=alice@home.example"]).args(args);
        ok(c, b"")
    };
    git(&["init", "-q", "repo"]);
    git(&["-C", "repo", "commit", "-q", "--allow-empty", "-m", "fix the frobnicator"]);
    git(&["-C", "repo", "format-patch", "-q", "-1", "-o", "../patches"]);
    let patch = std::fs::read_dir(home.path().join("patches")).unwrap().next().unwrap().unwrap().path();
    // --suppress-cc=all: git would Cc the author, naming the sender to the exit.
    let cmd = format!("--sendmail-cmd={}", sendmail_line(&net, ""));
    git(&[
        "send-email",
        &cmd,
        "--suppress-cc=all",
        "--to",
        "bob@rcpt.test",
        "--confirm=never",
        "--quiet",
        patch.to_str().unwrap(),
    ]);
    rounds_until(&net, 20, || !net.delivered("bob@rcpt.test").is_empty());
    let mail = net.delivered("bob@rcpt.test").remove(0);
    assert!(header_of(&mail).contains("Subject: [PATCH] fix the frobnicator"), "{}", header_of(&mail));
    assert!(!String::from_utf8_lossy(&mail).contains("home.example"), "{}", String::from_utf8_lossy(&mail));
}
