//! `mixtasyd --round` through the real binary: a lab network of node homes wired with the
//! `maildir:` transport, pool arithmetic, replay across restarts, expired keys, modes,
//! operator mail, transport failures, the lock, and exit codes for a broken setup.

use std::time::SystemTime;

use crate::util::*;

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

fn original(tag: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!("To: Bob <bob@rcpt.test>\nSubject: {tag}\n\n").into_bytes();
    let mut i = 0;
    while m.len() < body_len {
        m.extend_from_slice(format!("{tag} line {i}\n").as_bytes());
        i += 1;
    }
    m
}

fn body_of(mail: &[u8]) -> &[u8] {
    let i = mail.windows(2).position(|w| w == b"\n\n").expect("blank line") + 2;
    &mail[i..]
}

pub(crate) fn lab(n: usize) -> Net {
    let mut net = Net::new(now());
    for i in 1..=n {
        net.add_lab_node(&format!("mix{i}.test"), "middleman,exitpublic");
    }
    net.introduce_nodes();
    net.publish_all_to_client();
    net
}

/// Runs rounds on every node until `done` holds or `max` rounds passed; returns rounds used.
pub(crate) fn rounds_until(net: &Net, max: usize, done: impl Fn() -> bool) -> usize {
    for r in 1..=max {
        for n in &net.nodes {
            net.round(n);
        }
        if done() {
            return r;
        }
    }
    panic!("not done after {max} rounds of every node");
}

#[test]
fn network_delivers_singlepart_multipart_and_many_with_dummies() {
    let net = lab(5);
    for n in &net.nodes {
        net.configure(n, "dummy_time_p", "0.3");
        net.configure(n, "dummy_flush_p", "0.3");
    }
    let single = original("single", 2000);
    let multi = original("multi", 100 * 1024);
    let mut expected = vec![single.clone(), multi.clone()];
    for w in net.create(&single, &[]).into_iter().chain(net.create(&multi, &[])) {
        net.inject(&w);
    }
    for i in 0..30 {
        let o = original(&format!("many{i}"), 300 + i * 10);
        for w in net.create(&o, &[]) {
            net.inject(&w);
        }
        expected.push(o);
    }
    let inbox = "bob@rcpt.test";
    rounds_until(&net, 20, || net.delivered(inbox).len() >= expected.len());
    let got = net.delivered(inbox);
    assert_eq!(got.len(), expected.len(), "each original exactly once");
    let mut got_bodies: Vec<&[u8]> = got.iter().map(|m| strip_footer(body_of(m))).collect();
    let mut want: Vec<&[u8]> = expected.iter().map(|m| body_of(m)).collect();
    got_bodies.sort();
    want.sort();
    assert!(got_bodies == want, "delivered bodies differ from the originals");
    for m in &got {
        let text = String::from_utf8_lossy(m);
        assert!(text.contains("Comments: This message was sent through the Mixtasy anonymous"));
        let header = &text[..text.find("\n\n").unwrap()];
        // Only the exit may be named, in its own notice and Message-ID.
        let named: Vec<&str> = net.nodes.iter().filter(|n| header.contains(n.as_str())).map(|n| n.as_str()).collect();
        assert!(named.len() <= 1, "header names several mixes: {named:?}");
    }
    let mut dummies = 0;
    for n in &net.nodes {
        let st = net.status(n);
        assert_counters_add_up(&st);
        dummies += st.get("dummy.pooled") + st.get("dummy.sent");
        assert_eq!(st.get("pool"), 0, "{n}: the pool drains with these parameters");
    }
    assert!(dummies > 0, "dummies are visible in the counters");
    let assembled: i64 = net.nodes.iter().map(|n| net.status(n).get("exit.assembled")).sum();
    assert_eq!(assembled, 1, "the multipart message was reassembled once");
}

