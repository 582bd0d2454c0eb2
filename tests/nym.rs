//! The nym server `mixtasy-nymd` through its real binary, with GnuPG as the nym's client
//! (stock `gpg --sign --encrypt`, nothing of ours on the user's side): create, confirm,
//! receive by hSub, send; and the attacks: replayed and stale requests, a delivery address
//! nobody confirmed, sends over the limit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{ok, run, Gpg, Net};

pub(crate) const DOMAIN: &str = "nym.test";

fn real_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A nym server home with lab transports (`out/` Maildirs per recipient, `news/` for the
/// group) and a GnuPG home holding its public key.
pub(crate) struct Lab {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) gpg: Gpg,
    pub(crate) now: u64,
}

impl Lab {
    pub(crate) fn new() -> Self {
        let lab = Lab { dir: tempfile::tempdir().unwrap(), gpg: Gpg::new(), now: real_now() };
        ok(lab.nymd(0, &["init", "--domain", DOMAIN]), b"");
        lab.set("transport", &format!("{:?}", format!("maildir:{}", lab.dir.path().join("out").display())));
        lab.set("news", "\"maildir:news\"");
        let key = ok(lab.nymd(0, &["key"]), b"").stdout;
        lab.gpg.import(&key);
        lab
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `mixtasy-nymd` at the lab's time plus `later` seconds.
    pub(crate) fn nymd(&self, later: u64, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mixtasy-nymd"));
        c.arg("--home").arg(self.home()).arg("--now").arg((self.now + later).to_string()).args(args);
        c
    }

    /// Sets `key = value` (TOML text) in the server's settings.
    pub(crate) fn set(&self, key: &str, value: &str) {
        let p = self.home().join("mixtasy-nymd.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut found = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} = ")) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(found, "no setting {key}");
        std::fs::write(&p, out.join("\n") + "\n").unwrap();
    }

    /// One run; what it printed goes to the test's output (shown when a test fails).
    pub(crate) fn run_at(&self, later: u64) -> String {
        let out = ok(self.nymd(later, &["--run"]), b"");
        eprintln!("run +{later}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", String::from_utf8_lossy(&ok(self.nymd(later, &["status"]), b"").stdout));
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn counter(&self, name: &str) -> i64 {
        let out = String::from_utf8(ok(self.nymd(0, &["status"]), b"").stdout).unwrap();
        out.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).map(|v| v.parse().unwrap())).unwrap_or(0)
    }

    /// Puts a mail into the server's Maildir as Postfix would (with X-Original-To).
    pub(crate) fn deliver(&self, to: &str, body: &[u8]) {
        let mut mail =
            format!("X-Original-To: {to}\nTo: {to}\nFrom: someone@outside.test\nSubject: x\n\n").into_bytes();
        mail.extend_from_slice(body);
        let name = format!("{}.{}.lab", real_now(), rand::random::<u64>());
        std::fs::write(self.home().join("Maildir/new").join(name), mail).unwrap();
    }

    /// A new nym key `name@nym.test` in the GnuPG home (Ed25519 signing, cv25519 encryption).
    pub(crate) fn new_nym_key(&self, name: &str) -> Vec<u8> {
        let uid = format!("{name}@{DOMAIN}");
        // Made an hour before the lab's clock: generated at the real time, a busy machine
        // dates the key seconds after `now`, and the client at `--now` would find no key yet.
        let made = format!("{}!", self.now - 3600);
        self.gpg.ok(
            &[
                "--faked-system-time",
                &made,
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-gen-key",
                &uid,
                "future-default",
                "default",
                "never",
            ],
            b"",
        );
        self.gpg.ok(&["--armor", "--export", &uid], b"").stdout
    }

    /// `text` signed by `signer` and encrypted to the server, as a user does it with GnuPG.
    pub(crate) fn request(&self, signer: &str, text: &[u8], extra: &[&str]) -> Vec<u8> {
        let from = format!("{signer}@{DOMAIN}");
        let to = format!("config@{DOMAIN}");
        let mut args = vec!["--armor", "--trust-model", "always", "--sign", "--encrypt", "-u", &from, "-r", &to];
        args.extend_from_slice(extra);
        self.gpg.ok(&args, text).stdout
    }

    /// Articles posted to the group, oldest first.
    fn articles(&self) -> Vec<Vec<u8>> {
        files(&self.home().join("news/new"))
    }

    pub(crate) fn articles_count(&self) -> usize {
        self.articles().len()
    }

    /// The articles whose hSub matches `passphrase`, decrypted by GnuPG.
    fn read(&self, passphrase: &str) -> Vec<String> {
        self.read_as(self, passphrase)
    }

    /// `read` by another client (its own GnuPG home) of this server.
    fn read_as(&self, client: &Lab, passphrase: &str) -> Vec<String> {
        self.articles()
            .iter()
            .filter(|a| mixtasy::nymserv::hsub::matches(&header(a, "Subject"), passphrase))
            .map(|a| String::from_utf8(client.gpg.ok(&["--decrypt"], a).stdout).unwrap())
            .collect()
    }

    /// Another user of this server: a GnuPG home of its own holding the server key. (One
    /// home per nym: GnuPG tries every secret key on a wildcard recipient and exits 2 when
    /// one of them fails, even though another decrypted.)
    fn client(&self) -> Lab {
        let c = Lab { dir: tempfile::tempdir().unwrap(), gpg: Gpg::new(), now: self.now };
        c.gpg.import(&ok(self.nymd(0, &["key"]), b"").stdout);
        c
    }
}

