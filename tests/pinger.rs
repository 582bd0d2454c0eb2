//! The pinger against a lab network (maildir transport, simulated days): good mixes near
//! 100 %, a mix whose rounds never run at 0, a middleman-only mix measured through the
//! trusted exit; `mlist2.txt` read by an independent reader written from Echolot's format;
//! the published files' signatures checked by GnuPG; and an adversary's forged, replayed
//! and foreign mail in the pinger's Maildir.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use openpgp::parse::Parse;
use sequoia_openpgp as openpgp;

use crate::util::{mixtasy_pinger, ok, run, Gpg, Net};

const PINGER: &str = "pinger@ping.test";
const HOUR: u64 = 3600;

struct Pinger {
    home: PathBuf,
}

impl Pinger {
    fn new(net: &Net) -> Self {
        let p = Pinger { home: net.dir.path().join("pinger") };
        let mut c = p.cmd(net.now);
        c.args(["init", "--address", PINGER]);
        ok(c, b"");
        let inbox = net.mailbox(PINGER);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(inbox.join(sub)).unwrap();
        }
        p.configure("maildir", &format!("{:?}", inbox.display().to_string()));
        p.configure("transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
        p
    }

    fn cmd(&self, now: u64) -> Command {
        let mut c = mixtasy_pinger();
        c.arg("--home").arg(&self.home).arg("--now").arg(now.to_string());
        c
    }

    fn configure(&self, key: &str, value: &str) {
        let path = self.home.join("mixtasy-pinger.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().any(|l| l.starts_with(&format!("{key} = "))), "no setting {key}");
        let out: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with(&format!("{key} = ")) { format!("{key} = {value}") } else { l.to_string() })
            .collect();
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
    }

    fn round(&self, now: u64) -> String {
        let mut c = self.cmd(now);
        c.arg("--round");
        String::from_utf8(ok(c, b"").stdout).unwrap()
    }

    /// Gives the pinger every node's current public key (the lab has no keyserver).
    fn import_keys(&self, net: &Net, now: u64) {
        let mut keys = Vec::new();
        for n in &net.nodes {
            keys.extend(net.export(n, false));
        }
        let mut c = self.cmd(now);
        c.args(["directory", "import"]);
        ok(c, &keys);
    }

    /// `status`: the table's text and the counters.
    fn status(&self, now: u64) -> (String, BTreeMap<String, i64>) {
        let mut c = self.cmd(now);
        c.arg("status");
        let text = String::from_utf8(ok(c, b"").stdout).unwrap();
        let counters = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect();
        (text, counters)
    }

    fn output(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.home.join("public").join(name)).unwrap()
    }

    fn key(&self) -> Vec<u8> {
        let mut c = self.cmd(0);
        c.arg("key");
        ok(c, b"").stdout
    }
}

/// One row of an `mlist2.txt`, as Echolot's format defines it.
#[derive(Debug)]
pub(crate) struct Mlist2Row {
    pub(crate) latent_hist: String,
    pub(crate) latent_secs: u64,
    pub(crate) uptime_hist: String,
    pub(crate) uptime: f64,
    pub(crate) options: String,
}

/// A reader written from Echolot's documented `mlist2.txt` (Stats.pm build_list2): the
/// version and date lines, a header, a rule, one whitespace-separated row per remailer
/// (nick, 12-character latency history, `h:mm` latency, 12-character uptime history,
/// `NN.N%`, options), then optional broken chains `(a b)` and `$remailer{"nick"} = "<addr> caps";` lines.
/// Rows by nick, broken chains, capabilities by nick.
pub(crate) type Mlist2 = (BTreeMap<String, Mlist2Row>, Vec<(String, String)>, BTreeMap<String, String>);

