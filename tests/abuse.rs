//! Exit abuse controls through the real binary (nym.alias.net, sections 4.1, 4.2, 4.5):
//! destination blocking with a confirmation nonce, the per-recipient quota, the label and
//! the footer on every delivered mail.

use mixtasy::format::message::Kind;

use crate::util::*;

pub(crate) const EXIT: &str = "exit.test";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// One exit node in a lab network (`Net::add_lab_node`).
pub(crate) fn exit_net() -> Net {
    let mut net = Net::new(now());
    net.add_lab_node(EXIT, "middleman,exitpublic");
    net
}

/// Drops an ordinary (not mix) mail into the exit's Maildir, as the MTA would.
fn drop_mail(net: &Net, mail: &str) {
    let dir = net.mailbox(&format!("mixtasy@{EXIT}")).join("new");
    std::fs::write(dir.join(format!("plain.{}", rand::random::<u64>())), mail).unwrap();
}

/// Sends an anonymous original through the exit alone.
fn send(net: &Net, headers: &str, body: &str) {
    let original = format!("{headers}\nSubject: anonymous\n\n{body}");
    net.inject(&net.wrap_final(Kind::Singlepart, original.as_bytes(), &[EXIT]));
}

fn texts(net: &Net, address: &str) -> Vec<String> {
    net.delivered(address).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
}

#[test]
fn a_block_needs_the_nonce_then_blocked_recipients_get_nothing() {
    let net = exit_net();
    let victim = "victim@rcpt.test";
    // A (possibly forged) request: the confirmation goes to the address, quoting only the
    // request's Date, Subject and Message-ID (nothing a forger adds reaches the victim).
    drop_mail(&net, "Return-Path: <victim@rcpt.test>\nReceived: from forger.example (203.0.113.9)\nFrom: Victim <Victim@rcpt.test>\nTo: mixtasy@exit.test\nSubject: destination-block\n\nblock me\n");
    net.round(EXIT);
    let got = texts(&net, victim);
    assert_eq!(got.len(), 1, "one confirmation");
    let confirmation = &got[0];
    assert!(confirmation.contains("\nTo: victim@rcpt.test\n") && confirmation.contains("From: mixtasy@exit.test\n"));
    assert!(confirmation.contains("Auto-Submitted: auto-replied"));
    assert!(confirmation.contains("> Subject: destination-block\n"), "the request's subject quoted:\n{confirmation}");
    assert!(!confirmation.contains("forger.example"), "no other field quoted:\n{confirmation}");
    let subject = confirmation.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string();
    assert!(subject.contains("block-confirm:"));
    let st = net.status(EXIT);
    assert_eq!((st.get("intake.block-request"), st.get("block.notice-sent"), st.get("exit.delivered")), (1, 1, 0));

    // Nothing is blocked before the reply.
    send(&net, "To: victim@rcpt.test", "before the block");
    net.round(EXIT);
    assert_eq!(texts(&net, victim).len(), 2);

    // A made-up nonce blocks nothing; an automatic mail carrying the right one neither.
    drop_mail(&net, "From: victim@rcpt.test\nSubject: Re: block-confirm:00000000000000000000000000000000\n\nyes\n");
    let token = subject.split_whitespace().last().unwrap();
    drop_mail(
        &net,
        &format!("From: victim@rcpt.test\nAuto-Submitted: auto-replied\nSubject: Re: {token}\n\nout of office\n"),
    );
    net.round(EXIT);
    assert_eq!(net.status(EXIT).get("block.unknown-nonce"), 1);
    assert_eq!(net.status(EXIT).get("intake.operator"), 1, "the auto-reply went to .operator");
    send(&net, "To: victim@rcpt.test", "still not blocked");
    net.round(EXIT);
    assert_eq!(texts(&net, victim).len(), 3);

    // The reply with the nonce blocks.
    drop_mail(&net, &format!("From: Victim <victim@rcpt.test>\nSubject: Re: {subject}\n\nyes, please\n"));
    net.round(EXIT);
    assert_eq!(net.status(EXIT).get("block.confirmed"), 1);
    assert_eq!(net.status(EXIT).get("blocked"), 1);

    // Blocked: left out of a mail with others, and a mail only for them is dropped.
    send(&net, "To: VICTIM@rcpt.test\nCc: friend@rcpt.test", "after the block");
    send(&net, "To: victim@rcpt.test", "only to the victim");
    net.round(EXIT);
    assert_eq!(texts(&net, victim).len(), 3, "a blocked recipient gets nothing");
    let friend = texts(&net, "friend@rcpt.test");
    assert_eq!(friend.len(), 1);
    assert!(friend[0].contains("after the block"));
    // A second request from a blocked address is not answered.
    drop_mail(&net, "From: victim@rcpt.test\nSubject: destination-block\n\nagain\n");
    net.round(EXIT);
    assert_eq!(texts(&net, victim).len(), 3);
    let st = net.status(EXIT);
    assert_eq!((st.get("drop.recipients-blocked"), st.get("drop.exit-blocked")), (2, 1), "{}", st.0);
    assert_eq!(st.get("exit.delivered"), 3);
    assert_counters_add_up(&st);
    assert_eq!(st.get("spool"), 0);

    // The state knows the address only by a salted hash.
    let state = std::fs::read(net.home(EXIT).join("state.sqlite")).unwrap();
    assert!(!state.windows(6).any(|w| w.eq_ignore_ascii_case(b"victim")), "an address is stored in state.sqlite");

    // The operator's commands.
    let block = |args: &[&str]| {
        let mut c = net.node_cmd(EXIT);
        c.arg("block").args(args);
        String::from_utf8(ok(c, b"").stdout).unwrap().trim().to_string()
    };
    assert_eq!(block(&["check", "<Victim@RCPT.test>"]), "blocked");
    assert_eq!(block(&["remove", "victim@rcpt.test"]), "unblocked");
    assert_eq!(block(&["check", "victim@rcpt.test"]), "not blocked");
    assert_eq!(block(&["add", "other@rcpt.test"]), "blocked");
    assert_eq!(block(&["add", "other@rcpt.test"]), "already blocked");
    let mut c = net.node_cmd(EXIT);
    c.args(["block", "add", "not an address"]);
    assert_eq!(run(c, b"").status.code(), Some(2));
    send(&net, "To: victim@rcpt.test\nCc: other@rcpt.test", "unblocked again");
    net.round(EXIT);
    assert_eq!(texts(&net, victim).len(), 4);
    assert!(texts(&net, "other@rcpt.test").is_empty());
}

