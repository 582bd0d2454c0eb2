//! Issue 14, the client side: a sender that trusts a pinger routes only through mixes its
//! rankings pass, says so when none do (and relaxes only when asked), and discovers mixes
//! past a keyserver's result limit through the pinger's signed keyring, every key still
//! checked as from a keyserver. Through the real binaries; the pinger is played by the
//! test with the library's `ranking::certify` and a sequoia key.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mixtasy::mixes::ranking::{self, Ranking};
use openpgp::cert::CertBuilder;
use openpgp::parse::Parse;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::SerializeInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::keyserver::{snapshot, unix_now};
use crate::util::*;
use crate::wkd::WkdServer;

/// A pinger's key, made a day before `net.now`.
fn pinger(net: &Net) -> Cert {
    CertBuilder::new()
        .set_creation_time(net.time() - Duration::from_secs(86400))
        .add_userid("Pinger <pinger@ping.test>")
        .generate()
        .unwrap()
        .0
}

/// The pinger's public key in a file, for `trust-pinger`.
fn pinger_file(net: &Net, p: &Cert) -> PathBuf {
    let f = net.dir.path().join(format!("pinger-{:X}.asc", p.fingerprint()));
    std::fs::write(&f, p.armored().to_vec().unwrap()).unwrap();
    f
}

/// `mix`'s public key with the pinger's certification of `reliability`, made an hour ago.
fn certified(net: &Net, p: &Cert, mix: &Cert, reliability: f64) -> Vec<u8> {
    let r = Ranking { reliability, latency: Duration::from_secs(1200), pings: 144, broken_next: vec![] };
    let sig = ranking::certify(p, mix, &r, net.time() - Duration::from_secs(3600), ranking::VALIDITY).unwrap();
    mix.clone().strip_secret_key_material().insert_packets(sig).unwrap().0.armored().to_vec().unwrap()
}

/// A detached signature of `data` by `by`'s primary key, as the pinger publishes it.
fn detached(by: &Cert, data: &[u8]) -> Vec<u8> {
    let kp = by.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
    let mut out = Vec::new();
    let mut s = Signer::new(Message::new(&mut out), kp).unwrap().detached().build().unwrap();
    std::io::Write::write_all(&mut s, data).unwrap();
    s.finalize().unwrap();
    out
}

/// Every hop of `mail`, found by peeling it with the real nodes.
fn hops(net: &Net, mut mail: Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let at = wire_to(&mail);
        let (next, _) = net.peel(&at, &mail).unwrap_or_else(|e| panic!("dropped at {at}: {e}"));
        out.push(at);
        if !next.windows(27).any(|w| w == b"-----BEGIN PGP MESSAGE-----") {
            return out;
        }
        mail = next;
    }
}

fn client(net: &Net, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut c = net.client_cmd();
    c.args(args);
    run(c, stdin)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const MAIL: &[u8] = b"To: bob@rcpt.test\nSubject: hi\n\nhello\n";

#[test]
fn a_client_trusting_a_pinger_never_routes_through_a_dead_mix() {
    let mut net = Net::new(1_800_000_000);
    let names = ["a.test", "b.test", "c.test", "d.test", "dead.test", "unranked.test"];
    for n in names {
        net.add_node(n, "middleman,exitpublic");
    }
    let p = pinger(&net);
    ok(
        {
            let mut c = net.client_cmd();
            c.args(["directory", "trust-pinger"]).arg(pinger_file(&net, &p)).args(["--url", "http://ping.test/out"]);
            c
        },
        b"",
    );
    // The keys as the keyserver would hand them over: certified by the pinger (the dead mix
    // at 0 %), one not ranked, and one certified by a stranger claiming 100 %.
    let stranger = pinger(&net);
    let mut keys = Vec::new();
    for n in names {
        let mix = Cert::from_bytes(&net.export(n, false)).unwrap();
        keys.extend(match n {
            "dead.test" => certified(&net, &p, &mix, 0.0),
            "unranked.test" => certified(&net, &stranger, &mix, 1.0),
            _ => certified(&net, &p, &mix, 1.0),
        });
    }
    ok(
        {
            let mut c = net.client_cmd();
            c.args(["directory", "import"]);
            c
        },
        &keys,
    );
    let list = text(&ok(
        {
            let mut c = net.client_cmd();
            c.args(["directory", "list"]);
            c
        },
        b"",
    ));
    assert!(
        list.contains(&format!("pinger {:X}  Pinger <pinger@ping.test>  http://ping.test/out", p.fingerprint())),
        "{list}"
    );
    let line = |n: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("mixtasy@{n} ")))
            .unwrap_or_else(|| panic!("{n} in {list}"))
            .to_string()
    };
    assert!(line("a.test").contains("reliability 100.00 %  latency 0:20  (1 pinger)"), "{list}");
    assert!(line("dead.test").contains("reliability 0.00 %"), "{list}");
    assert!(line("unranked.test").ends_with("unranked"), "a stranger's word is no ranking: {list}");

    // Over many sends, every hop of every path is a mix the pinger ranks well.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..25 {
        let path = hops(&net, net.create(MAIL, &[]).remove(0));
        assert!(path.iter().all(|h| !h.contains("dead.test") && !h.contains("unranked.test")), "{path:?}");
        seen.extend(path);
    }
    assert_eq!(seen.len(), 4, "the four good mixes all carry traffic: {seen:?}");

    // Nothing passes: a clear error, nothing written; --relax builds a path anyway.
    let out_dir = net.dir.path().join("out");
    let strict = ["create", "--out", out_dir.to_str().unwrap(), "--max-latency", "0.1"];
    let out = client(&net, &strict, MAIL);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no path passes the trusted pingers' rankings") && text(&out).contains("--relax"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.exists(), "nothing written");
    let send = client(&net, &["send", "--sendmail", "/bin/false", "--max-latency", "0.1", "bob@rcpt.test"], MAIL);
    assert_eq!(send.status.code(), Some(78), "a setting the user must change (EX_CONFIG): {}", text(&send));
    let relaxed = client(&net, &[&strict[..], &["--relax"]].concat(), MAIL);
    assert!(relaxed.status.success(), "{}", text(&relaxed));
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    // A bad setting is refused as such.
    let bad = client(&net, &["create", "--out", out_dir.to_str().unwrap(), "--min-reliability", "120"], MAIL);
    assert!(
        !bad.status.success() && text(&bad).contains("--min-reliability 120 is not a percentage"),
        "{}",
        text(&bad)
    );
}