pub(crate) fn read_mlist2(text: &str) -> Mlist2 {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Stats-Version: 2.0"));
    let generated = lines.next().unwrap();
    assert!(generated.starts_with("Generated: ") && generated.ends_with(" GMT"), "{generated}");
    assert!(lines.next().unwrap().split_whitespace().eq([
        "Mixmaster",
        "Latent-Hist",
        "Latent",
        "Uptime-Hist",
        "Uptime",
        "Options"
    ]));
    assert!(lines.next().unwrap().chars().all(|c| c == '-'));
    let mut rows = BTreeMap::new();
    let mut broken = Vec::new();
    let mut caps = BTreeMap::new();
    let mut section = "rows";
    for l in lines {
        if l.is_empty() {
            if section == "rows" {
                section = "after";
            }
            continue;
        }
        if l.starts_with("Broken type-II remailer chains") {
            section = "broken";
            continue;
        }
        if l == "Remailer-Capabilities:" {
            section = "caps";
            continue;
        }
        match section {
            "rows" => {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert!(f.len() == 5 || f.len() == 6, "row {l:?}");
                let hist_ok = |h: &str, set: &str| h.len() == 12 && h.chars().all(|c| set.contains(c));
                assert!(hist_ok(f[1], "0123456789ABCDEFGH?"), "latency history {l:?}");
                assert!(hist_ok(f[3], "0123456789+?"), "uptime history {l:?}");
                let (h, m) = f[2].split_once(':').unwrap();
                let latent_secs = h.trim().parse::<u64>().unwrap_or(0) * 3600 + m.parse::<u64>().unwrap() * 60;
                let uptime: f64 = f[4].strip_suffix('%').unwrap().parse().unwrap();
                rows.insert(
                    f[0].to_string(),
                    Mlist2Row {
                        latent_hist: f[1].into(),
                        latent_secs,
                        uptime_hist: f[3].into(),
                        uptime,
                        options: f.get(5).unwrap_or(&"").to_string(),
                    },
                );
            }
            "broken" => {
                let inner =
                    l.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| panic!("chain {l:?}"));
                let (a, b) = inner.split_once(' ').unwrap();
                broken.push((a.to_string(), b.to_string()));
            }
            "caps" => {
                let rest = l.strip_prefix("$remailer{\"").unwrap_or_else(|| panic!("capabilities {l:?}"));
                let (nick, rest) = rest.split_once("\"} = \"").unwrap();
                caps.insert(nick.to_string(), rest.strip_suffix("\";").unwrap().to_string());
            }
            _ => panic!("unexpected line {l:?}"),
        }
    }
    (rows, broken, caps)
}