pub(crate) fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => return Vec::new(),
    };
    names.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap());
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

pub(crate) fn header(mail: &[u8], name: &str) -> String {
    let (h, _) = mailparse::parse_headers(mail).unwrap();
    h.iter().find(|f| f.get_key().eq_ignore_ascii_case(name)).map(|f| f.get_value()).unwrap_or_default()
}

/// The confirmation code in a decrypted answer.
pub(crate) fn code_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("confirm: "))
        .unwrap_or_else(|| panic!("no code in {text}"))
        .trim()
        .to_string()
}

/// Creates and confirms `name` with newsgroup delivery and hSub passphrase `hsub`.
pub(crate) fn confirmed_nym(lab: &Lab, name: &str, hsub: &str) {
    let mut text = lab.new_nym_key(name);
    text.extend_from_slice(format!("hsub: {hsub}\ndelivery: newsgroup\n").as_bytes());
    lab.deliver(&format!("config@{DOMAIN}"), &lab.request(name, &text, &[]));
    lab.run_at(0);
    let answers = lab.read(hsub);
    assert_eq!(answers.len(), 1, "one confirmation in the group");
    let code = code_in(&answers[0]);
    lab.deliver(&format!("config@{DOMAIN}"), &lab.request(name, format!("confirm: {code}\n").as_bytes(), &[]));
    lab.run_at(0);
    assert!(lab.read(hsub).iter().any(|a| a.contains("Delivery confirmed")));
}

#[test]
fn gnupg_user_creates_confirms_and_receives_by_hsub() {
    let lab = Lab::new();
    // init: the home is private, the key secret.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(lab.home()).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(lab.home().join("secret-key.pgp")).unwrap().permissions().mode() & 0o777, 0o600);

    confirmed_nym(&lab, "alice", "alice-hsub");
    assert_eq!(lab.counter("config.created"), 1);
    assert_eq!(lab.counter("config.confirmed"), 1);

    lab.deliver(&format!("alice@{DOMAIN}"), b"the secret body for alice\n");
    lab.deliver(&format!("nobody-here@{DOMAIN}"), b"to a nym that does not exist\n");
    lab.run_at(0);
    assert_eq!(lab.counter("inbound.delivered"), 1);
    assert_eq!(lab.counter("drop.unknown"), 1);
    let got = lab.read("alice-hsub");
    assert!(got.iter().any(|a| a.contains("the secret body for alice")), "{got:?}");
    // Every article looks alike: a 48-digit hex subject, no nym name, no plaintext.
    for a in lab.articles() {
        let s = header(&a, "Subject");
        assert!(s.len() == 48 && s.bytes().all(|b| b.is_ascii_hexdigit()), "subject {s:?}");
        let text = String::from_utf8_lossy(&a);
        assert!(!text.contains("alice") && !text.contains("secret body"), "article leaks: {text}");
    }
    // The spool is empty: every file was taken.
    assert_eq!(std::fs::read_dir(lab.home().join("Maildir/new")).unwrap().count(), 0);
}

