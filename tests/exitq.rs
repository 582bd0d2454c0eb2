//! The exit queue through the real binaries (issue 11, sections 3 and 6): one bad recipient
//! holds back nobody; the exit queue, held parts and `.operator` are capped; bounces of the
//! exit's own deliveries are destroyed; and nothing of a delivered original's plaintext is
//! left in any file of the node's home one round later. Attacked as a sender who names
//! recipients that fail, floods the exit, and as whoever reads the exit's disk afterwards.

use std::collections::HashSet;

use mixtasy::format::message::Kind;

use crate::util::*;

use crate::abuse::{exit_net, EXIT};

/// Makes the maildir transport fail for `address` alone (a temporary failure, as a full
/// or unreachable mailbox is): a plain file stands where its Maildir would be made.
fn jam(net: &Net, address: &str) {
    std::fs::create_dir_all(net.mail_root()).unwrap();
    std::fs::write(net.mailbox(address), b"in the way").unwrap();
}

fn unjam(net: &Net, address: &str) {
    std::fs::remove_file(net.mailbox(address)).unwrap();
}

/// Sends an original of any size to the exit alone (in parts if it is large).
fn final_to(net: &Net, original: &[u8]) {
    for w in net.wrap_original(original, &[EXIT]) {
        net.inject(&w);
    }
}

#[test]
fn one_bad_recipient_holds_back_nobody() {
    let net = exit_net();
    net.configure(EXIT, "exit_giveup", "\"1h\"");
    jam(&net, "stuck@rcpt.test");
    final_to(&net, b"To: x/y@rcpt.test, stuck@rcpt.test, good.one@rcpt.test\nSubject: s\n\nfor everyone\n");
    net.round(EXIT);
    // The good recipient has it in the first delivery round; the address no transport can
    // take is refused at once; the failing one waits.
    assert_eq!(net.delivered("good.one@rcpt.test").len(), 1);
    let st = net.status(EXIT);
    assert_eq!((st.get("exit_queue"), st.get("exit.deferred"), st.get("exit.delivered")), (1, 1, 0), "{}", st.0);
    // Retried for that recipient alone: the good one gets no second copy.
    net.round_later(EXIT, 600);
    assert_eq!(net.delivered("good.one@rcpt.test").len(), 1, "a retry sends only to who is still waiting");
    assert_eq!(net.status(EXIT).get("exit.deferred"), 2);
    // Past exit_giveup the failing recipient is given up, counted; the original leaves the
    // queue once, as delivered (someone got it).
    net.round_later(EXIT, 7200);
    let st = net.status(EXIT);
    assert_eq!(
        (
            st.get("exit_queue"),
            st.get("exit.delivered"),
            st.get("drop.recipients-gave-up"),
            st.get("drop.recipients-refused"),
            st.get("drop.exit-gave-up")
        ),
        (0, 1, 1, 1, 0),
        "{}",
        st.0
    );
    assert_eq!(net.delivered("good.one@rcpt.test").len(), 1);
    assert_eq!(st.get("exit.deferred"), 2, "given up, not tried again");
    assert_counters_add_up(&st);
    // Nothing of it stays behind in the state.
    assert_eq!(per_recipient_rows(&net), 0);
}

/// Rows of the per-recipient state, read by a test-side connection.
fn per_recipient_rows(net: &Net) -> i64 {
    let c = rusqlite::Connection::open(net.home(EXIT).join("state.sqlite")).unwrap();
    c.query_row("SELECT count(*) FROM exit_rcpt", [], |r| r.get(0)).unwrap()
}