#[test]
fn pool_arithmetic_in_real_rounds() {
    let mut net = lab(3);
    net.configure("mix1.test", "min_pool", "3");
    net.configure("mix1.test", "threshold", "2");
    net.configure("mix1.test", "rate", "0.5");
    net.nodes.retain(|n| n == "mix1.test");
    for i in 0..11 {
        let w = net.create(&original(&format!("p{i}"), 100), &["--first-mix", "mix1.test"]);
        net.inject(&w[0]);
    }
    let sent_total = |net: &Net| net.status("mix1.test").get("pool.sent");
    // m = 11: (11 - 3) * 0.5 = 4 leave; then 7 → 2, 5 → 1, 4 < 2 + 3 → 0.
    for (pool_after, sent_after) in [(7, 4), (5, 6), (4, 7), (4, 7)] {
        net.round("mix1.test");
        let st = net.status("mix1.test");
        assert_eq!((st.get("pool"), sent_total(&net)), (pool_after, sent_after));
    }
    let out: usize = ["mix2.test", "mix3.test"].iter().map(|m| net.delivered(&format!("mixtasy@{m}")).len()).sum();
    assert_eq!(out, 7, "what left reached the next mixes' Maildirs");
}

#[test]
fn replay_is_dropped_across_restarts_and_within_a_round() {
    let mut net = lab(3);
    net.nodes.retain(|n| n == "mix1.test");
    net.configure("mix1.test", "min_pool", "100");
    let w = net.create(&original("replay", 100), &["--first-mix", "mix1.test"]).remove(0);
    net.inject(&w);
    net.inject(&w);
    net.round("mix1.test");
    net.inject(&w);
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("intake.forwarded"), st.get("drop.replay"), st.get("replay_entries")), (1, 2, 1));
    assert_counters_add_up(&st);
}

#[test]
fn expired_subkey_and_modes_drop() {
    let mut net = Net::new(now());
    net.add_lab_node("mid.test", "middleman");
    net.add_lab_node("exit.test", "exitpublic");
    net.add_lab_node("other.test", "middleman");
    net.add_lab_node("third.test", "middleman");
    net.publish_all_to_client();
    let single = mixtasy::message::Kind::Singlepart;
    // A final message at a middleman-only mix, and an intermediate one at an exit-only mix.
    net.inject(&net.wrap_final(single, &original("m1", 100), &["mid.test"]));
    net.inject(&net.wrap_final(single, &original("m2", 100), &["exit.test", "mid.test"]));
    net.round("mid.test");
    net.round("exit.test");
    assert_eq!(net.status("mid.test").get("drop.mode"), 1, "final message at a middleman-only mix");
    assert_eq!(net.status("exit.test").get("drop.mode"), 1, "intermediate message at an exit-only mix");
    // Expired subkey: a message made now, processed three days later.
    net.inject(&net.create(&original("late", 100), &["--first-mix", "other.test"]).remove(0));
    net.round_later("other.test", 3 * 86400);
    let st = net.status("other.test");
    assert_eq!(st.get("drop.expired-key"), 1, "{}", st.0);
    assert_counters_add_up(&st);
}

#[test]
fn operator_mail_is_moved_not_destroyed() {
    let mut net = lab(1);
    net.nodes.retain(|n| n == "mix1.test");
    let inbox = net.mailbox("mixtasy@mix1.test");
    std::fs::write(inbox.join("new/op1"), b"From: someone@x.test\nTo: mixtasy@mix1.test\nSubject: hello operator\n\nhi\n").unwrap();
    std::fs::write(inbox.join("new/bounce1"), b"Return-Path: <>\nFrom: MAILER-DAEMON@mix1.test\nTo: mixtasy@mix1.test\nSubject: Undelivered Mail Returned to Sender\n\nsorry\n").unwrap();
    net.round("mix1.test");
    let kept: Vec<_> = std::fs::read_dir(inbox.join(".operator/new")).unwrap().collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(std::fs::read_dir(inbox.join("new")).unwrap().count(), 0);
    let st = net.status("mix1.test");
    assert_eq!((st.get("intake.operator"), st.get("operator_mail")), (2, 2));
}

