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

pub(crate) fn body_of(mail: &[u8]) -> &[u8] {
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
        assert_eq!(st.get("drop.tagged"), 0, "{n}: no honest layer (messages and dummies) is taken for tagged");
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
    let single = mixtasy::format::message::Kind::Singlepart;
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
    std::fs::write(
        inbox.join("new/op1"),
        b"From: someone@x.test\nTo: mixtasy@mix1.test\nSubject: hello operator\n\nhi\n",
    )
    .unwrap();
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
    net.inject(&net.wrap_final(mixtasy::format::message::Kind::Singlepart, &original("g", 100), &["mix1.test"]));
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
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(net.home("mix1.test").join("round.lock"))
        .unwrap();
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
    let part = mixtasy::format::message::Kind::Multipart { part: 1, total: 2 };
    net.inject(&net.wrap_final(part, b"To: bob@rcpt.test\n\nhalf", &["mix1.test"]));
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("held_parts"), st.get("held_sets")), (1, 1));
    net.round_later("mix1.test", 8 * 86400);
    let st = net.status("mix1.test");
    assert_eq!((st.get("held_parts"), st.get("drop.parts-expired")), (0, 1));
}

/// `N` in "what N" of a round's summary line.
fn summary_count(line: &str, what: &str) -> i64 {
    let at = line.find(&format!("{what} ")).unwrap_or_else(|| panic!("no `{what}` in {line}")) + what.len() + 1;
    line[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// Issue 10, 3: the exit mixes. An exit that delivered a final in the round it arrived
/// would link input and output by timing alone. With a pool that holds back (f_min 25,
/// n 5, frac 0.65, dummies off) a lone final waits; it counts in m; once the pool draws it,
/// it is delivered exactly once.
#[test]
fn exit_pools_finals_and_delivers_each_once_when_drawn() {
    let mut net = Net::new(now());
    net.add_lab_node("mix1.test", "middleman,exitpublic");
    net.add_lab_node("mix2.test", "middleman");
    for (k, v) in [("min_pool", "25"), ("threshold", "5"), ("rate", "0.65")] {
        net.configure("mix1.test", k, v);
    }
    let single = mixtasy::format::message::Kind::Singlepart;
    let (exit, next) = (net.mix("mix1.test"), net.mix("mix2.test"));
    let forward =
        |i: usize| net.wrap_final_over(single, &original(&format!("fwd{i}"), 100), &[exit.clone(), next.clone()]);
    let inbox = "bob@rcpt.test";

    net.inject(&net.wrap_final_over(single, &original("lone", 200), std::slice::from_ref(&exit)));
    let line = net.round("mix1.test");
    assert_eq!(
        (summary_count(&line, "took"), summary_count(&line, "pooled"), summary_count(&line, "delivered")),
        (1, 1, 0),
        "{line}"
    );
    let st = net.status("mix1.test");
    assert_eq!(
        (st.get("intake.final"), st.get("pool"), st.get("exit_queue"), st.get("exit.delivered")),
        (1, 1, 0, 0),
        "{}",
        st.0
    );
    assert!(net.delivered(inbox).is_empty(), "a lone final was delivered in its round");

    // m = 1 final + 28 forwarded = 29 < n + f_min = 30: nothing leaves.
    for i in 0..28 {
        net.inject(&forward(i));
    }
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!((st.get("pool"), st.get("pool.sent"), st.get("exit.delivered")), (29, 0, 0), "{}", st.0);
    // Pool rows do not number arrivals: SQLite's own ids would be 1..=29 here, the final's 1.
    let state = mixtasy::batch::state::State::open(&net.home("mix1.test").join("state.sqlite")).unwrap();
    let ids: Vec<i64> = state
        .conn()
        .prepare("SELECT id FROM pool")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(ids.len() == 29 && ids.iter().any(|id| !(1..=29).contains(id)), "sequential pool ids: {ids:?}");
    drop(state);
    // One more: m = 30 only because the final counts; (30 - 25) * 0.65 = 3 leave, the final
    // as likely as any other.
    net.inject(&forward(28));
    net.round("mix1.test");
    let st = net.status("mix1.test");
    assert_eq!(st.get("pool"), 27, "{}", st.0);
    assert_eq!(st.get("pool.sent") + st.get("exit.delivered"), 3, "{}", st.0);

    // Traffic goes on (5 a round; m settles at 32-33, of which 4-5 leave) until the final is
    // drawn: at least 4 of at most 33 leave each round, so P(not drawn in 200 rounds) is
    // below (29/33)^200 < 1e-11. These rounds run a minute apart, so
    // that the Date the exit adds can be told from the arrival time.
    let mut i = 29;
    let mut rounds = 0;
    while net.delivered(inbox).is_empty() {
        assert!(rounds < 200, "the final was never drawn: {}", net.status("mix1.test").0);
        for _ in 0..5 {
            net.inject(&forward(i));
            i += 1;
        }
        rounds += 1;
        net.round_later("mix1.test", 60 * rounds);
    }
    let drawn_at = net.time() + std::time::Duration::from_secs(60 * rounds);
    for k in 1..=3 {
        net.round_later("mix1.test", 60 * (rounds + k));
    }
    let got = net.delivered(inbox);
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert_eq!(strip_footer(body_of(&got[0])), body_of(&original("lone", 200)));
    // The original had no Date: the one added is the draw's, not the arrival's, which
    // would undo the pool for every recipient who reads headers.
    let text = String::from_utf8_lossy(&got[0]);
    let date = text.lines().find_map(|l| l.strip_prefix("Date: ")).expect("a Date was added");
    assert_eq!(date, mixtasy::util::clock::rfc5322(drawn_at), "the Date names the round that drew the final");
    let st = net.status("mix1.test");
    assert_eq!((st.get("exit.delivered"), st.get("exit_queue")), (1, 0), "{}", st.0);
    assert_counters_add_up(&st);
    eprintln!("the final was drawn in round {rounds} of traffic");
}

/// Issue 10, 4: one uniformly random order for everything a round hands to the transport.
/// A recording sendmail logs each call's recipient; the node has no directory, so its
/// dummies go to itself (mixtasy@mix1.test), forwarded mail to mix2 and finals to bob.
/// Each round: one forwarded, one final, and flush dummies (p = 0.75).
///
/// Statistic, per round: the share of (dummy, other) pairs in which the dummy leaves first,
/// and whether the final leaves before the forwarded mail. Under a uniform order each has
/// mean 1/2 and lies in [0, 1], independently across rounds; a round that sends dummies
/// last (or exit deliveries after the pool) scores 0. By Hoeffding, the mean over N rounds
/// strays 0.4 from 1/2 with probability at most 2 exp(-2 N 0.16): for N = 70, 4e-10.
#[test]
fn a_round_sends_dummies_finals_and_forwards_in_one_random_order() {
    const N: usize = 70;
    const T: f64 = 0.4;
    let bound = 2.0 * (-2.0 * N as f64 * T * T).exp();
    assert!(bound < 1e-9, "false-failure bound {bound}");
    let mut net = Net::new(now());
    net.add_lab_node("mix1.test", "middleman,exitpublic");
    net.add_lab_node("mix2.test", "middleman");
    net.configure("mix1.test", "transport", "\"sendmail\"");
    net.configure("mix1.test", "sendmail", &format!("{:?}", fake_sendmail(&net, 0).display().to_string()));
    net.configure("mix1.test", "dummy_flush_p", "0.75");
    let log = net.dir.path().join("sendmail.log");
    let single = mixtasy::format::message::Kind::Singlepart;
    let (exit, next) = (net.mix("mix1.test"), net.mix("mix2.test"));
    let (mut dummy_scores, mut final_scores) = (Vec::new(), Vec::new());
    let mut seen = 0;
    for round in 0.. {
        if dummy_scores.len() >= N {
            break;
        }
        assert!(round < 400, "only {} of {round} rounds had dummies", dummy_scores.len());
        net.inject(&net.wrap_final_over(single, &original(&format!("f{round}"), 100), &[exit.clone(), next.clone()]));
        net.inject(&net.wrap_final_over(single, &original(&format!("x{round}"), 100), std::slice::from_ref(&exit)));
        net.round("mix1.test");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let sequence: Vec<char> = lines[seen..]
            .iter()
            .map(|l| match l.rsplit(' ').next() {
                Some("mixtasy@mix1.test") => 'd',
                Some("mixtasy@mix2.test") => 'f',
                Some("bob@rcpt.test") => 'x',
                _ => panic!("unexpected sendmail call: {l}"),
            })
            .collect();
        seen = lines.len();
        let count = |c: char| sequence.iter().filter(|&&s| s == c).count();
        assert_eq!((count('f'), count('x')), (1, 1), "the whole pool leaves each round: {sequence:?}");
        final_scores.push(if sequence.iter().position(|&c| c == 'x') < sequence.iter().position(|&c| c == 'f') {
            1.0
        } else {
            0.0
        });
        let dummies = count('d');
        if dummies > 0 {
            let (mut first, mut others_seen) = (0usize, 0usize);
            for &c in &sequence {
                if c == 'd' {
                    first += 2 - others_seen; // the others (2) this dummy precedes
                } else {
                    others_seen += 1;
                }
            }
            dummy_scores.push(first as f64 / (2 * dummies) as f64);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (d, x) = (mean(&dummy_scores), mean(&final_scores));
    eprintln!(
        "dummy-before-other share {d:.3} over {} rounds, final-before-forward share {x:.3} over {} rounds",
        dummy_scores.len(),
        final_scores.len()
    );
    assert!(
        (d - 0.5).abs() < T,
        "dummies are not placed at random: share {d:.3} leave before other mail (1/2 expected)"
    );
    assert!(
        (x - 0.5).abs() < T,
        "finals are not placed at random: share {x:.3} leave before forwarded mail (1/2 expected)"
    );
    let st = net.status("mix1.test");
    assert!(st.get("dummy.sent") >= N as i64, "{}", st.0);
}

/// Issue 10, 5: a file whose peeling panics (a bug) goes to `.quarantine`, counted once; the
/// round goes on with the rest, and later rounds are not stopped by it. The panic is made
/// by a hook compiled into test builds only (`MIXTASYD_TEST_PANIC_ON`, `debug_assertions`).
#[test]
fn a_file_whose_peeling_panics_is_quarantined_and_the_round_goes_on() {
    let net = lab(2);
    let single = mixtasy::format::message::Kind::Singlepart;
    let poison =
        [b"X-Test-Panic: here\n".as_slice(), &net.wrap_final(single, &original("poison", 100), &["mix1.test"])]
            .concat();
    net.inject(&poison);
    net.inject(&net.wrap_final(single, &original("fine", 100), &["mix1.test"]));
    net.inject(&net.wrap_final(single, &original("fwd", 100), &["mix1.test", "mix2.test"]));
    let round = || {
        let mut c = net.node_cmd("mix1.test");
        c.arg("--round").env("MIXTASYD_TEST_PANIC_ON", "X-Test-Panic: here");
        net.ok_logged(c, Some("mix1.test"), b"")
    };
    let out = round();
    let (line, err) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(
        (summary_count(&line, "took"), summary_count(&line, "delivered"), summary_count(&line, "sent")),
        (3, 1, 1),
        "{line}"
    );
    assert!(err.contains("panic at ") && err.contains(".quarantine"), "the operator is told: {err}");
    assert!(
        !err.contains("MIXTASYD_TEST_PANIC_ON matched"),
        "the panic's message (it might quote the input) is not printed: {err}"
    );
    let quarantine = net.mailbox("mixtasy@mix1.test").join(".quarantine/new");
    let kept: Vec<Vec<u8>> =
        std::fs::read_dir(&quarantine).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert_eq!(kept, std::slice::from_ref(&poison), "the file is kept byte for byte");
    assert_eq!(net.delivered("bob@rcpt.test").len(), 1);
    // Later rounds run, and do not take it again.
    let line = String::from_utf8_lossy(&round().stdout).into_owned();
    assert_eq!(summary_count(&line, "took"), 0, "{line}");
    let st = net.status("mix1.test");
    assert_eq!(
        (st.get("intake.quarantined"), st.get("quarantined"), st.get("intake.taken"), st.get("spool")),
        (1, 1, 3, 0),
        "{}",
        st.0
    );
    assert_counters_add_up(&st);
}

/// `dummy_starved_p` (issue 16): a trickle into a pool that cannot fire. With the policy
/// off, one message waits in a pool of 1 forever (no dummies, no departure). With it on,
/// every round that finds the pool under min_pool + threshold is counted and draws its
/// time-triggered dummies with the starved p, and the message leaves: an attacker who
/// trickles mail cannot strand it past its subkeys. A pool that is not starved is left alone.
#[test]
fn a_starved_pool_gets_more_dummies() {
    let mut net = lab(2);
    net.nodes.retain(|n| n == "mix1.test");
    for (k, v) in [("min_pool", "4"), ("threshold", "1"), ("rate", "1.0")] {
        net.configure("mix1.test", k, v);
    }
    net.inject(&net.wrap_original(b"To: bob@rcpt.test\nSubject: trickle\n\nalone\n", &["mix1.test"])[0]);
    for _ in 0..10 {
        net.round("mix1.test");
    }
    let st = net.status("mix1.test");
    assert_eq!((st.get("pool"), st.get("dummy.pooled"), st.get("dummy.starved")), (1, 0, 0), "off: {}", st.0);

    net.configure("mix1.test", "dummy_starved_p", "0.9");
    let rounds = rounds_until(&net, 80, || !net.delivered("bob@rcpt.test").is_empty());
    let st = net.status("mix1.test");
    assert!(st.get("dummy.starved") >= 1 && st.get("dummy.starved") <= rounds as i64, "{rounds} rounds: {}", st.0);
    assert!(st.get("dummy.pooled") >= 4, "the starved pool got dummies: {}", st.0);
    assert_eq!(net.delivered("bob@rcpt.test").len(), 1, "the trickled message left, once");
    assert_counters_add_up(&st);

    // Not starved: a pool of min_pool 0 and threshold 0 always fires; no starved round.
    net.configure("mix1.test", "min_pool", "0");
    net.configure("mix1.test", "threshold", "0");
    let before = net.status("mix1.test").get("dummy.starved");
    for _ in 0..5 {
        net.round("mix1.test");
    }
    assert_eq!(net.status("mix1.test").get("dummy.starved"), before);
}

/// `dummy_arrival_p` (issue 16): every message that enters the pool brings a geometric
/// number of dummies with it, so an attacker who floods the node buys it cover he cannot
/// tell from mail: the pool holds more than he sent, in proportion to what he sent. Off,
/// it adds nothing. The pool here never fires, so what it holds is exactly what joined.
#[test]
fn arrivals_bring_dummies_in_proportion() {
    let net = lab(2);
    net.configure("mix1.test", "min_pool", "1000");
    net.configure("mix1.test", "dummy_arrival_p", "0.5");
    let flood = |n: usize| {
        for i in 0..n {
            let original = format!("To: bob@rcpt.test\nSubject: flood {i}\n\nx\n");
            net.inject(&net.wrap_original(original.as_bytes(), &["mix1.test", "mix2.test"])[0]);
        }
        net.round("mix1.test");
        net.status("mix1.test")
    };
    let st = flood(30);
    let arrival = st.get("dummy.arrival");
    // Mean 30 (p/(1-p) = 1 a message), standard deviation about 8.
    assert!((8..=80).contains(&arrival), "{}", st.0);
    assert_eq!(st.get("pool"), 30 + arrival, "{}", st.0);
    assert_eq!((st.get("dummy.pooled"), st.get("intake.forwarded")), (0, 30), "{}", st.0);
    assert_counters_add_up(&st);

    net.configure("mix1.test", "dummy_arrival_p", "0");
    let st = flood(10);
    assert_eq!((st.get("dummy.arrival"), st.get("pool")), (arrival, 40 + arrival), "off: {}", st.0);
}