/// A late recipient gets the very bytes the others got, days later (Date, Message-ID and
/// the wrapping boundary fixed), and when nobody can be reached the original is given up
/// whole, counted once.
#[test]
fn a_retried_recipient_gets_the_same_bytes() {
    let net = exit_net();
    jam(&net, "late@rcpt.test");
    // Base64 content is wrapped into a multipart/mixed with the footer: its boundary too
    // must be the same on every attempt.
    final_to(&net, b"To: early@rcpt.test\nCc: late@rcpt.test\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n");
    net.round(EXIT);
    assert_eq!(net.delivered("early@rcpt.test").len(), 1);
    net.round_later(EXIT, 3 * 3600);
    unjam(&net, "late@rcpt.test");
    net.round_later(EXIT, 20 * 3600);
    let (early, late) = (net.delivered("early@rcpt.test"), net.delivered("late@rcpt.test"));
    assert_eq!((early.len(), late.len()), (1, 1));
    assert!(
        early[0] == late[0],
        "byte-identical:\n{}\n---\n{}",
        String::from_utf8_lossy(&early[0]),
        String::from_utf8_lossy(&late[0])
    );
    let st = net.status(EXIT);
    assert_eq!((st.get("exit_queue"), st.get("exit.delivered"), st.get("exit.deferred")), (0, 1, 2), "{}", st.0);

    // Nobody reachable: retried, then given up whole.
    net.configure(EXIT, "exit_giveup", "\"1h\"");
    jam(&net, "a@gone.test");
    jam(&net, "b@gone.test");
    final_to(&net, b"To: a@gone.test, b@gone.test\n\nnobody\n");
    net.round_later(EXIT, 20 * 3600 + 60);
    net.round_later(EXIT, 20 * 3600 + 7300);
    let st = net.status(EXIT);
    assert_eq!(
        (st.get("exit_queue"), st.get("drop.exit-gave-up"), st.get("drop.recipients-gave-up")),
        (0, 1, 2),
        "{}",
        st.0
    );
    assert_counters_add_up(&st);
}