/// Issue 14, discovery past the keyserver's result limit: 620 mix keys on the real SKS.
#[test]
fn past_the_keyservers_limit_the_pingers_signed_keyring_is_fetched_and_checked() {
    let mut net = Net::new(unix_now());
    let sks = Sks::start();
    let ks = sks.keyserver();
    let modes = mixtasy::mixes::modes::Modes::parse("middleman,exitpublic").unwrap();
    let t = Instant::now();
    let mixes: Vec<Cert> = (0..620)
        .map(|i| {
            let a = mixtasy::mixes::address::MixAddress::for_fqdn(&format!("m{i}.test")).unwrap();
            mixtasy::mixes::keys::generate("M", &modes, &a, net.time(), mixtasy::mixes::keys::SUBKEY_VALIDITY)
                .unwrap()
                .strip_secret_key_material()
        })
        .collect();
    let generated = t.elapsed();
    // A trusted pinger (no URL yet) ranks m1; the keyserver carries its certification.
    let p = pinger(&net);
    ok(
        {
            let mut c = net.client_cmd();
            c.args(["directory", "trust-pinger"]).arg(pinger_file(&net, &p));
            c
        },
        b"",
    );
    let m1 = certified(&net, &p, &mixes[1], 0.97);
    let fetch = || client(&net, &["directory", "fetch", "--keyserver", &sks.url], b"");
    let list = || {
        let mut c = net.client_cmd();
        c.args(["directory", "list"]);
        text(&ok(c, b""))
    };
    let t = Instant::now();
    ks.publish(std::str::from_utf8(&m1).unwrap()).unwrap();
    for m in [&mixes[0], &mixes[2]] {
        ks.publish(&String::from_utf8(m.armored().to_vec().unwrap()).unwrap()).unwrap();
    }
    // Under the limit: the keyserver's answer, the ranking collected from it.
    let out = fetch();
    assert!(out.status.success() && text(&out).contains("found 3, kept 3"), "{}", text(&out));
    let shown = list();
    assert!(shown.lines().any(|l| l.starts_with("mixtasy@m1.test ") && l.contains("reliability 97.00 %")), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with("mixtasy@m0.test ") && l.ends_with("unranked")), "{shown}");
    for m in &mixes[3..] {
        ks.publish(&String::from_utf8(m.armored().to_vec().unwrap()).unwrap()).unwrap();
    }
    eprintln!("620 mix keys: generated in {generated:?}, published to SKS in {:?}", t.elapsed());
    let dir = net.client_home().join("directory");
    let before = snapshot(&dir);

    // No trusted pinger with a URL: the refusal is named, the directory unchanged.
    let out = fetch();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refuses the search as too large") && text(&out).contains("trust-pinger"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&dir), before);

    // The pinger's keyring: every mix key, an impostor for m0 (known to the client: it must
    // not replace it), and a key that is no mix key.
    let server = WkdServer::start_http(net.dir.path());
    let base = format!("http://127.0.0.1:{}/ping", server.port);
    ok(
        {
            let mut c = net.client_cmd();
            c.args(["directory", "trust-pinger"]).arg(pinger_file(&net, &p)).args(["--url", &base]);
            c
        },
        b"",
    );
    let impostor = mixtasy::mixes::keys::generate(
        "Evil",
        &modes,
        &mixtasy::mixes::address::MixAddress::for_fqdn("m0.test").unwrap(),
        net.time(),
        mixtasy::mixes::keys::SUBKEY_VALIDITY,
    )
    .unwrap();
    let mut ring = Vec::new();
    for m in mixes.iter().chain([&impostor.clone().strip_secret_key_material(), &pinger(&net)]) {
        ring.extend(m.armored().to_vec().unwrap());
    }
    server.serve_raw(&format!("{base}/pubring.asc"), &ring);

    // A signature by another key, then over other bytes, then none: each fails, nothing changes.
    for sig in [Some(detached(&pinger(&net), &ring)), Some(detached(&p, b"another keyring")), None] {
        server.clear();
        server.serve_raw(&format!("{base}/pubring.asc"), &ring);
        if let Some(s) = sig {
            server.serve_raw(&format!("{base}/pubring.asc.sig"), &s);
        }
        let out = fetch();
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("the directory is unchanged"), "{}", text(&out));
        assert_eq!(snapshot(&dir), before);
    }

    // The pinger's own signature: every mix found, the impostor ignored, the non-mix refused.
    server.serve_raw(&format!("{base}/pubring.asc.sig"), &detached(&p, &ring));
    let t = Instant::now();
    let out = fetch();
    eprintln!("fetch through the pinger's keyring of 622 keys: {:?}", t.elapsed());
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("refuses the search as too large") && said.contains("signature good"), "{said}");
    assert!(said.contains("found 622, kept 620, refused 1"), "{said}");
    assert!(said.contains(&format!("ignored mixtasy@m0.test key {}", impostor.fingerprint().to_hex())), "{said}");
    let shown = list();
    assert_eq!(shown.lines().filter(|l| l.starts_with("mixtasy@m")).count(), 620);
    assert!(
        shown.lines().any(|l| l.starts_with("mixtasy@m1.test ") && l.contains("reliability 97.00 %")),
        "the ranking is kept"
    );
    // m0's key is still the real one: a message for m0 is one the real key opens.
    let m0_now = Cert::from_bytes(&std::fs::read(dir.join("mixtasy@m0.test.pgp")).unwrap()).unwrap();
    assert_eq!(m0_now.fingerprint(), mixes[0].fingerprint());

    // A node's round discovers past the limit the same way, from its own trusted pinger.
    net.add_lab_node("node.test", "middleman,exitpublic");
    net.configure("node.test", "keyserver", &format!("{:?}", sks.url));
    let mut trust = net.node_cmd("node.test");
    trust.args(["directory", "trust-pinger"]).arg(pinger_file(&net, &p)).args(["--url", &base]);
    ok(trust, b"");
    net.round("node.test");
    let st = net.status("node.test");
    assert_eq!((st.get("directory.fetched"), st.get("directory.fetch-failed")), (1, 0), "{}", st.0);
    let mut l = net.node_cmd("node.test");
    l.args(["directory", "list"]);
    assert_eq!(text(&ok(l, b"")).lines().filter(|l| l.starts_with("mixtasy@m")).count(), 620);
}