#[test]
fn four_days_of_pings_find_the_dead_mix() {
    let mut net = Net::new(1_800_000_000);
    net.add_lab_node("a.test", "middleman,exitpublic");
    net.add_lab_node("b.test", "middleman,exitpublic");
    // A middleman only: pinged through the trusted exit a.test.
    net.add_lab_node("c.test", "middleman");
    net.add_lab_node("dead.test", "middleman,exitpublic");
    let pinger = Pinger::new(&net);
    pinger.configure("trusted_exit", "\"mixtasy@a.test\"");
    pinger.configure("chain_interval", "\"1d\"");
    let days = 4;
    for step in 0..days * 24 {
        let t = step * HOUR;
        if step % 24 == 0 {
            pinger.import_keys(&net, net.now + t);
        }
        pinger.round(net.now + t);
        for n in ["a.test", "b.test", "c.test"] {
            net.round_later(n, t);
        }
    }
    let end = net.now + days * 24 * HOUR;
    let (table, counters) = pinger.status(end);
    eprintln!("{table}");
    let list = String::from_utf8(pinger.output("mlist2.txt")).unwrap();
    eprintln!("{list}");
    let (rows, broken, caps) = read_mlist2(&list);
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["a.test", "b.test", "c.test", "dead.test"]);
    for good in ["a.test", "b.test", "c.test"] {
        let r = &rows[good];
        // 90, not 100: c.test (two hops through the trusted exit) once measured 95.3 %, a
        // shortfall not yet explained (issue 14's note); the dead mix is at 0.
        assert!(r.uptime >= 90.0, "{good}: {r:?}");
        assert!(r.latent_secs <= 3 * HOUR, "{good}: {r:?}");
        assert!(
            r.latent_hist.ends_with("2222") || r.latent_hist.chars().rev().take(4).all(|c| ('0'..='3').contains(&c)),
            "{good}: {r:?}"
        );
        assert!(r.uptime_hist.starts_with("????????"), "{good}: 4 days of history only: {r:?}");
    }
    let dead = &rows["dead.test"];
    assert_eq!(dead.uptime, 0.0, "{dead:?}");
    // Pinged at 0 % until its subkey expired (2 days: a mix whose rounds never run does not
    // rotate), then no longer pinged: no key to encrypt to.
    assert!(
        dead.uptime_hist.chars().all(|c| c == '0' || c == '?') && dead.uptime_hist.matches('0').count() >= 2,
        "{dead:?}"
    );
    assert_eq!(dead.latent_hist, "????????????", "{dead:?}");
    assert_eq!(rows["c.test"].options, "D", "a middleman only is Echolot's `middle`");
    assert_eq!(rows["a.test"].options, "");
    assert_eq!(caps["c.test"], "<mixtasy@c.test> mixtasy middle");
    assert!(broken.contains(&("a.test".to_string(), "dead.test".to_string())), "{broken:?}");
    assert!(
        broken.iter().all(|(a, b)| a == "dead.test" || b == "dead.test"),
        "only chains with the dead mix are broken: {broken:?}"
    );
    assert!(counters["ping.returned"] > 100, "{counters:?}");
    assert!(!counters.contains_key("ping.forged") && !counters.contains_key("ping.replayed"), "{counters:?}");

    // GnuPG, the independent peer, checks both detached signatures, and refuses a changed list.
    let gpg = Gpg::new();
    // At the simulated time: the key and signatures are from it.
    let faked = format!("{end}");
    gpg.ok(&["--faked-system-time", &faked, "--import"], &pinger.key());
    let dir = pinger.home.join("public");
    for (file, sig) in [("mlist2.txt", "mlist2.txt.asc"), ("pubring.asc", "pubring.asc.sig")] {
        gpg.ok(
            &[
                "--faked-system-time",
                &faked,
                "--verify",
                dir.join(sig).to_str().unwrap(),
                dir.join(file).to_str().unwrap(),
            ],
            b"",
        );
    }
    let forged = net.dir.path().join("mlist2.txt");
    std::fs::write(&forged, list.replace("  0.0%", "100.0%")).unwrap();
    let mut c = gpg.cmd();
    c.args([
        "--faked-system-time",
        &faked,
        "--verify",
        dir.join("mlist2.txt.asc").to_str().unwrap(),
        forged.to_str().unwrap(),
    ]);
    assert!(!run(c, b"").status.success(), "a changed list must not verify");

    // The keyring holds every mix pinged, each certified by the pinger with what was measured.
    let pinger_cert = openpgp::Cert::from_bytes(&pinger.key()).unwrap();
    let ring: Vec<openpgp::Cert> =
        openpgp::cert::CertParser::from_bytes(&pinger.output("pubring.asc")).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(ring.len(), 4);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(end);
    for cert in &ring {
        let (address, _, _) = mixtasy::mixes::directory::identity(cert, at).unwrap();
        let got = mixtasy::mixes::ranking::read(&pinger_cert, cert, at)
            .unwrap_or_else(|| panic!("{address} has no certification"));
        if address.fqdn() == "dead.test" {
            assert_eq!(got.ranking.reliability, 0.0);
            assert_eq!(got.level, openpgp::types::SignatureType::GenericCertification);
            // Which pairs the chain schedule reaches 3 times in 4 days is random: at least one
            // chain out of the dead mix is found broken.
            assert!(
                !got.ranking.broken_next.is_empty(),
                "dead.test then an exit is broken: {:?}",
                got.ranking.broken_next
            );
        } else {
            assert!(got.ranking.reliability >= 0.90, "{address}: {:?}", got.ranking);
            assert!(got.ranking.pings >= 40);
        }
    }
}