/// Every cap holds, the oldest going first, counted.
#[test]
fn the_exit_queue_held_parts_and_operator_mail_are_capped() {
    let net = exit_net();
    // Exit queue: a transport down for everyone, four originals drawn over two rounds.
    net.configure(EXIT, "max_exit_queue", "2");
    net.configure(EXIT, "transport", "\"maildir:/proc/no-such-mail-root\"");
    for i in 0..2 {
        final_to(&net, format!("To: old{i}@rcpt.test\n\nold\n").as_bytes());
    }
    net.round(EXIT);
    for i in 0..2 {
        final_to(&net, format!("To: new{i}@rcpt.test\n\nnew\n").as_bytes());
    }
    net.round_later(EXIT, 600);
    let st = net.status(EXIT);
    assert_eq!((st.get("exit_queue"), st.get("drop.exit-queue-full")), (2, 2), "{}", st.0);
    net.configure(EXIT, "transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    net.round_later(EXIT, 1200);
    for i in 0..2 {
        assert!(net.delivered(&format!("old{i}@rcpt.test")).is_empty(), "the oldest went");
        assert_eq!(net.delivered(&format!("new{i}@rcpt.test")).len(), 1, "the newest stayed");
    }

    // Held parts: three sets of which one part each arrived, in three rounds.
    net.configure(EXIT, "max_held_parts", "2");
    for i in 0..3 {
        net.inject(&net.wrap_final(
            Kind::Multipart { part: 1, total: 2 },
            format!("part of set {i}").as_bytes(),
            &[EXIT],
        ));
        net.round_later(EXIT, 1800 + i * 60);
    }
    let st = net.status(EXIT);
    assert_eq!((st.get("held_parts"), st.get("drop.parts-over-cap")), (2, 1), "{}", st.0);

    // .operator: five mails over the cap of three; the two oldest go.
    net.configure(EXIT, "max_operator", "3");
    let inbox = net.mailbox(&format!("mixtasy@{EXIT}")).join("new");
    for i in 0..5u64 {
        let p = inbox.join(format!("operator.{i}"));
        std::fs::write(&p, format!("From: someone@else.test\nSubject: hello {i}\n\nmail {i}\n")).unwrap();
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(1000 - i * 100);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
    }
    net.round_later(EXIT, 3600);
    let st = net.status(EXIT);
    assert_eq!(
        (st.get("operator_mail"), st.get("intake.operator"), st.get("operator.over-cap")),
        (3, 5, 2),
        "{}",
        st.0
    );
    let kept: HashSet<String> = std::fs::read_dir(net.mailbox(&format!("mixtasy@{EXIT}")).join(".operator/new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["operator.2", "operator.3", "operator.4"].map(String::from).into());
    assert_counters_add_up(&st);
}

/// The delivered mail's Message-ID.
fn message_id(mail: &[u8]) -> String {
    String::from_utf8_lossy(mail)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("a Message-ID")
        .to_string()
}

/// A DSN as Postfix writes it, quoting the bounced mail whole (message/rfc822).
fn dsn(quoted: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@{EXIT} (Mail Delivery System)\nTo: mixtasy@{EXIT}\nSubject: Undelivered Mail Returned to Sender\n\
         MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\n\n\
         I'm sorry to have to inform you that your message could not be delivered.\n\n--B\nContent-Type: message/delivery-status\n\n\
         Final-Recipient: rfc822; gone@rcpt.test\nAction: failed\nStatus: 5.1.1\n\n--B\nContent-Type: message/rfc822\n\n"
    )
    .into_bytes();
    m.extend_from_slice(quoted);
    m.extend_from_slice(b"\n--B--\n");
    m
}

/// Bounces quote plaintext originals: the exit destroys those of its own deliveries (known
/// by the Message-IDs it gave them, kept hashed for a week), and still keeps every other
/// mail, other bounces included, for the operator.
#[test]
fn bounces_of_own_deliveries_are_destroyed() {
    let net = exit_net();
    final_to(&net, b"To: gone@rcpt.test\nSubject: secret plans\n\nthe plaintext a bounce would quote\n");
    net.round(EXIT);
    let delivered = net.delivered("gone@rcpt.test").remove(0);
    let inbox = net.mailbox(&format!("mixtasy@{EXIT}")).join("new");
    // The bounce, with the Message-ID's case changed by some MTA on the way.
    let shouted = String::from_utf8_lossy(&delivered).replace(
        &message_id(&delivered),
        &message_id(&delivered).to_ascii_uppercase().replace("@EXIT.TEST", "@exit.test"),
    );
    std::fs::write(inbox.join("bounce.own"), dsn(shouted.as_bytes())).unwrap();
    // A bounce of something else: an id of the exit's form it never used, and one of a
    // forwarded wire mail (no plaintext in it).
    let forged = b"To: x@rcpt.test\nMessage-ID: <0123456789abcdef0123456789abcdef@exit.test>\n\nhi\n";
    std::fs::write(inbox.join("bounce.other"), dsn(forged)).unwrap();
    std::fs::write(inbox.join("note.operator"), b"From: admin@else.test\nSubject: hello\n\nhi\n").unwrap();
    net.round_later(EXIT, 60);
    let st = net.status(EXIT);
    assert_eq!(
        (st.get("intake.own-bounce"), st.get("intake.operator"), st.get("operator_mail")),
        (1, 2, 2),
        "{}",
        st.0
    );
    let home_files =
        files_with_a_run_of(&net.mailbox(&format!("mixtasy@{EXIT}")), b"the plaintext a bounce would quote", 32);
    assert!(home_files.is_empty(), "the bounced plaintext is kept in {home_files:?}");
    assert_counters_add_up(&st);
    // A week later the id is forgotten: a bounce then is the operator's like any mail.
    std::fs::write(inbox.join("bounce.late"), dsn(&delivered)).unwrap();
    net.round_later(EXIT, 8 * 86400 + 60);
    assert_eq!(net.status(EXIT).get("intake.own-bounce"), 1);
}

/// Random text nobody else writes: every 32-byte run of it is unique to this message.
fn random_body(lines: usize) -> String {
    (0..lines)
        .map(|_| {
            format!(
                "{:016x}{:016x}{:016x}{:016x}\n",
                rand::random::<u64>(),
                rand::random::<u64>(),
                rand::random::<u64>(),
                rand::random::<u64>()
            )
        })
        .collect()
}

/// After an original is delivered and one more round has run, no 32-byte run of its body
/// is in any file of the node's home: not in state.sqlite, nor in a journal. The original
/// takes every path through the state (pool, exit queue, a recipient retried across
/// rounds, per-recipient rows) and is large enough for overflow pages; the state churns
/// around it with other mail.
#[test]
fn no_plaintext_lingers_in_the_home() {
    let net = exit_net();
    jam(&net, "second@rcpt.test");
    let body = random_body(1500); // ~97 KB: three 32 KiB pages and more.
    final_to(&net, format!("To: first@rcpt.test, second@rcpt.test\nSubject: s\n\n{body}").as_bytes());
    for i in 0..3 {
        final_to(&net, format!("To: other{i}@rcpt.test\n\n{}", random_body(200)).as_bytes());
    }
    net.round(EXIT);
    assert_eq!(net.delivered("first@rcpt.test").len(), 1);
    let queued = files_with_a_run_of(&net.home(EXIT), body.as_bytes(), 32);
    assert!(!queued.is_empty(), "the byte search finds the original while it is queued");
    unjam(&net, "second@rcpt.test");
    final_to(&net, format!("To: other@rcpt.test\n\n{}", random_body(300)).as_bytes());
    net.round_later(EXIT, 600);
    assert_eq!(net.delivered("second@rcpt.test").len(), 1);
    assert_eq!(net.status(EXIT).get("exit_queue"), 0);
    let right_after = files_with_a_run_of(&net.home(EXIT), body.as_bytes(), 32);
    eprintln!("runs of the body in the home right after its last delivery: {right_after:?}");
    net.round_later(EXIT, 1200);
    let hits = files_with_a_run_of(&net.home(EXIT), body.as_bytes(), 32);
    assert!(hits.is_empty(), "plaintext of a delivered original one round later in {hits:?}");
}

/// A crash right after the transport accepted the mail for one recipient, before that was
/// recorded: the next round sends again to that recipient alone (a duplicate), never to
/// one already recorded, and loses nobody.
#[test]
fn a_crash_mid_delivery_loses_no_recipient() {
    use std::os::unix::fs::PermissionsExt;
    let net = exit_net();
    let log = net.dir.path().join("sendmail.log");
    let flag = net.dir.path().join("crashed");
    let script = net.dir.path().join("sendmail-crash");
    // Accepts everything; the first time it is handed crash@, it kills the round that ran it.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {log}\ncat > /dev/null\ncase \"$*\" in *crash@rcpt.test*) [ -e {flag} ] || {{ touch {flag}; kill -9 $PPID; }} ;; esac\nexit 0\n",
            log = log.display(),
            flag = flag.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    net.configure(EXIT, "transport", "\"sendmail\"");
    net.configure(EXIT, "sendmail", &format!("{:?}", script.display().to_string()));
    final_to(&net, b"To: first@rcpt.test, crash@rcpt.test, last@rcpt.test\n\nall of you\n");
    let mut c = net.node_cmd(EXIT);
    c.arg("--round");
    let killed = run(c, b"");
    assert!(!killed.status.success() && flag.exists(), "the round was killed mid-delivery");
    net.round_later(EXIT, 60);
    let sent = std::fs::read_to_string(&log).unwrap();
    let times = |who: &str| sent.lines().filter(|l| l.ends_with(&format!("-- {who}"))).count();
    assert_eq!((times("first@rcpt.test"), times("crash@rcpt.test"), times("last@rcpt.test")), (1, 2, 1), "{sent}");
    let st = net.status(EXIT);
    assert_eq!((st.get("exit_queue"), st.get("exit.delivered")), (0, 1), "{}", st.0);
    assert_counters_add_up(&st);
}
