//! The nym server on the real Postfix (issue 15): `scripts/postfix-hookup --nym-domain`
//! hooks a whole domain into `mixtasy-nymd`'s Maildir (and refuses a domain the host already
//! receives or routes, and takes back exactly what it did), and a nym lives its whole life
//! through the five mixes of tests/postfix.rs: GnuPG as the owner creates it and confirms it
//! through the network, an outside sender mails it, and it sends to an outside recipient.
//!
//! Root only, like tests/postfix.rs (its `Postfix` lab: own instance, virtual(8) for every
//! test domain, the nodes and the nym server as the unprivileged user `mixtasy-test`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::nym::{self, code_in, header, DOMAIN};
use crate::postfix::{
    cmd_ok, conf_snapshot, hookup, hookup_script, is_root, new_mail, split_mail, submit, test_user, Lab, Postfix,
    MIXES, RCPT_DOMAIN, USER,
};
use crate::util::{describe, ok, run, Gpg};

fn real_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A nym server home made by `mixtasy-nymd init` as USER in the lab, with the group in a
/// Maildir of its own (no NNTP server here) and sendmail finding the lab's Postfix.
struct NymServer {
    bin: PathBuf,
    home: PathBuf,
}

impl NymServer {
    fn init(lab: &Lab, uid: u32, gid: u32) -> NymServer {
        let dir = lab.net.dir.path().join("nym");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        // The binary as USER can run it (copied if the build directory is closed to USER).
        let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_mixtasy-nymd"));
        if !lab.user_cmd(&bin).arg("--version").output().is_ok_and(|o| o.status.success()) {
            let to = lab.net.dir.path().join("bin/mixtasy-nymd");
            std::fs::copy(&bin, &to).unwrap();
            bin = to;
        }
        let server = NymServer { bin, home: dir.join("home") };
        let mut c = lab.user_cmd(&server.bin);
        c.arg("--home").arg(&server.home).args(["init", "--domain", DOMAIN]);
        ok(c, b"");
        crate::util::configure_file(&server.home.join("mixtasy-nymd.toml"), "news", "\"maildir:news\"");
        server
    }

    /// `mixtasy-nymd --home HOME ARGS` as USER, sendmail finding the lab's Postfix.
    fn cmd(&self, lab: &Lab, pf: &Postfix, args: &[&str]) -> Command {
        let mut c = lab.user_cmd(&self.bin);
        c.arg("--home").arg(&self.home).env("MAIL_CONFIG", &pf.conf).args(args);
        c
    }

    fn run(&self, lab: &Lab, pf: &Postfix) -> String {
        let out = ok(self.cmd(lab, pf, &["--run"]), b"");
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(said.starts_with("mixtasy-nymd: run:"), "{said}");
        said
    }

    fn counter(&self, lab: &Lab, pf: &Postfix, name: &str) -> i64 {
        let out = String::from_utf8(ok(self.cmd(lab, pf, &["status"]), b"").stdout).unwrap();
        out.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).map(|v| v.parse().unwrap())).unwrap_or(0)
    }

    fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }
}