#[test]
fn forged_replayed_and_foreign_mail_in_the_pinger_maildir() {
    let mut net = Net::new(1_800_000_000);
    net.add_lab_node("a.test", "middleman,exitpublic");
    let pinger = Pinger::new(&net);
    pinger.import_keys(&net, net.now);
    assert!(pinger.round(net.now).contains("sent 1,"));
    net.round("a.test");
    let inbox = net.mailbox(PINGER).join("new");
    let returned: Vec<PathBuf> = std::fs::read_dir(&inbox).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(returned.len(), 1, "the exit delivered the ping to the pinger");
    let ping_mail = std::fs::read(&returned[0]).unwrap();
    let text = String::from_utf8_lossy(&ping_mail);
    assert!(
        !text.contains("Mixtasy-Ping") && text.contains("-----BEGIN PGP MESSAGE-----"),
        "the exit sees only an encrypted mail: {text}"
    );

    // An adversary (the exit, say) who wants a better figure: a ping of the right shape,
    // encrypted to the pinger's public key, with a made-up MAC; and a claim of an earlier send.
    let pinger_cert = openpgp::Cert::from_bytes(&pinger.key()).unwrap();
    let forge = |body: &str| {
        let orig = format!("To: {PINGER}\r\n\r\n{body}");
        mixtasy::sender::pgpmime::encrypt(orig.as_bytes(), std::slice::from_ref(&pinger_cert), net.time()).unwrap()
    };
    std::fs::write(
        inbox.join("forged.1"),
        forge(&format!(
            "Mixtasy-Ping: 1\r\nId: {}\r\nSent: {}\r\nMac: {}\r\n",
            "ab".repeat(16),
            net.now,
            "00".repeat(32)
        )),
    )
    .unwrap();
    std::fs::write(inbox.join("forged.2"), forge("Mixtasy-Ping: 1\r\nId: 00\r\n")).unwrap();
    std::fs::write(inbox.join("foreign.1"), b"From: someone@else.test\r\nTo: pinger@ping.test\r\n\r\nhello\r\n")
        .unwrap();
    let line = pinger.round(net.now + HOUR);
    assert!(line.contains("returned 1,") && line.contains("forged 2,") && line.contains("to operator 1"), "{line}");
    // The same ping again (a replay by whoever saw it): counted, never returned twice.
    std::fs::write(inbox.join("replay.1"), &ping_mail).unwrap();
    let line = pinger.round(net.now + HOUR + 60);
    assert!(line.contains("returned 0,") && line.contains("replayed 1,"), "{line}");
    let (_, counters) = pinger.status(net.now + HOUR + 60);
    assert_eq!(
        (counters["ping.returned"], counters["ping.forged"], counters["ping.replayed"], counters["intake.operator"]),
        (1, 2, 1, 1),
        "{counters:?}"
    );
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0, "every file taken");
    assert_eq!(
        std::fs::read_dir(net.mailbox(PINGER).join(".operator/new")).unwrap().count(),
        1,
        "foreign mail kept for the operator"
    );
}