#[test]
fn every_delivery_is_labelled_with_a_footer_and_the_original_body_intact() {
    let net = exit_net();
    let body = "first line\n\nlast line, no newline";
    send(&net, "To: bob@rcpt.test", body);
    net.round(EXIT);
    let got = net.delivered("bob@rcpt.test");
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    let text = String::from_utf8_lossy(mail);
    assert!(text.contains("Comments: This message was sent through the Mixtasy anonymous"));
    let at = mail.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    // The body had no line end at its end: one is added before the footer, nothing else.
    assert_eq!(strip_footer(&mail[at..]), format!("{body}\n").as_bytes());
}

#[test]
fn the_quota_makes_mail_wait_a_day_or_drops_it() {
    let net = exit_net();
    net.configure(EXIT, "recipient_quota", "2");
    for i in 0..3 {
        send(&net, "To: bob@rcpt.test", &format!("wait {i}"));
    }
    net.round(EXIT);
    assert_eq!(net.delivered("bob@rcpt.test").len(), 2);
    let st = net.status(EXIT);
    assert_eq!((st.get("exit.quota-wait"), st.get("exit_queue")), (1, 1));
    // Still full an hour later; a day later the window has passed.
    net.round_later(EXIT, 3600);
    assert_eq!(net.delivered("bob@rcpt.test").len(), 2);
    net.round_later(EXIT, 86400 + 60);
    assert_eq!(net.delivered("bob@rcpt.test").len(), 3, "the waiting mail goes out when the window has room");

    net.configure(EXIT, "over_quota", "\"drop\"");
    for i in 0..2 {
        send(&net, "To: carol@rcpt.test", &format!("carol only {i}"));
    }
    net.round(EXIT);
    // Carol is full: she is left out, Dave still gets the mail.
    send(&net, "To: carol@rcpt.test\nCc: dave@rcpt.test", "shared");
    net.round(EXIT);
    send(&net, "To: carol@rcpt.test", "carol once more");
    net.round(EXIT);
    assert_eq!(net.delivered("carol@rcpt.test").len(), 2, "carol's quota is 2 a day");
    assert_eq!(net.delivered("dave@rcpt.test").len(), 1);
    let st = net.status(EXIT);
    assert_eq!((st.get("drop.recipients-quota"), st.get("drop.exit-quota")), (2, 1), "{}", st.0);
    assert_eq!(st.get("exit_queue"), 0);
    assert_counters_add_up(&st);

    let mut c = net.node_cmd(EXIT);
    c.arg("--round");
    net.configure(EXIT, "over_quota", "\"later\"");
    let out = run(c, b"");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`over_quota`"));
}

#[test]
fn an_exitprivate_mix_answers_block_requests_for_its_own_domains_only() {
    let mut net = Net::new(now());
    net.add_lab_node(EXIT, "middleman,exitprivate");
    net.configure(EXIT, "local_domains", "[\"rcpt.test\"]");
    drop_mail(&net, "From: someone@elsewhere.test\nSubject: destination-block\n\n");
    drop_mail(&net, "From: local@rcpt.test\nSubject: destination-block\n\n");
    net.round(EXIT);
    assert!(net.delivered("someone@elsewhere.test").is_empty(), "no confirmation outside local_domains");
    assert_eq!(net.delivered("local@rcpt.test").len(), 1);
    let st = net.status(EXIT);
    assert_eq!((st.get("intake.block-request"), st.get("block.notice-sent")), (2, 1));
    // A middleman-only mix is no exit: such mail is the operator's.
    let mut net = Net::new(now());
    net.add_lab_node(EXIT, "middleman");
    drop_mail(&net, "From: local@rcpt.test\nSubject: destination-block\n\n");
    net.round(EXIT);
    assert_eq!(net.status(EXIT).get("intake.operator"), 1);
}