/// scripts/postfix-hookup --root --nym-domain DOMAIN for the lab's nym server.
fn nym_hookup(pf: &Postfix, home: &Path, domain: &str, extra: &[&str]) -> Output {
    let mut c = Command::new(hookup_script());
    c.args(["--root", "--nym-domain", domain, "--node-user", USER, "--home"])
        .arg(home)
        .arg("--config-dir")
        .arg(&pf.conf)
        .args(extra);
    run(c, b"")
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeded(what: &str, out: &Output) {
    assert!(out.status.success(), "{}", describe(&Command::new(what), out));
}

fn refused(out: &Output, why: &str) {
    assert!(
        out.status.code() == Some(2) && String::from_utf8_lossy(&out.stderr).contains(why),
        "want a refusal saying {why:?}\n{}",
        describe(&Command::new("postfix-hookup --nym-domain"), out)
    );
}

/// The first `X-Original-To:` of a delivered mail (the one Postfix put on top).
fn original_to(mail: &[u8]) -> String {
    header(mail, "X-Original-To").to_ascii_lowercase()
}

/// The hook-up of a whole domain on a host with virtual mailbox domains: it refuses every
/// domain the host already receives or routes, whatever the way, and a home that serves
/// another domain; a dry run changes nothing; then every address of the domain (whatever its
/// case) reaches the server's Maildir with its envelope recipient on top, which the server
/// reads, even under a forged X-Original-To lower down; the host's other domain still
/// receives; a second run changes nothing; `--remove` gives back main.cf and the maps byte
/// for byte, and the domain's mail no longer reaches the server. A mix node hooked up on the
/// same host (its lines in the same maps) keeps its mail throughout.
#[test]
fn nym_domain_hookup_refuses_takes_the_whole_domain_and_removes() {
    assert!(is_root(), "this test runs a real Postfix instance and the nym server as {USER}: it must run as root");
    let (uid, gid) = test_user();
    let lab = Lab::new(uid, gid);
    let server = NymServer::init(&lab, uid, gid);
    // The host receives host.test locally, relays for relay.test (and so its subdomains),
    // has alias.test as a virtual alias domain, routes routed.test itself, and catches
    // every address of caught.test by a virtual alias.
    let pf = Postfix::start_with(
        uid,
        gid,
        &[
            "mydestination = host.test",
            "relay_domains = relay.test",
            "virtual_alias_domains = alias.test",
            "virtual_alias_maps = inline:{@caught.test=someone@rcpt.test}",
            "transport_maps = inline:{routed.test=error:elsewhere}",
        ],
    );
    // A mix node on the same host, hooked up first: its lines share our maps.
    let pristine = conf_snapshot(&pf);
    let mut c = lab.node_raw("mix1.test");
    c.args(["init", "--address", "mixtasy@mix1.test", "--modes", "middleman"]);
    ok(c, b"");
    succeeded("hookup mix1.test", &hookup(&lab, &pf, "mix1.test", &[]));
    let before = conf_snapshot(&pf);
    let main_before = std::fs::read(pf.conf.join("main.cf")).unwrap();
    // Refusals are checked against an empty home (no domain of its own to compare with).
    let empty = lab.net.dir.path().join("nodes");
    for (domain, why) in [
        (RCPT_DOMAIN, "(virtual_mailbox_domains)"),
        ("host.test", "(mydestination)"),
        ("alias.test", "(virtual_alias_domains)"),
        ("nym.relay.test", "(relay_domains: relay.test)"),
        ("routed.test", "in transport_maps"),
        ("caught.test", "catch-all virtual alias"),
    ] {
        refused(&nym_hookup(&pf, &empty, domain, &[]), why);
    }
    refused(&nym_hookup(&pf, &server.home, "other.test", &[]), "is the nym server of nym.test");
    let mut c = Command::new(hookup_script());
    c.args(["--root", "--domain", "mix1.test", "--nym-domain", DOMAIN]);
    refused(&run(c, b""), "give one of --domain and --nym-domain");
    let mut c = Command::new(hookup_script());
    c.args(["--user", "--nym-domain", DOMAIN]).env("HOME", lab.net.dir.path());
    refused(&run(c, b""), "are for --root");
    assert_eq!(conf_snapshot(&pf), before, "a refused hook-up changed the configuration");

    let out = nym_hookup(&pf, &server.home, DOMAIN, &["--dry-run"]);
    succeeded("hookup --dry-run", &out);
    assert!(said(&out).contains(&format!("would set @{DOMAIN} -> ")), "{}", said(&out));
    assert_eq!(conf_snapshot(&pf), before, "a dry run changed the configuration");
    let out = nym_hookup(&pf, &server.home, DOMAIN, &[]);
    succeeded("hookup", &out);
    assert!(said(&out).contains("reload Postfix") && !said(&out).contains("maildir ="), "{}", said(&out));
    let hooked = conf_snapshot(&pf);
    let out = nym_hookup(&pf, &server.home, DOMAIN, &[]);
    assert!(out.status.success() && said(&out).starts_with("nothing to change"), "second run:\n{}", said(&out));
    assert_eq!(conf_snapshot(&pf), hooked, "a second run changed the configuration");

    // Any address of the domain, a reserved one and one in capitals included; the host's
    // catch-all domain keeps its mail. One mail carries a forged X-Original-To lower down.
    for addr in ["nobody-yet@nym.test", "config@nym.test", "Some.Name@NYM.TEST"] {
        submit(&pf, addr, "to the nym domain");
    }
    let mut c = Command::new("/usr/sbin/sendmail");
    c.env("MAIL_CONFIG", &pf.conf).args(["-i", "-f", "tester@host.test", "--", "forged@nym.test"]);
    ok(c, b"X-Original-To: send@nym.test\nTo: forged@nym.test\nSubject: forged\n\nforged\n");
    submit(&pf, "bob@rcpt.test", "host mail");
    pf.wait_idle();
    let got = nym::files(&server.maildir().join("new"));
    let rcpts: BTreeSet<String> = got.iter().map(|m| original_to(m)).collect();
    let want: BTreeSet<String> = ["nobody-yet@nym.test", "config@nym.test", "some.name@nym.test", "forged@nym.test"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(rcpts, want, "the envelope recipients on top; Postfix log:\n{}", pf.log_tail());
    assert_eq!(pf.delivered().len(), 1, "the host's own domain still receives");

    // The server reads them by the recipient Postfix wrote: two unknown nyms (the forged one
    // too: not taken for send@), one request that is no OpenPGP message.
    server.run(&lab, &pf);
    assert_eq!(server.counter(&lab, &pf, "intake.taken"), 4);
    assert_eq!(server.counter(&lab, &pf, "drop.unknown"), 3, "three unknown nyms");
    assert_eq!(server.counter(&lab, &pf, "send.sent"), 0);
    assert_eq!(new_mail(&server.maildir()), 0);

    // --remove: everything as before; the domain's mail no longer reaches the server.
    let out = nym_hookup(&pf, &server.home, DOMAIN, &["--remove", "--dry-run"]);
    assert!(out.status.success() && said(&out).contains("would take"), "{}", said(&out));
    assert_eq!(conf_snapshot(&pf), hooked, "a dry run changed the configuration");
    let out = nym_hookup(&pf, &server.home, DOMAIN, &["--remove"]);
    succeeded("hookup --remove", &out);
    assert_eq!(conf_snapshot(&pf), before, "--remove left the configuration different:\n{}", said(&out));
    assert_eq!(std::fs::read(pf.conf.join("main.cf")).unwrap(), main_before);
    let out = nym_hookup(&pf, &server.home, DOMAIN, &["--remove"]);
    assert!(out.status.success() && said(&out).contains("nothing to remove"), "{}", said(&out));
    submit(&pf, "late@nym.test", "after removal");
    submit(&pf, "bob@rcpt.test", "host mail after removal");
    pf.wait_idle();
    assert_eq!(new_mail(&server.maildir()), 0, "the removed domain still reaches the server");
    assert_eq!(pf.delivered().len(), 2, "Postfix log:\n{}", pf.log_tail());
    // The node kept its delivery all along; its own removal leaves the lab as it was.
    submit(&pf, "mixtasy@mix1.test", "for the node");
    pf.wait_idle();
    assert_eq!(new_mail(&lab.net.home("mix1.test").join("Maildir")), 1, "Postfix log:\n{}", pf.log_tail());
    succeeded("hookup mix1.test --remove", &hookup(&lab, &pf, "mix1.test", &["--remove"]));
    assert_eq!(conf_snapshot(&pf), pristine, "the lab's configuration after both removals");
}

/// A host with no virtual mailbox domain at all (Debian's default Postfix): the hook-up sets
/// virtual_mailbox_base to / for its line, the domain's mail arrives, and `--remove` gives
/// main.cf back byte for byte.
#[test]
fn nym_domain_hookup_on_a_host_without_virtual_domains() {
    assert!(is_root(), "this test runs a real Postfix instance and the nym server as {USER}: it must run as root");
    let (uid, gid) = test_user();
    let lab = Lab::new(uid, gid);
    let server = NymServer::init(&lab, uid, gid);
    // The lab's virtual settings taken out of main.cf: Postfix's defaults, as on such a host.
    let pf = Postfix::start_with(uid, gid, &[]);
    let conf = pf.conf.to_str().unwrap();
    let virtual_settings = [
        "virtual_mailbox_domains",
        "virtual_mailbox_base",
        "virtual_mailbox_maps",
        "virtual_uid_maps",
        "virtual_gid_maps",
    ];
    cmd_ok("postconf", &[&["-c", conf, "-X"][..], &virtual_settings].concat());
    cmd_ok("postfix", &["-c", conf, "reload"]);
    let before = conf_snapshot(&pf);
    let out = nym_hookup(&pf, &server.home, DOMAIN, &[]);
    succeeded("hookup", &out);
    assert!(said(&out).contains("set virtual_mailbox_base = /"), "{}", said(&out));
    submit(&pf, "alice@nym.test", "on a plain host");
    pf.wait_idle();
    assert_eq!(new_mail(&server.maildir()), 1, "Postfix log:\n{}", pf.log_tail());
    let out = nym_hookup(&pf, &server.home, DOMAIN, &["--remove"]);
    succeeded("hookup --remove", &out);
    assert!(said(&out).contains("put virtual_mailbox_base back"), "{}", said(&out));
    assert_eq!(conf_snapshot(&pf), before, "--remove left the configuration different:\n{}", said(&out));
}

/// What the owner's mail program writes about them; none of it may leave the nym server.
const OWNER_TRACES: [&str; 6] = [
    "alice.real",
    "Alice Realname",
    "alice-laptop",
    "NeoMutt",
    "Mon, 2 Mar 2026 10:00:00 +0200",
    "owner-7@alice-laptop",
];

/// A nym's whole life on the real Postfix through five mixes, GnuPG as its owner: the create
/// request and the confirmation go to config@ through the network (the nym's delivery is
/// `mixtasy:owner@rcpt.test`, so the confirmation comes back through it as well); an outside
/// sender's mail to the nym arrives at the owner's mailbox sealed, and GnuPG opens it; mail
/// the nym sends through send@ reaches an outside recipient `From: alice@nym.test`, with
/// nothing of the owner (key ids, their From, Date, Message-ID, User-Agent) and nothing of
/// the mixes it came through. Requests replayed by a hostile exit are refused.
#[test]
fn a_nym_through_five_mixes_and_a_real_postfix() {
    let started = std::time::Instant::now();
    assert!(is_root(), "this test runs a real Postfix instance and the mixes as {USER}: it must run as root");
    let (uid, gid) = test_user();
    let lab = Lab::new(uid, gid);
    for (fqdn, modes) in MIXES {
        let mut c = lab.node_raw(fqdn);
        c.args(["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", modes]);
        ok(c, b"");
        // The whole pool leaves every round, as in tests/postfix.rs.
        lab.net.configure(fqdn, "min_pool", "0");
        lab.net.configure(fqdn, "threshold", "1");
        lab.net.configure(fqdn, "rate", "1");
    }
    let server = NymServer::init(&lab, uid, gid);
    let pf = Postfix::start_with(uid, gid, &[]);
    for (fqdn, _) in MIXES {
        succeeded(&format!("hookup {fqdn}"), &hookup(&lab, &pf, fqdn, &[]));
    }
    succeeded("nym hookup", &nym_hookup(&pf, &server.home, DOMAIN, &[]));

    // Every party knows the five mixes: the nodes (for dummies), the sender, the server.
    let mut keys = Vec::new();
    for (fqdn, _) in MIXES {
        let mut c = lab.node(&pf, fqdn);
        c.args(["key", "export"]);
        keys.extend(ok(c, b"").stdout);
    }
    for (fqdn, _) in MIXES {
        let mut c = lab.node(&pf, fqdn);
        c.args(["directory", "import"]);
        ok(c, &keys);
    }
    let mut c = lab.sender(&pf);
    c.args(["directory", "import"]);
    ok(c, &keys);
    ok(server.cmd(&lab, &pf, &["directory-import"]), &keys);

    // The owner: stock GnuPG with the server's key and a new nym key.
    let owner = nym::Lab { dir: tempfile::tempdir().unwrap(), gpg: Gpg::new(), now: real_now() };
    owner.gpg.import(&ok(server.cmd(&lab, &pf, &["key"]), b"").stdout);
    let mut create = owner.new_nym_key("alice");
    create.extend_from_slice(format!("hsub: alice-hsub\ndelivery: mixtasy:owner@{RCPT_DOMAIN}\n").as_bytes());
    let mut seen = Vec::new();
    let mut sweeps = Vec::new();

    // Create, through the network: the confirmation comes back through it.
    lab.send(&pf, &to_server("config", &owner.request("alice", &create, &[])));
    let (n, new) = sweep_until(&lab, &pf, &server, &mut seen, 1);
    sweeps.push(n);
    let confirmation = open(&owner, &new[0]);
    let code = code_in(&confirmation);

    // Confirm, through the network: the server says so through the confirmed channel.
    let confirm = to_server("config", &owner.request("alice", format!("confirm: {code}\n").as_bytes(), &[]));
    lab.send(&pf, &confirm);
    let (n, new) = sweep_until(&lab, &pf, &server, &mut seen, 1);
    sweeps.push(n);
    assert!(open(&owner, &new[0]).contains("Delivery confirmed"));
    assert_eq!((server.counter(&lab, &pf, "config.created"), server.counter(&lab, &pf, "config.confirmed")), (1, 1));

    // An outside sender mails the nym; the owner's mailbox gets it sealed; GnuPG opens it.
    let mut c = Command::new("/usr/sbin/sendmail");
    c.env("MAIL_CONFIG", &pf.conf).args(["-i", "-f", "carol@outside.test", "--", "alice@nym.test"]);
    ok(c, b"From: carol@outside.test\nTo: alice@nym.test\nSubject: hello alice\n\nthe secret body for alice\n");
    let (n, new) = sweep_until(&lab, &pf, &server, &mut seen, 1);
    sweeps.push(n);
    assert_eq!(original_to(&new[0]), format!("owner@{RCPT_DOMAIN}"));
    let text = String::from_utf8_lossy(&new[0]).into_owned();
    assert!(!text.contains("secret body") && !text.contains("carol"), "the mailbox sees the plaintext:\n{text}");
    let inbound = open(&owner, &new[0]);
    assert!(inbound.contains("the secret body for alice") && inbound.contains("carol@outside.test"), "{inbound}");

    // The nym sends to dave, an outside recipient, through send@: one mail to dave (straight
    // from the server's Postfix) and the server's "Sent" through the network to the owner.
    let original = format!(
        "From: Alice Realname <alice.real@home.example>\nUser-Agent: NeoMutt/20250113\n\
         Message-ID: <owner-7@alice-laptop.home.example>\nDate: Mon, 2 Mar 2026 10:00:00 +0200\n\
         To: dave@{RCPT_DOMAIN}\nSubject: from the nym\n\nthe nym's words to dave\n"
    );
    let send = to_server("send", &owner.request("alice", original.as_bytes(), &[]));
    lab.send(&pf, &send);
    let (n, new) = sweep_until(&lab, &pf, &server, &mut seen, 2);
    sweeps.push(n);
    let to_dave: Vec<&Vec<u8>> = new.iter().filter(|m| original_to(m) == format!("dave@{RCPT_DOMAIN}")).collect();
    assert_eq!(to_dave.len(), 1, "one mail to dave");
    let dave = String::from_utf8_lossy(to_dave[0]).into_owned();
    assert_eq!(header(to_dave[0], "From"), format!("alice@{DOMAIN}"), "{dave}");
    assert!(header(to_dave[0], "X-Anonymous").contains(DOMAIN), "labelled as a nym's mail:\n{dave}");
    let body = String::from_utf8_lossy(split_mail(to_dave[0]).1).into_owned();
    assert!(body.starts_with("the nym's words to dave\n") && body.contains("\n-- "), "{dave}");
    assert!(body.contains(&format!("to block@{DOMAIN} from the address")), "says how to block:\n{dave}");
    let mut traces: Vec<String> = OWNER_TRACES.iter().map(|s| s.to_string()).collect();
    traces.extend(key_ids(&owner.gpg, &format!("alice@{DOMAIN}")));
    traces.extend(MIXES.iter().map(|(f, _)| f.to_string()));
    traces.extend(["mixtasy@".into(), "Mixtasy anonymous remailer".into(), "PGP".into()]);
    let lower = dave.to_ascii_lowercase();
    for t in &traces {
        assert!(!lower.contains(&t.to_ascii_lowercase()), "the nym's mail shows {t:?}:\n{dave}");
    }
    let ack: Vec<&Vec<u8>> = new.iter().filter(|m| original_to(m) == format!("owner@{RCPT_DOMAIN}")).collect();
    assert!(ack.len() == 1 && open(&owner, ack[0]).contains("Your mail went to 1 recipient"));

    // A hostile exit saw both requests leave the network (encrypted to the server, but whole)
    // and hands them to Postfix again: the server refuses the replays and sends nothing.
    let out_before = server.counter(&lab, &pf, "out.smtp");
    for (local, request) in [("config", &confirm), ("send", &send)] {
        let mut c = Command::new("/usr/sbin/sendmail");
        c.env("MAIL_CONFIG", &pf.conf).args(["-i", "-f", "mixtasy@mix4.test", "--", &format!("{local}@{DOMAIN}")]);
        ok(c, request);
    }
    pf.wait_idle();
    server.run(&lab, &pf);
    pf.wait_idle();
    assert_eq!(server.counter(&lab, &pf, "refused.replay"), 2, "both replays refused");
    assert_eq!(server.counter(&lab, &pf, "out.smtp"), out_before, "a replay made the server send");
    assert_eq!(pf.delivered().len(), seen.len(), "a replay reached dave or the owner");

    for (name, want) in [("inbound.delivered", 1), ("send.sent", 1), ("intake.deferred", 0), ("out.smtp-failed", 0)] {
        assert_eq!(server.counter(&lab, &pf, name), want, "{name}");
    }
    // Postfix delivered to the lab's domains only, nothing deferred or bounced.
    for (addr, _, status) in crate::postfix::log_deliveries(&pf.log()) {
        assert_eq!(status, "sent", "{addr}: {status}; Postfix log:\n{}", pf.log_tail());
    }
    eprintln!(
        "nym through postfix: sweeps (create, confirm, inbound, send) {sweeps:?}, {} mails delivered in all, {:.1?}",
        crate::postfix::log_deliveries(&pf.log()).len(),
        started.elapsed()
    );
}

/// An original to `local@nym.test` carrying `request` (what `mixtasy send` takes).
fn to_server(local: &str, request: &[u8]) -> Vec<u8> {
    let mut m = format!("To: {local}@{DOMAIN}\nSubject: request\n\n").into_bytes();
    m.extend_from_slice(request);
    m
}

/// Decrypts a mail the owner received, with GnuPG alone.
fn open(owner: &nym::Lab, mail: &[u8]) -> String {
    String::from_utf8(owner.gpg.ok(&["--decrypt"], mail).stdout).unwrap()
}

/// The fingerprints and long key ids of every key of `uid` in `gpg`, upper-case hex.
fn key_ids(gpg: &Gpg, uid: &str) -> Vec<String> {
    let out = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys", uid], b"").stdout).unwrap();
    let mut ids = Vec::new();
    for l in out.lines().filter(|l| l.starts_with("fpr:")) {
        let fpr = l.split(':').nth(9).unwrap().to_string();
        ids.push(fpr[fpr.len() - 16..].to_string());
        ids.push(fpr);
    }
    assert!(ids.len() >= 4, "the nym key and its subkey: {out}");
    ids
}

/// Sweeps (a round of every mix, each followed by Postfix's deliveries, then a run of the
/// server) until `want` new mails are in rcpt.test's Maildir; returns the sweeps and the new
/// mails. Bounded: 15 sweeps.
fn sweep_until(
    lab: &Lab,
    pf: &Postfix,
    server: &NymServer,
    seen: &mut Vec<Vec<u8>>,
    want: usize,
) -> (usize, Vec<Vec<u8>>) {
    for sweep in 1..=15 {
        for (fqdn, _) in MIXES {
            lab.round(pf, fqdn);
            pf.wait_idle();
        }
        server.run(lab, pf);
        pf.wait_idle();
        let new: Vec<Vec<u8>> = pf.delivered().into_iter().filter(|m| !seen.contains(m)).collect();
        if new.len() >= want {
            assert_eq!(new.len(), want, "more mail than expected");
            seen.extend(new.iter().cloned());
            return (sweep, new);
        }
    }
    let statuses: Vec<String> = MIXES.iter().map(|(f, _)| format!("{f}: {}", lab.status(pf, f).0)).collect();
    let nymd = String::from_utf8_lossy(&ok(server.cmd(lab, pf, &["status"]), b"").stdout).into_owned();
    panic!(
        "{want} new mail(s) not delivered after 15 sweeps\n{}\nnym server:\n{nymd}\nPostfix log ends:\n{}",
        statuses.join("\n"),
        pf.log_tail()
    );
}