/// With the real SKS of the tests: the pinger finds the mixes on the keyserver, and its
/// certifications reach it, so that stock GnuPG receiving a mix key sees the pinger's
/// certification, with its notations, and checks it good.
#[test]
fn certifications_reach_the_keyserver_and_gnupg_sees_them() {
    let sks = crate::util::Sks::start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut net = Net::new(now);
    for f in ["ka.test", "kb.test"] {
        net.add_lab_node(f, "middleman,exitpublic");
        net.configure(f, "keyserver", &format!("{:?}", sks.url));
        let mut c = net.node_cmd(f);
        c.args(["key", "publish"]);
        ok(c, b"");
    }
    let pinger = Pinger::new(&net);
    pinger.configure("keyserver", &format!("{:?}", sks.url));
    let line = pinger.round(now);
    // Two pings and the two chains (ka, kb) and (kb, ka).
    assert!(line.contains("sent 4,"), "the pinger found both mixes on the keyserver: {line}");
    let (_, counters) = pinger.status(now);
    assert_eq!((counters["directory.fetched"], counters["certification.uploaded"]), (1, 2), "{counters:?}");
    // Uploads are daily: the next round sends none.
    for f in ["ka.test", "kb.test"] {
        net.round(f);
    }
    let line = pinger.round(now + 60);
    let returned: u32 = line.split("returned ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(returned >= 2, "{line}");
    assert_eq!(pinger.status(now + 60).1["certification.uploaded"], 2);

    let gpg = Gpg::new();
    gpg.kill("dirmngr");
    gpg.import(&pinger.key());
    let pinger_cert = openpgp::Cert::from_bytes(&pinger.key()).unwrap();
    let keyid = pinger_cert.keyid().to_hex();
    let fpr = openpgp::Cert::from_bytes(&net.export("ka.test", false)).unwrap().fingerprint().to_hex();
    // GnuPG (2.2.17 and later) keeps only self-signatures of keys from a keyserver unless
    // told otherwise: the anti-flooding default. A user who wants the rankings says so.
    gpg.ok(&["--keyserver", &sks.url, "--keyserver-options", "no-self-sigs-only", "--recv-keys", &fpr], b"");
    let colons = String::from_utf8(
        gpg.ok(&["--with-colons", "--list-options", "show-notations", "--check-sigs", &fpr], b"").stdout,
    )
    .unwrap();
    let sig: Vec<&str> = colons
        .lines()
        .find(|l| l.starts_with("sig:") && l.split(':').nth(4) == Some(keyid.as_str()))
        .unwrap_or_else(|| panic!("no certification by the pinger {keyid}:\n{colons}"))
        .split(':')
        .collect();
    assert_eq!(sig[1], "!", "GnuPG checks the certification good: {sig:?}");
    // Nothing had returned at the first round: Echolot's new mix starts at 0, a generic certification.
    assert_eq!(sig[10], "10x", "{sig:?}");
    let listed =
        String::from_utf8(gpg.ok(&["--list-options", "show-notations", "--check-sigs", &fpr], b"").stdout).unwrap();
    for n in ["reliability@mixtasy.org=0.00", "latency@mixtasy.org=0", "pings@mixtasy.org=1"] {
        assert!(listed.contains(n), "GnuPG shows {n}:\n{listed}");
    }
}

/// A ping the transport refuses is forgotten, not counted as lost against the mix: the
/// next round sends it again.
#[test]
fn a_refused_ping_is_sent_again_not_counted_lost() {
    let mut net = Net::new(1_800_000_000);
    net.add_lab_node("a.test", "middleman,exitpublic");
    let pinger = Pinger::new(&net);
    pinger.import_keys(&net, net.now);
    pinger.configure("transport", "\"sendmail\"");
    pinger.configure("sendmail", "\"/bin/false\"");
    let line = pinger.round(net.now);
    assert!(line.contains("sent 0, send failed 1,"), "{line}");
    let (table, counters) = pinger.status(net.now);
    assert_eq!(counters.get("transport.exit-status"), Some(&1), "{counters:?}");
    assert!(!table.contains("a.test"), "no ping of a.test on record:\n{table}");
    pinger.configure("transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    assert!(pinger.round(net.now + 60).contains("sent 1,"));
    net.round_later("a.test", 60);
    assert!(pinger.round(net.now + 120).contains("returned 1,"));
    let list = String::from_utf8(pinger.output("mlist2.txt")).unwrap();
    assert_eq!(read_mlist2(&list).0["a.test"].uptime, 100.0, "{list}");
}