#[test]
fn replayed_stale_and_future_requests_are_refused() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    // A modify request, then the same mail again (an attacker who saw it on the wire).
    let req = lab.request("alice", b"acksend: no\n", &[]);
    lab.deliver(&format!("config@{DOMAIN}"), &req);
    lab.run_at(0);
    assert_eq!(lab.counter("config.modified"), 1);
    lab.deliver(&format!("config@{DOMAIN}"), &req);
    lab.run_at(0);
    assert_eq!(lab.counter("refused.replay"), 1);
    assert_eq!(lab.counter("config.modified"), 1, "the replay changed nothing");

    // Held back 8 days: older than 7.
    let req = lab.request("alice", b"acksend: yes\n", &[]);
    lab.deliver(&format!("config@{DOMAIN}"), &req);
    lab.run_at(8 * 86400);
    assert_eq!(lab.counter("refused.stale"), 1);

    // Dated two days ahead of the server's clock.
    let ahead = format!("{}!", lab.now + 2 * 86400);
    let req = lab.request("alice", b"acksend: yes\n", &["--faked-system-time", &ahead]);
    lab.deliver(&format!("config@{DOMAIN}"), &req);
    lab.run_at(0);
    assert_eq!(lab.counter("refused.ahead"), 1);
    assert_eq!(lab.counter("config.modified"), 1);
}

#[test]
fn taken_and_reserved_names_are_refused_with_a_reason() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    // Another key for alice@ (a second GnuPG home: the first holds the real alice).
    let other = lab.client();
    let mut text = other.new_nym_key("alice");
    text.extend_from_slice(b"hsub: thief\n");
    lab.deliver(&format!("config@{DOMAIN}"), &other.request("alice", &text, &[]));
    let pm = lab.client();
    let mut text = pm.new_nym_key("postmaster");
    text.extend_from_slice(b"hsub: pm\n");
    lab.deliver(&format!("config@{DOMAIN}"), &pm.request("postmaster", &text, &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("refused.taken"), 1);
    assert_eq!(lab.counter("refused.reserved"), 1);
    let refusals = lab.read_as(&other, "thief");
    assert!(refusals.iter().any(|r| r.contains("is taken")), "{refusals:?}");
    assert!(lab.read_as(&pm, "pm").iter().any(|r| r.contains("is reserved")));
    // The real alice still receives.
    lab.deliver(&format!("alice@{DOMAIN}"), b"still mine\n");
    lab.run_at(0);
    assert!(lab.read("pw").iter().any(|a| a.contains("still mine")));
}

#[test]
fn send_goes_out_as_the_nym_until_the_daily_limit() {
    let lab = Lab::new();
    lab.set("sends_per_day", "2");
    confirmed_nym(&lab, "alice", "pw");
    let original = b"From: Alice Realname <alice.real@home.test>\nX-Mailer: LeakyMail 1.0\nTo: dave@outside.test\nBcc: hidden@outside.test\nSubject: hello\n\nbody from the nym\n";
    for i in 0..3 {
        // Each mail differs: the same text signed in the same second is the same signature
        // (Ed25519 is deterministic), which the replay cache refuses, rightly.
        let mut original = original.to_vec();
        original.extend_from_slice(format!("mail {i}\n").as_bytes());
        let req = lab.request("alice", &original, &[]);
        let mut to_send = Vec::new();
        to_send.extend_from_slice(&req);
        let mut mail = format!("X-Original-To: send@{DOMAIN}\nTo: send@{DOMAIN}\nSubject: x\n\n").into_bytes();
        mail.extend_from_slice(&to_send);
        std::fs::write(lab.home().join("Maildir/new").join(format!("{}.s", rand::random::<u64>())), mail).unwrap();
    }
    lab.run_at(0);
    let out = files(&lab.dir.path().join("out/dave@outside.test/new"));
    assert_eq!(out.len(), 2, "two sends, the third over the limit");
    assert_eq!(lab.counter("send.over-limit"), 1);
    assert!(!lab.dir.path().join("out/hidden@outside.test").exists(), "no Bcc");
    for m in &out {
        let text = String::from_utf8_lossy(m);
        assert!(text.contains(&format!("From: alice@{DOMAIN}")), "{text}");
        assert!(!text.contains("alice.real") && !text.contains("Realname") && !text.contains("LeakyMail"), "{text}");
        assert!(text.contains("body from the nym"));
        assert!(text.contains("X-Anonymous:"), "labelled");
    }
    assert!(lab.read("pw").iter().any(|a| a.contains("Send limit reached")));
}

#[test]
fn idle_nyms_are_warned_then_expire() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    lab.run_at(91 * 86400);
    assert_eq!(lab.counter("nym.warned"), 1);
    lab.run_at(92 * 86400);
    assert_eq!(lab.counter("nym.warned"), 1, "warned once");
    lab.run_at(121 * 86400);
    assert_eq!(lab.counter("nym.expired"), 1);
    lab.deliver(&format!("alice@{DOMAIN}"), b"too late\n");
    lab.run_at(121 * 86400);
    assert_eq!(lab.counter("drop.unknown"), 1);
}