/// Issue 14: a node trusting a pinger sends its dummies only through mixes the pinger
/// ranks well, never into the dead one.
#[test]
fn a_node_trusting_a_pinger_sends_no_dummy_into_a_dead_mix() {
    let mut net = Net::new(1_800_000_000);
    for i in 1..=4 {
        net.add_lab_node(&format!("mix{i}.test"), "middleman,exitpublic");
    }
    let p = pinger(&net);
    let mut trust = net.node_cmd("mix1.test");
    trust.args(["directory", "trust-pinger"]).arg(pinger_file(&net, &p));
    ok(trust, b"");
    let mut keys = Vec::new();
    for i in 1..=4 {
        let mix = Cert::from_bytes(&net.export(&format!("mix{i}.test"), false)).unwrap();
        keys.extend(certified(&net, &p, &mix, if i == 4 { 0.0 } else { 1.0 }));
    }
    let mut import = net.node_cmd("mix1.test");
    import.args(["directory", "import"]);
    ok(import, &keys);
    let mut list = net.node_cmd("mix1.test");
    list.args(["directory", "list"]);
    let list = text(&ok(list, b""));
    assert!(list.lines().any(|l| l.starts_with("mixtasy@mix4.test ") && l.contains("reliability 0.00 %")), "{list}");
    net.configure("mix1.test", "dummy_time_p", "0.9");
    let inbox = |n: usize| std::fs::read_dir(net.mailbox(&format!("mixtasy@mix{n}.test")).join("new")).unwrap().count();
    for _ in 0..6 {
        net.round("mix1.test");
    }
    assert!(inbox(2) + inbox(3) > 0, "dummies were sent");
    assert_eq!(inbox(4), 0, "no dummy went to the dead mix");
}