fn fake_sendmail(net: &Net, exit: i32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = net.dir.path().join(format!("sendmail-{exit}"));
    let log = net.dir.path().join("sendmail.log");
    std::fs::write(&p, format!("#!/bin/sh\necho \"$@\" >> {}\ncat > /dev/null\nexit {exit}\n", log.display())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn transport_failure_keeps_the_message_and_exit_gives_up_later() {
    let mut net = lab(4);
    net.nodes.retain(|n| n == "mix1.test");
    net.configure("mix1.test", "transport", "\"sendmail\"");
    net.configure("mix1.test", "sendmail", &format!("{:?}", fake_sendmail(&net, 75).display().to_string()));
    let w = net.create(&original("t", 100), &["--first-mix", "mix1.test"]).remove(0);
    net.inject(&w);
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("pool"), st.get("pool.deferred"), st.get("pool.sent")), (1, 1, 0));
    net.configure("mix1.test", "sendmail", &format!("{:?}", fake_sendmail(&net, 0).display().to_string()));
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("pool"), st.get("pool.sent")), (0, 1));
    let log = std::fs::read_to_string(net.dir.path().join("sendmail.log")).unwrap();
    assert!(log.lines().all(|l| l.starts_with("-i -f mixtasy@mix1.test -- mixtasy@")), "{log}");
    // A missing sendmail is a failure too, not a crash.
    net.configure("mix1.test", "sendmail", "\"/nonexistent/sendmail\"");
    net.inject(&net.create(&original("t2", 100), &["--first-mix", "mix1.test"]).remove(0));
    net.round("mix1.test");
    assert_eq!(net.status("mix1.test").get("pool"), 1);
}

#[test]
fn exit_gives_up_after_exit_giveup() {
    let mut net = lab(1);
    net.nodes.retain(|n| n == "mix1.test");
    net.configure("mix1.test", "transport", "\"sendmail\"");
    net.configure("mix1.test", "sendmail", &format!("{:?}", fake_sendmail(&net, 75).display().to_string()));
    net.configure("mix1.test", "exit_giveup", "\"1h\"");
    net.inject(&net.wrap_final(mixtasy::message::Kind::Singlepart, &original("g", 100), &["mix1.test"]));
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("exit_queue"), st.get("exit.deferred")), (1, 1));
    net.round_later("mix1.test", 7200);
    let st = net.status("mix1.test");
    assert_eq!((st.get("exit_queue"), st.get("drop.exit-gave-up")), (0, 1));
}

#[test]
fn a_second_concurrent_round_exits_at_once() {
    let mut net = lab(1);
    net.nodes.retain(|n| n == "mix1.test");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(net.home("mix1.test").join("round.lock")).unwrap();
    lock.lock().unwrap();
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let o = run(c, b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("another round is running"));
    drop(lock);
}

#[test]
fn broken_setup_gives_one_line_and_a_sysexits_code() {
    let mut net = lab(1);
    net.nodes.retain(|n| n == "mix1.test");
    let home = net.home("mix1.test");
    let cfg = std::fs::read_to_string(home.join("mixtasyd.toml")).unwrap();
    std::fs::write(home.join("mixtasyd.toml"), format!("{cfg}min_pol = 3\n")).unwrap();
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let o = run(c, b"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("mixtasyd.toml:") && err.contains("unknown setting `min_pol`"), "{err}");
    std::fs::write(home.join("mixtasyd.toml"), &cfg).unwrap();
    net.configure("mix1.test", "maildir", "\"/nonexistent/Maildir\"");
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let o = run(c, b"");
    assert_eq!(o.status.code(), Some(74), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the Maildir"));
    std::fs::write(home.join("mixtasyd.toml"), &cfg).unwrap();
    std::fs::remove_file(home.join("secret-key.pgp")).unwrap();
    let mut c = net.node_cmd("mix1.test");
    c.arg("--round");
    let o = run(c, b"");
    assert_eq!(o.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&o.stderr).contains("secret-key.pgp"));
}

#[test]
fn incomplete_multipart_sets_expire() {
    let mut net = lab(1);
    net.nodes.retain(|n| n == "mix1.test");
    let part = mixtasy::message::Kind::Multipart { part: 1, total: 2 };
    net.inject(&net.wrap_final(part, b"To: bob@rcpt.test\n\nhalf", &["mix1.test"]));
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("held_parts"), st.get("held_sets")), (1, 1));
    net.round_later("mix1.test", 8 * 86400);
    let st = net.status("mix1.test");
    assert_eq!((st.get("held_parts"), st.get("drop.parts-expired")), (0, 1));
}
