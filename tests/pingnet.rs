//! Issue 14, tests with real parts: a pinger measures a 6-mix network on the real Postfix
//! (tests/postfix.rs's lab) with its keys on the real SKS, over simulated days (`--now`,
//! no sleeping): four good mixes, one whose rounds never run (dead) and one whose sendmail
//! fails every other call (flaky). The statistics (`mlist2.txt`, read by the independent
//! reader of tests/pinger.rs) show each for what it is; the certifications reach SKS and
//! stock GnuPG shows them with their notations; a client that trusts the pinger routes
//! around the dead and the flaky mix and its mail arrives (Postfix's log, the wire an
//! observer sees, shows no mail for either); a client that trusts no pinger still picks them.
//!
//! Needs root, Postfix and SKS, as tests/postfix.rs.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use mixtasy::mixes::ranking;
use openpgp::parse::Parse;
use openpgp::types::SignatureType;
use sequoia_openpgp as openpgp;

use crate::pinger::read_mlist2;
use crate::postfix::{hookup, is_root, log_deliveries, test_user, Lab, Postfix, RCPT_DOMAIN, USER};
use crate::util::*;

/// mix1 is a middleman only (pinged through the trusted exit mix2); every other mix is an exit.
const MIXES: [(&str, &str); 6] = [
    ("mix1.test", "middleman"),
    ("mix2.test", "middleman,exitpublic"),
    ("mix3.test", "middleman,exitpublic"),
    ("mix4.test", "middleman,exitpublic"),
    ("dead.test", "middleman,exitpublic"),
    ("flaky.test", "middleman,exitpublic"),
];
const PINGER: &str = "pinger@ping.test";
const HOUR: u64 = 3600;
/// The timer's step: every live mix runs a round, the pinger too, every 2 simulated hours
/// (the pinger's default interval, so each mix is pinged once a step: 12 pings a day).
const STEP: u64 = 2 * HOUR;
const DAYS: u64 = 4;
/// Originals the trusting client sends; wire messages the untrusting one makes.
const SENDS: usize = 8;
const CREATES: usize = 40;

/// `c` (a command of the lab's, as USER) at simulated time `now`, with `args`.
fn at(mut c: Command, now: u64, args: &[&str]) -> Command {
    c.arg("--now").arg(now.to_string()).args(args);
    c
}

fn stdout(c: Command) -> String {
    String::from_utf8(ok(c, b"").stdout).unwrap()
}

