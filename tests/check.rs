//! `mixtasyd check` (issue 13): one finding a line, exit status by the worst, nothing created;
//! what every node command refuses: a home of another user, an unqualified address; and
//! `status`: the verdict, then today's figures, then the totals.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

fn check(net: &Net, fqdn: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut c = net.node_cmd(fqdn);
    c.arg("check").args(extra);
    let out = run(c, b"");
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// The line of `what`, which must exist.
fn line<'a>(said: &'a str, what: &str) -> &'a str {
    said.lines().find(|l| l[5..].starts_with(&format!("{what}: "))).unwrap_or_else(|| panic!("no {what} line:\n{said}"))
}

/// Every path below `dir` with its mode, to show that nothing was created or changed.
fn tree(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            out.push((e.path().display().to_string(), m.permissions().mode()));
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn check_finds_what_is_wrong_and_changes_nothing() {
    let mut net = Net::new(VECTOR_NOW);
    net.add_node("mix1.test", "middleman");
    let home = net.home("mix1.test");

    // Fresh home, offline: all well, exit 0, and nothing created (no state database).
    let before = tree(&home);
    let (code, said) = check(&net, "mix1.test", &["--offline"]);
    assert_eq!(code, Some(0), "{said}");
    for what in ["config", "owner", "mode", "key", "subkey", "maildir"] {
        assert!(line(&said, what).starts_with("ok "), "{said}");
    }
    assert_eq!(tree(&home), before, "check changed the home");
    assert!(!home.join("state.sqlite").exists());

    // Probing: a sendmail that fails says why, without the address it printed; a .test
    // host does not resolve; no keyserver is a warning.
    let sendmail = net.dir.path().join("sendmail");
    std::fs::write(&sendmail, "#!/bin/sh\necho 'postdrop: warning: mail_queue_enter: create file maildrop/123: Permission denied for alice@example.org' >&2\nexit 75\n").unwrap();
    std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    net.configure("mix1.test", "sendmail", &format!("{:?}", sendmail.display().to_string()));
    let (code, said) = check(&net, "mix1.test", &[]);
    assert_eq!(code, Some(2), "{said}");
    let t = line(&said, "transport");
    assert!(t.starts_with("FAIL") && t.contains("exit status 75") && t.contains("Permission denied"), "{said}");
    assert!(!said.contains("alice") && !said.contains("example.org"), "an address in the output:\n{said}");
    assert!(!line(&said, "address").starts_with("ok "), "{said}");
    assert!(line(&said, "keyserver").starts_with("WARN"), "{said}");
    // The self-test sends through the same sendmail, and says that it refused.
    let (code, said) = check(&net, "mix1.test", &["--send-probe"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        line(&said, "probe").starts_with("FAIL")
            && line(&said, "probe").contains("refused the probe: sendmail exited with status 75"),
        "{said}"
    );
    net.configure("mix1.test", "sendmail", "\"/nonexistent/sendmail\"");
    let (_, said) = check(&net, "mix1.test", &[]);
    assert!(line(&said, "transport").contains("missing or not executable"), "{said}");
    net.configure("mix1.test", "sendmail", "\"/usr/sbin/sendmail\"");

    // The config's modes against the key's user id (what senders believe).
    net.configure("mix1.test", "modes", "\"middleman,exitpublic\"");
    let (code, said) = check(&net, "mix1.test", &["--offline"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(line(&said, "key").starts_with("FAIL") && line(&said, "key").contains("key transition --modes"), "{said}");
    net.configure("mix1.test", "modes", "\"middleman\"");

    // A file open to others, and a file of another owner (as a command run as root leaves).
    std::fs::set_permissions(home.join("mixtasyd.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, said) = check(&net, "mix1.test", &["--offline"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(line(&said, "mode").starts_with("FAIL") && line(&said, "mode").contains("mixtasyd.toml"), "{said}");
    std::fs::set_permissions(home.join("mixtasyd.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        let stray = home.join("state.sqlite");
        std::fs::write(&stray, b"").unwrap();
        std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&stray, Some(65534), None).unwrap();
        let (code, said) = check(&net, "mix1.test", &["--offline"]);
        assert_eq!(code, Some(2), "{said}");
        assert!(
            line(&said, "owner").starts_with("FAIL")
                && line(&said, "owner").contains("state.sqlite")
                && line(&said, "owner").contains("chown -R"),
            "{said}"
        );
        std::fs::remove_file(&stray).unwrap();
    }

    // A broken setting: one line naming file and line, exit 2, still nothing created.
    let toml = home.join("mixtasyd.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}min_pol = 3\n")).unwrap();
    let (code, said) = check(&net, "mix1.test", &["--offline"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(line(&said, "config").starts_with("FAIL") && line(&said, "config").contains("mixtasyd.toml:"), "{said}");
    std::fs::write(&toml, text).unwrap();

    // A home that does not exist is reported, not created.
    let (code, said) = check(&net, "nothing.test", &["--offline"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(!net.home("nothing.test").exists());
}

/// Every node command but `check` refuses a home that another user owns, naming the owner; a
/// round says so with exit 78; nothing is created in it.
#[test]
fn node_commands_refuse_a_home_of_another_user() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give the home to another user");
        return;
    }
    let mut net = Net::new(VECTOR_NOW);
    net.add_node("mix1.test", "middleman");
    let home = net.home("mix1.test");
    let chown_all = |uid: u32| {
        for (p, _) in tree(&home).into_iter().chain([(home.display().to_string(), 0)]) {
            std::os::unix::fs::chown(&p, Some(uid), None).unwrap();
        }
    };
    chown_all(65534);
    let before = tree(&home);
    for args in [&["status"][..], &["key", "rotate"], &["directory", "list"], &["--round"]] {
        let mut c = net.node_cmd("mix1.test");
        c.args(args);
        let out: Output = run(c, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = if args == ["--round"] { 78 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {}", describe(&Command::new("mixtasyd"), &out));
        assert!(
            err.contains("belongs to") && err.contains("uid 65534") && err.contains("run node commands as its owner"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(tree(&home), before, "a refused command changed the home");
    let (_, said) = check(&net, "mix1.test", &["--offline"]);
    assert!(line(&said, "owner").starts_with("WARN") && said.contains("must run as"), "{said}");
    chown_all(0);
}

/// `init` refuses an address whose host part is not a FQDN (unless told so) and defaults to
/// middleman.
#[test]
fn init_refuses_a_short_host_and_defaults_to_middleman() {
    let net = Net::new(VECTOR_NOW);
    let mut c = net.node_cmd("vm");
    c.args(["init", "--address", "mixtasy@vm"]);
    let out = run(c, b"");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&Command::new("init"), &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a fully qualified domain name"));
    assert!(!net.home("vm").exists(), "a refused init left a home");
    let mut c = net.node_cmd("vm");
    c.args(["init", "--address", "mixtasy@vm", "--allow-unqualified"]);
    ok(c, b"");
    let mut c = net.node_cmd("mix1.test");
    c.args(["init", "--address", "mixtasy@mix1.test"]);
    let said = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(said.contains("(middleman)"), "{said}");
    assert!(std::fs::read_to_string(net.home("mix1.test").join("mixtasyd.toml"))
        .unwrap()
        .contains("modes = \"middleman\""));
}

/// A sendmail script that logs nothing, reads its input and runs `body`.
fn sendmail_script(net: &Net, name: &str, body: &str) -> String {
    let p = net.dir.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{:?}", p.display().to_string())
}

/// Issue 13, 6: an MTA that hangs costs a round at most `sendmail_round_limit` (the rest of
/// the pool stays queued at once, counted as over-time), and one that refuses says why in
/// the round's line, without the addresses it printed; `status` leads with the verdict and
/// names the failure; a good round makes the node healthy again, with the pool's wait noted.
#[test]
fn transport_failures_are_capped_explained_and_judged() {
    let mut net = Net::new(VECTOR_NOW);
    for f in ["mix1.test", "mix2.test", "mix3.test", "mix4.test"] {
        net.add_lab_node(f, "middleman,exitpublic");
    }
    net.publish_all_to_client();
    for i in 0..6 {
        let o = format!("To: bob@rcpt.test\nSubject: t{i}\n\nbody {i}\n");
        net.inject(&net.create(o.as_bytes(), &["--first-mix", "mix1.test"]).remove(0));
    }
    net.configure("mix1.test", "transport", "\"sendmail\"");
    net.configure("mix1.test", "sendmail", &sendmail_script(&net, "hang", "sleep 30"));
    net.configure("mix1.test", "sendmail_timeout", "\"1s\"");
    net.configure("mix1.test", "sendmail_round_limit", "\"2s\"");
    let round = net.round("mix1.test");
    assert!(
        round.contains("transport failures 6 (over-time 4, timeout 2; first: sendmail did not finish in time"),
        "{round}"
    );
    let st = net.status("mix1.test");
    assert_eq!((st.get("pool"), st.get("transport.timeout"), st.get("transport.over-time")), (6, 2, 4), "{}", st.0);
    assert!(
        st.0.starts_with("{\"format\":1,\"verdict\":\"unhealthy\"") && st.0.contains("sendmail timed out"),
        "{}",
        st.0
    );

    // A refusing MTA: its first stderr line, addresses taken out.
    net.configure("mix1.test", "sendmail", &sendmail_script(&net, "refuse", "cat >/dev/null; echo \"postdrop: warning: mail_queue_enter: create file maildrop/x: Permission denied ($3 to $5)\" >&2; exit 75"));
    let round = net.round("mix1.test");
    assert!(round.contains("exit-status 6; first: sendmail exited with status 75: postdrop: warning: mail_queue_enter: create file maildrop/x: Permission denied"), "{round}");
    assert!(!round.contains(".test"), "an address in the round's line: {round}");
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    let text = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(
        text.starts_with(
            "unhealthy\n  problem: the last round could not hand mail to the MTA: sendmail exited with an error"
        ),
        "{text}"
    );

    // A working MTA: everything leaves, the node is healthy; the pool's wait is a note.
    net.configure("mix1.test", "sendmail", &sendmail_script(&net, "good", "cat >/dev/null"));
    let round = net.round("mix1.test");
    assert!(round.contains("sent 6") && round.ends_with("transport failures 0\n"), "{round}");
    let mut c = net.node_cmd("mix1.test");
    c.arg("status");
    let text = String::from_utf8(ok(c, b"").stdout).unwrap();
    // The self-test through a transport that delivers: found in the Maildir, removed.
    net.configure("mix1.test", "transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    let (_, said) = check(&net, "mix1.test", &["--send-probe"]);
    assert!(line(&said, "probe").starts_with("ok ") && line(&said, "probe").contains("(removed)"), "{said}");
    assert!(
        std::fs::read_dir(net.mailbox("mixtasy@mix1.test").join("new")).unwrap().next().is_none(),
        "the probe was left behind"
    );
    assert!(text.starts_with("healthy\n  waiting: the pool holds 0 message(s) and sends when it holds 1 (min_pool 0 + threshold 1): 1 more"), "{text}");
}

const DAY: u64 = 86400;

/// Drops `n` files into a node's Maildir that are not mix mail (each round counts them as
/// `intake.taken` and `intake.operator`).
fn not_mix_mail(net: &Net, fqdn: &str, n: usize) {
    for i in 0..n {
        let name = format!("plain.{}.{}", net.now, rand::random::<u64>());
        std::fs::write(
            net.mailbox(&format!("mixtasy@{fqdn}")).join("new").join(name),
            format!("From: a@b.test\nSubject: hi {i}\n\nhello\n"),
        )
        .unwrap();
    }
}

/// `status` as text.
fn status_text(net: &Net, fqdn: &str) -> String {
    let mut c = net.node_cmd(fqdn);
    c.arg("status");
    String::from_utf8(ok(c, b"").stdout).unwrap()
}

/// The counters listed under the text's `today` line.
fn today_lines(text: &str) -> Vec<(String, i64)> {
    let at = text.find("\ntoday ").unwrap_or_else(|| panic!("no today section:\n{text}"));
    text[at + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.contains("nothing counted"))
        .map(|l| {
            let (n, v) = l.trim().split_once(' ').unwrap();
            (n.to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

/// Issue 13: `status` shows today's figures (UTC day) after the verdict and before the
/// totals; the second day's figures hold only that day's counts, the totals both days'.
#[test]
fn status_shows_today_then_the_totals() {
    let mut net = Net::new(VECTOR_NOW); // 2026-11-21 12:00 UTC
    for f in ["mix1.test", "mix2.test", "mix3.test", "mix4.test"] {
        net.add_lab_node(f, "middleman,exitpublic");
    }
    net.publish_all_to_client();
    let send = |net: &Net, n: usize| {
        for i in 0..n {
            let o = format!("To: bob@rcpt.test\nSubject: t{i}\n\nbody {i}\n");
            net.inject(&net.create(o.as_bytes(), &["--first-mix", "mix1.test"]).remove(0));
        }
    };

    // Day 1: two messages and one that is not mix mail; a new node counts from midnight.
    send(&net, 2);
    not_mix_mail(&net, "mix1.test", 1);
    net.round("mix1.test");
    let st = Json::parse(&net.status("mix1.test").0).unwrap();
    assert_eq!((st.at("today").at("date").str(), st.at("today").at("since").str()), ("2026-11-21", "midnight"));
    assert_eq!(st.at("today").at("counters"), st.at("counters"), "a new node's first day is all it counted");
    assert_eq!(st.at("counters").at("intake.taken").int(), 3);

    // Day 2, before its first round: nothing counted yet today.
    net.now += DAY;
    let text = status_text(&net, "mix1.test");
    assert!(text.contains("\ntoday 2026-11-22 UTC (since 00:00):\n  nothing counted yet\n"), "{text}");
    let st = Json::parse(&net.status("mix1.test").0).unwrap();
    assert!(st.at("today").at("counters").members().iter().all(|(_, v)| v.int() == 0), "{st:?}");

    // Day 2: one message.
    send(&net, 1);
    net.round("mix1.test");
    let st = Json::parse(&net.status("mix1.test").0).unwrap();
    assert_eq!(st.at("format").int(), 1);
    let (today, total) = (st.at("today").at("counters"), st.at("counters"));
    let both = |name: &str| (today.at(name).int(), total.at(name).int());
    assert_eq!(both("intake.taken"), (1, 4));
    assert_eq!(both("intake.forwarded"), (1, 3));
    assert_eq!(both("intake.operator"), (0, 1));
    assert_eq!(both("pool.sent"), (1, 3));
    assert_eq!(
        today.members().iter().map(|(n, _)| n).collect::<Vec<_>>(),
        total.members().iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert_eq!(st.at("today").at("date").str(), "2026-11-22");

    // Text: the verdict, then today (only what moved), then the totals.
    let text = status_text(&net, "mix1.test");
    let (today_at, node_at, totals_at) = (
        text.find("\ntoday 2026-11-22 UTC (since 00:00):\n").unwrap(),
        text.find("\nmix mixtasy@mix1.test").unwrap(),
        text.find("\ncounters since init:\n").unwrap(),
    );
    assert!(text.starts_with("healthy\n") || text.starts_with("unhealthy\n"), "{text}");
    assert!(today_at < node_at && node_at < totals_at, "{text}");
    let lines = today_lines(&text);
    assert!(lines.contains(&("intake.taken".into(), 1)) && lines.contains(&("intake.forwarded".into(), 1)), "{text}");
    assert!(lines.iter().all(|(n, v)| *v > 0 && n != "intake.operator"), "{text}");
    assert!(text[totals_at..].contains("intake.taken             4\n"), "{text}");
}

/// Issue 13, the attack: the node's clock goes back (a bad NTP server, or someone who can
/// set it) to before the newest daily snapshot, then forward again. `status` neither fails
/// nor shows a negative or an above-total figure, and says the clock is behind (a problem in
/// the verdict too); rounds go on.
#[test]
fn status_today_survives_a_clock_going_back() {
    let mut net = Net::new(VECTOR_NOW);
    net.add_lab_node("mix1.test", "middleman");
    let start = net.now;
    let sane = |st: &Json| {
        for (name, v) in st.at("today").at("counters").members() {
            assert!(v.int() >= 0 && v.int() <= st.at("counters").at(name).int(), "today's {name} out of range: {st:?}");
        }
    };
    // Rounds on day 1 and day 3.
    not_mix_mail(&net, "mix1.test", 2);
    net.round("mix1.test");
    net.now = start + 2 * DAY;
    not_mix_mail(&net, "mix1.test", 3);
    net.round("mix1.test");

    // The clock reads day 2, then 1970: behind the newest snapshot.
    for now in [start + DAY, 0] {
        net.now = now;
        let st = Json::parse(&net.status("mix1.test").0).unwrap();
        assert_eq!(st.at("today").at("since").str(), "clock-behind");
        assert_eq!(st.at("today").at("counters").at("intake.taken").int(), 3, "counts since day 3's snapshot");
        sane(&st);
        let text = status_text(&net, "mix1.test");
        assert!(
            text.starts_with("unhealthy\n  problem: the clock reads ")
                && text.contains("before the last round at 2026-11-23 12:00:00 UTC: it went back"),
            "{text}"
        );
        assert!(
            text.contains(
                "(the clock is behind the newest daily snapshot, of 2026-11-23: counts since that snapshot):\n"
            ),
            "{text}"
        );
    }

    // A round on the clock's day 2: it goes through; day 3's snapshot is gone, day 2's is
    // taken before the round counts (from midnight: day 1's is still there).
    net.now = start + DAY;
    not_mix_mail(&net, "mix1.test", 1);
    net.round("mix1.test");
    let st = Json::parse(&net.status("mix1.test").0).unwrap();
    assert_eq!(
        (st.at("today").at("since").str(), st.at("today").at("counters").at("intake.taken").int()),
        ("midnight", 1)
    );
    sane(&st);

    // Forward to day 3 again: a fresh snapshot, the totals untouched.
    net.now = start + 2 * DAY + 3600;
    not_mix_mail(&net, "mix1.test", 1);
    net.round("mix1.test");
    let st = Json::parse(&net.status("mix1.test").0).unwrap();
    assert_eq!(
        (st.at("today").at("since").str(), st.at("today").at("counters").at("intake.taken").int()),
        ("midnight", 1)
    );
    assert_eq!(st.at("counters").at("intake.taken").int(), 7);
    sane(&st);
}