/// An attacker creates nyms whose delivery is a victim's mailbox: the victim gets one
/// confirmation (through the Mixtasy network) and nothing else.
#[test]
fn unconfirmed_delivery_gets_only_one_confirmation() {
    let mut net = Net::new(real_now());
    for n in ["m1.test", "m2.test", "m3.test", "m4.test"] {
        net.add_lab_node(n, "middleman,exitpublic");
    }
    net.introduce_nodes();
    let lab = Lab { dir: tempfile::tempdir().unwrap(), gpg: Gpg::new(), now: net.now };
    ok(lab.nymd(0, &["init", "--domain", DOMAIN]), b"");
    lab.set("transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    lab.set("news", "\"maildir:news\"");
    lab.gpg.import(&ok(lab.nymd(0, &["key"]), b"").stdout);
    let mut keys = Vec::new();
    for n in &net.nodes {
        keys.extend(net.export(n, false));
    }
    ok(lab.nymd(0, &["directory-import"]), &keys);

    let victim = "victim@outside.test";
    let second = lab.client();
    for (client, name) in [(&lab, "evil1"), (&second, "evil2")] {
        let mut text = client.new_nym_key(name);
        text.extend_from_slice(format!("delivery: mixtasy:{victim}\n").as_bytes());
        lab.deliver(&format!("config@{DOMAIN}"), &client.request(name, &text, &[]));
    }
    lab.run_at(0);
    lab.deliver(&format!("evil1@{DOMAIN}"), b"mail bomb\n");
    lab.run_at(0);
    assert_eq!(lab.counter("config.created"), 1);
    assert_eq!(lab.counter("confirm.held"), 1);
    assert_eq!(lab.counter("drop.unknown"), 1, "an unconfirmed nym receives nothing");
    for _ in 0..6 {
        for n in ["m1.test", "m2.test", "m3.test", "m4.test"] {
            net.round(n);
        }
    }
    let got = net.delivered(victim);
    assert_eq!(got.len(), 1, "exactly one mail reached the victim");
    // It is the confirmation of whichever nym the server took first.
    let text =
        [&lab, &second].iter().find_map(|c| try_decrypt(&c.gpg, &got[0])).expect("neither nym key decrypts the mail");
    assert!(text.contains("confirm: "), "{text}");
}

fn try_decrypt(gpg: &Gpg, mail: &[u8]) -> Option<String> {
    let mut c = gpg.cmd();
    c.arg("--decrypt");
    let out = run(c, mail);
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
}

/// A request the server cannot act on yet (a `mixtasy:` delivery before it knows any mix)
/// is neither lost nor half done: it stays in the Maildir, and the run after the mixes are
/// known takes it.
#[test]
fn a_request_that_fails_stays_in_the_maildir() {
    let mut net = Net::new(real_now());
    for n in ["m1.test", "m2.test", "m3.test", "m4.test"] {
        net.add_lab_node(n, "middleman,exitpublic");
    }
    let lab = Lab { dir: tempfile::tempdir().unwrap(), gpg: Gpg::new(), now: net.now };
    ok(lab.nymd(0, &["init", "--domain", DOMAIN]), b"");
    lab.set("transport", &format!("{:?}", format!("maildir:{}", net.mail_root().display())));
    lab.set("news", "\"maildir:news\"");
    lab.gpg.import(&ok(lab.nymd(0, &["key"]), b"").stdout);
    let mut text = lab.new_nym_key("carol");
    text.extend_from_slice(b"delivery: mixtasy:carol@outside.test\n");
    lab.deliver(&format!("config@{DOMAIN}"), &lab.request("carol", &text, &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("intake.deferred"), 1);
    assert_eq!(lab.counter("config.created"), 0, "nothing of it committed");
    assert_eq!(std::fs::read_dir(lab.home().join("Maildir/new")).unwrap().count(), 1, "the request is still there");
    let mut keys = Vec::new();
    for n in &net.nodes {
        keys.extend(net.export(n, false));
    }
    ok(lab.nymd(0, &["directory-import"]), &keys);
    lab.run_at(0);
    assert_eq!(lab.counter("config.created"), 1);
    assert_eq!(std::fs::read_dir(lab.home().join("Maildir/new")).unwrap().count(), 0);
}