#[test]
fn a_pinger_on_the_real_postfix_and_sks_steers_clients_around_dead_and_flaky_mixes() {
    let started = Instant::now();
    assert!(is_root(), "this test runs a real Postfix instance and the mixes as user {USER}: it must run as root");
    let (uid, gid) = test_user();
    let sks = Sks::start();
    let lab = Lab::new(uid, gid);
    let dir = lab.net.dir.path();
    // The simulated days end an hour before the real clock: SKS and GnuPG then see keys and
    // certifications made in the past, as in life.
    let real_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t0 = real_now - DAYS * 86400 - HOUR;
    // A minute past the last day: the last daily upload of the certifications is due.
    let end = t0 + DAYS * 86400 + 60;

    // The flaky mix's sendmail: every other call it takes the mail, says yes and loses it.
    // A sendmail that says no loses nothing (mixtasyd keeps the mail and tries it again next
    // round: batch/transport.rs), it only adds latency; the failure a pinger exists to find
    // is the one the mix itself cannot see. Deterministic: a counter, not a coin.
    let flaky_sendmail = dir.join("bin/flaky-sendmail");
    let flaky_count = dir.join("bin/flaky.count");
    std::fs::write(
        &flaky_sendmail,
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0)\nn=$((n + 1))\necho \"$n\" > {c}\n\
             if [ $((n % 2)) -eq 1 ]; then cat > /dev/null; exit 0; fi\nexec /usr/sbin/sendmail \"$@\"\n",
            c = flaky_count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&flaky_sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let flaky_calls = || std::fs::read_to_string(&flaky_count).map_or(0, |s| s.trim().parse::<u64>().unwrap());

    for (fqdn, modes) in MIXES {
        ok(at(lab.node_raw(fqdn), t0, &["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", modes]), b"");
        lab.net.configure(fqdn, "keyserver", &format!("{:?}", sks.url));
        lab.net.configure(fqdn, "min_pool", "0");
        lab.net.configure(fqdn, "threshold", "1");
        lab.net.configure(fqdn, "rate", "1");
        // No dummies: then every mail Postfix carries to a mix is a ping or a client's, and
        // its log shows which mixes the clients' paths cross.
        lab.net.configure(fqdn, "dummy_time_p", "0.0");
        lab.net.configure(fqdn, "dummy_flush_p", "0.0");
        lab.net.configure(fqdn, "dummy_starved_p", "0.0");
        lab.net.configure(fqdn, "dummy_arrival_p", "0.0");
    }
    lab.net.configure("flaky.test", "sendmail", &format!("{:?}", flaky_sendmail.display().to_string()));

    // Postfix hosts the mix domains, rcpt.test and the pinger's domain; the pinger's Maildir
    // is a virtual mailbox of the lab's map (the hook-ups below reload Postfix, which reads it).
    let domains: Vec<&str> = MIXES.iter().map(|(f, _)| *f).chain([RCPT_DOMAIN, "ping.test"]).collect();
    let vdomains = format!("virtual_mailbox_domains = {}", domains.join(" "));
    let pf = Postfix::start_with(uid, gid, &[&vdomains]);
    let pinger_box = pf.root.path().join("pinger");
    std::fs::create_dir(&pinger_box).unwrap();
    std::os::unix::fs::chown(&pinger_box, Some(uid), Some(gid)).unwrap();
    std::fs::write(pf.conf.join("rcpt_vmailbox"), format!("@{RCPT_DOMAIN} rcpt/Maildir/\n{PINGER} pinger/Maildir/\n"))
        .unwrap();
    for (fqdn, _) in MIXES {
        let out = hookup(&lab, &pf, fqdn, &[]);
        assert!(out.status.success(), "{}", describe(&Command::new(format!("hookup {fqdn}")), &out));
    }
    let node = |fqdn: &str, now: u64, args: &[&str]| stdout(at(lab.node(&pf, fqdn), now, args));
    for (fqdn, _) in MIXES {
        node(fqdn, t0, &["key", "publish"]);
    }

    // The pinger, as USER, sending with the lab's sendmail and finding the mixes on SKS.
    let homes = dir.join("pingers");
    std::fs::create_dir(&homes).unwrap();
    std::os::unix::fs::chown(&homes, Some(uid), Some(gid)).unwrap();
    let pinger_home = homes.join("pinger");
    let pinger = |now: u64, args: &[&str]| {
        let mut c = lab.user_cmd(&lab.pinger);
        c.arg("--home").arg(&pinger_home).env("MAIL_CONFIG", &pf.conf);
        stdout(at(c, now, args))
    };
    pinger(t0, &["init", "--address", PINGER]);
    let pinger_toml = pinger_home.join("mixtasy-pinger.toml");
    configure_file(&pinger_toml, "maildir", &format!("{:?}", pinger_box.join("Maildir").display().to_string()));
    configure_file(&pinger_toml, "keyserver", &format!("{:?}", sks.url));
    configure_file(&pinger_toml, "trusted_exit", "\"mixtasy@mix2.test\"");

    // The simulated days: at each step the pinger's round (returned pings in, due pings out),
    // then every mix but the dead one runs its round ten minutes later. The dead mix's
    // operator still rotates and publishes its key daily (a cron job that works beside a
    // timer that does not), so its key stays usable: only a pinger can tell.
    let live: Vec<&str> = MIXES.iter().map(|(f, _)| *f).filter(|f| *f != "dead.test").collect();
    let t = Instant::now();
    let mut sent = 0u64;
    for step in 0..DAYS * 86400 / STEP {
        let now = t0 + step * STEP + 60;
        if step > 0 && (step * STEP).is_multiple_of(86400) {
            node("dead.test", now, &["key", "rotate"]);
            node("dead.test", now, &["key", "publish"]);
        }
        let line = pinger(now, &["--round"]);
        sent += line
            .split("sent ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{line}"));
        pf.wait_idle();
        for fqdn in &live {
            let line = node(fqdn, now + 600, &["--round"]);
            assert!(line.starts_with("mixtasyd: round:"), "{fqdn}: {line}");
        }
        pf.wait_idle();
    }
    // The last returns in, the figures published and uploaded. The pings this round sent
    // are carried to their end (two passes: a middleman's goes on to the trusted exit), so
    // that from here on the only mail between mixes is the clients'.
    pinger(end, &["--round"]);
    pf.wait_idle();
    for pass in 1..=2 {
        for fqdn in &live {
            node(fqdn, end + pass * 60, &["--round"]);
        }
        pf.wait_idle();
    }
    let simulated = t.elapsed();

    let table = pinger(end, &["status"]);
    let list = std::fs::read_to_string(pinger_home.join("public/mlist2.txt")).unwrap();
    eprintln!("{DAYS} simulated days, {sent} pings sent, in {simulated:.1?}\n{table}\n{list}");
    let (rows, _broken, _caps) = read_mlist2(&list);
    assert_eq!(rows.len(), 6, "every mix measured:\n{list}");
    for (fqdn, _) in MIXES {
        let r = &rows[fqdn];
        match fqdn {
            "dead.test" => assert_eq!(r.uptime, 0.0, "{fqdn}: {r:?}"),
            "flaky.test" => assert!((25.0..=75.0).contains(&r.uptime), "{fqdn} loses every other mail: {r:?}"),
            _ => assert!(r.uptime >= 90.0, "{fqdn}: {r:?}"),
        }
        if fqdn != "dead.test" {
            assert!(r.latent_secs > 0 && r.latent_secs <= 3 * STEP, "{fqdn}: {r:?}");
        }
    }
    assert!(flaky_calls() > 0, "the flaky mix's sendmail was used");
    let counters: std::collections::BTreeMap<&str, i64> = table
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k, v.trim().parse().ok()?)))
        .collect();
    assert!(
        counters.get("certification.uploaded").copied().unwrap_or(0) >= 6 * 4,
        "daily uploads of six certifications: {counters:?}"
    );
    assert!(
        !counters.contains_key("certification.upload-failed") && !counters.contains_key("ping.forged"),
        "{counters:?}"
    );

    // Stock GnuPG receives each mix key from SKS and sees the pinger's certification, good,
    // with what was measured as notations.
    let pinger_key = pinger(end, &["key"]).into_bytes();
    let pinger_cert = openpgp::Cert::from_bytes(&pinger_key).unwrap();
    let keyid = pinger_cert.keyid().to_hex();
    let gpg = Gpg::new();
    gpg.import(&pinger_key);
    for (fqdn, _) in MIXES {
        let fpr =
            openpgp::Cert::from_bytes(node(fqdn, end, &["key", "export"]).as_bytes()).unwrap().fingerprint().to_hex();
        // GnuPG (2.2.17 and later) keeps only the self-signatures of a key from a keyserver
        // unless told otherwise (its defence against certification flooding): without this
        // option the pinger's certifications would be dropped on import.
        gpg.ok(&["--keyserver", &sks.url, "--keyserver-options", "no-self-sigs-only", "--recv-keys", &fpr], b"");
        let colons = String::from_utf8(gpg.ok(&["--with-colons", "--check-sigs", &fpr], b"").stdout).unwrap();
        let by_pinger: Vec<Vec<&str>> = colons
            .lines()
            .filter(|l| l.starts_with("sig:") && l.split(':').nth(4) == Some(keyid.as_str()))
            .map(|l| l.split(':').collect())
            .collect();
        assert!(by_pinger.len() >= 2, "{fqdn}: the pinger's daily certifications:\n{colons}");
        assert!(by_pinger.iter().all(|s| s[1] == "!"), "{fqdn}: GnuPG checks every certification good:\n{colons}");
        let newest = by_pinger.iter().max_by_key(|s| s[5].parse::<u64>().unwrap()).unwrap();
        let listed =
            String::from_utf8(gpg.ok(&["--list-options", "show-notations", "--check-sigs", &fpr], b"").stdout).unwrap();
        for n in ["reliability@mixtasy.org=", "latency@mixtasy.org=", "pings@mixtasy.org="] {
            assert!(listed.contains(n), "{fqdn}: GnuPG shows {n}:\n{listed}");
        }
        // What GnuPG kept, read back: the newest certification carries the published figures.
        let kept = openpgp::Cert::from_bytes(&gpg.ok(&["--export", &fpr], b"").stdout).unwrap();
        let got = ranking::read(&pinger_cert, &kept, std::time::UNIX_EPOCH + std::time::Duration::from_secs(end))
            .unwrap_or_else(|| panic!("{fqdn}: no valid ranking in what GnuPG kept"));
        assert_eq!(newest[10], format!("{:x}x", u8::from(got.level)), "{fqdn}: the newest certification's level");
        assert!(
            (got.ranking.reliability * 100.0 - rows[fqdn].uptime).abs() <= 0.06,
            "{fqdn}: {:?} against {:?}",
            got.ranking,
            rows[fqdn]
        );
        match fqdn {
            "dead.test" | "flaky.test" => assert_eq!(got.level, SignatureType::GenericCertification, "{fqdn}: {got:?}"),
            _ => assert!(
                matches!(got.level, SignatureType::PositiveCertification | SignatureType::CasualCertification),
                "{fqdn}: {got:?}"
            ),
        }
    }

    // A client that trusts the pinger: fetches from SKS, sees the rankings, and over SENDS
    // originals sent through Postfix never routes through the dead or the flaky mix.
    let pinger_file = dir.join("bin/pinger.asc");
    std::fs::write(&pinger_file, &pinger_key).unwrap();
    let client = |now: u64, args: &[&str], stdin: &[u8]| ok(at(lab.sender(&pf), now, args), stdin);
    client(end, &["directory", "trust-pinger", pinger_file.to_str().unwrap()], b"");
    let fetched = String::from_utf8(client(end, &["directory", "fetch", "--keyserver", &sks.url], b"").stdout).unwrap();
    assert!(fetched.starts_with("found 6, kept 6"), "{fetched}");
    let shown = String::from_utf8(client(end, &["directory", "list"], b"").stdout).unwrap();
    eprintln!("the trusting client's directory:\n{shown}");
    for (fqdn, _) in MIXES {
        let l = shown
            .lines()
            .find(|l| l.starts_with(&format!("mixtasy@{fqdn} ")))
            .unwrap_or_else(|| panic!("{fqdn} in\n{shown}"));
        assert!(l.contains("reliability ") && l.contains("(1 pinger)"), "{fqdn} ranked by the pinger: {l}");
    }
    let marker = pf.log().len();
    let calls = flaky_calls();
    for i in 0..SENDS {
        client(end, &["send"], format!("To: <user{i}@{RCPT_DOMAIN}>\nSubject: ranked {i}\n\nranked {i}\n").as_bytes());
    }
    pf.wait_idle();
    let mut sweeps = 0;
    while pf.delivered().len() < SENDS {
        sweeps += 1;
        assert!(
            sweeps <= 12,
            "{} of {SENDS} arrived after 12 sweeps; Postfix log ends:\n{}",
            pf.delivered().len(),
            pf.log_tail()
        );
        for fqdn in &live {
            node(fqdn, end + 300 + sweeps * 600, &["--round"]);
        }
        pf.wait_idle();
    }
    assert_eq!(pf.delivered().len(), SENDS, "each original once");
    let log = pf.log();
    let to_mixes: Vec<String> =
        log_deliveries(&log[marker..]).into_iter().map(|(a, _, _)| a).filter(|a| a.starts_with("mixtasy@")).collect();
    assert_eq!(to_mixes.len(), 4 * SENDS, "four hops a message, nothing else: {to_mixes:?}");
    assert!(
        !to_mixes.iter().any(|a| a.ends_with("@dead.test") || a.ends_with("@flaky.test")),
        "a path crossed a mix the pinger ranks badly: {to_mixes:?}"
    );
    assert_eq!(flaky_calls(), calls, "the flaky mix sent nothing");

    // A client that trusts no pinger behaves as before: any mix with a key, dead and flaky
    // included. Its first hops (To: of each wire message) show it.
    let plain = dir.join("client2");
    let mut first_hops = std::collections::BTreeMap::<String, usize>::new();
    let mut c = mixtasy();
    c.arg("--home").arg(&plain);
    ok(at(c, end, &["directory", "fetch", "--keyserver", &sks.url]), b"");
    for i in 0..CREATES {
        let out = dir.join(format!("plain-{i}"));
        let mut c = mixtasy();
        c.arg("--home").arg(&plain);
        ok(at(c, end, &["create", "--out", out.to_str().unwrap()]), b"To: bob@rcpt.test\nSubject: plain\n\nplain\n");
        for f in std::fs::read_dir(&out).unwrap() {
            *first_hops.entry(wire_to(&std::fs::read(f.unwrap().path()).unwrap())).or_default() += 1;
        }
    }
    eprintln!("the untrusting client's first hops over {CREATES} messages: {first_hops:?}");
    assert!(first_hops.contains_key("dead.test") || first_hops.contains_key("flaky.test"), "{first_hops:?}");

    let fig: Vec<String> = MIXES
        .iter()
        .map(|(f, _)| {
            format!(
                "{f} {:.1} % {}:{:02}",
                rows[*f].uptime,
                rows[*f].latent_secs / 3600,
                rows[*f].latent_secs % 3600 / 60
            )
        })
        .collect();
    eprintln!("pingnet: {}; ranked sends took {sweeps} sweeps; {:.1?} in all", fig.join(", "), started.elapsed());
}
