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
        crate::util::configure_file(&self.home().join("mixtasy-nymd.toml"), key, value);
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
        self.put(&mail);
    }

    /// Puts a whole mail, header and all, into the server's Maildir.
    pub(crate) fn put(&self, mail: &[u8]) {
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
    confirmed_nym_of(lab, lab, name, hsub)
}

/// `confirmed_nym` for the user `client` (a GnuPG home of its own) of `lab`'s server.
fn confirmed_nym_of(lab: &Lab, client: &Lab, name: &str, hsub: &str) {
    let mut text = client.new_nym_key(name);
    text.extend_from_slice(format!("hsub: {hsub}\ndelivery: newsgroup\n").as_bytes());
    lab.deliver(&format!("config@{DOMAIN}"), &client.request(name, &text, &[]));
    lab.run_at(0);
    let answers = lab.read_as(client, hsub);
    assert_eq!(answers.len(), 1, "one confirmation in the group");
    let code = code_in(&answers[0]);
    lab.deliver(&format!("config@{DOMAIN}"), &client.request(name, format!("confirm: {code}\n").as_bytes(), &[]));
    lab.run_at(0);
    assert!(lab.read_as(client, hsub).iter().any(|a| a.contains("Delivery confirmed")));
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
        // How to block, in the body too (many mail programs hide header fields), after the
        // nym's words.
        let body = &text[text.find("body from the nym").unwrap()..];
        assert!(body.contains(&format!("\"destination-block\" to block@{DOMAIN}")), "{text}");
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

/// Mail-bomb back pressure: past the day's inbound budget (cost 1 + size/32 KiB) mail to a
/// nym is dropped and counted, and however much an attacker sends that day (in one run or
/// many) the nym is told once; the next UTC day mail flows again, and a new bomb that day
/// brings one new notice.
#[test]
fn inbound_budget_drops_past_the_day_and_tells_the_nym_once() {
    let lab = Lab::new();
    lab.set("inbound_budget", "4");
    confirmed_nym(&lab, "alice", "pw");
    let to = format!("alice@{DOMAIN}");
    let notices = || lab.read("pw").iter().filter(|a| a.contains("Inbound budget used up")).count();
    // 1 + 1 + 2 (a mail over 32 KiB costs 2): exactly the budget, all delivered.
    lab.deliver(&to, b"first\n");
    lab.run_at(0);
    lab.deliver(&to, b"second\n");
    lab.run_at(0);
    let mut big = b"big one\n".to_vec();
    big.resize(40 * 1024, b'x');
    big.push(b'\n');
    lab.deliver(&to, &big);
    lab.run_at(0);
    assert_eq!(lab.counter("inbound.delivered"), 3);
    assert_eq!(lab.counter("drop.over-budget"), 0);
    assert_eq!(notices(), 0, "no notice while within the budget");
    // The bomb: twenty mails in one run, then five runs of one more each, the same day.
    for i in 0..20 {
        lab.deliver(&to, format!("bomb {i}\n").as_bytes());
    }
    lab.run_at(0);
    for i in 20..25 {
        lab.deliver(&to, format!("bomb {i}\n").as_bytes());
        lab.run_at(0);
    }
    assert_eq!(lab.counter("drop.over-budget"), 25);
    assert_eq!(lab.counter("inbound.delivered"), 3);
    assert_eq!(notices(), 1, "told once that day");
    let got = lab.read("pw");
    assert!(!got.iter().any(|a| a.contains("bomb ")), "nothing of the bomb got through");
    assert!(got.iter().any(|a| a.contains("big one")));
    assert_eq!(std::fs::read_dir(lab.home().join("Maildir/new")).unwrap().count(), 0, "dropped, not left");

    // The next UTC day: mail flows again; a new bomb is told once more, that day only.
    let day = 86400;
    lab.deliver(&to, b"the next day\n");
    lab.run_at(day);
    assert_eq!(lab.counter("inbound.delivered"), 4);
    assert!(lab.read("pw").iter().any(|a| a.contains("the next day")));
    for i in 0..6 {
        lab.deliver(&to, format!("second bomb {i}\n").as_bytes());
    }
    lab.run_at(day);
    assert_eq!(lab.counter("inbound.delivered"), 7, "1 + 3 of the 6 fit the new day's budget");
    assert_eq!(lab.counter("drop.over-budget"), 28);
    assert_eq!(notices(), 2, "one notice a day");
}

/// `delete: yes` signed by the nym (GnuPG): afterwards its mail is dropped as for an
/// unknown name and counted, it cannot send, and its name is held back from any other key
/// (`store::NAME_HELD`, a year) while its own key may take it again. The delete replayed
/// deletes nothing; deletes by another nym, by a key with the nym's user id, or carrying
/// the nym's public key but signed by another key, delete nothing either.
#[test]
fn delete_stops_mail_holds_the_name_and_refuses_replays() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    let bob = lab.client();
    confirmed_nym_of(&lab, &bob, "bob", "bob-pw");
    let config = format!("config@{DOMAIN}");

    // Mallory: a key with alice's user id, then alice's public key with a delete, signed by mallory.
    let mallory = lab.client();
    mallory.new_nym_key("alice");
    lab.deliver(&config, &mallory.request("alice", b"delete: yes\n", &[]));
    let mut text = lab.gpg.ok(&["--armor", "--export", &format!("alice@{DOMAIN}")], b"").stdout;
    text.extend_from_slice(b"delete: yes\n");
    lab.deliver(&config, &mallory.request("alice", &text, &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("refused.unsigned"), 2);
    // Bob's own delete deletes bob, and only bob.
    lab.deliver(&config, &bob.request("bob", b"delete: yes\n", &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("config.deleted"), 1);
    assert!(lab.read_as(&bob, "bob-pw").iter().any(|a| a.contains("Nym deleted")));
    lab.deliver(&format!("alice@{DOMAIN}"), b"alice still here\n");
    lab.deliver(&format!("bob@{DOMAIN}"), b"bob is gone\n");
    lab.run_at(0);
    assert_eq!(lab.counter("inbound.delivered"), 1);
    assert_eq!(lab.counter("drop.unknown"), 1);
    assert!(lab.read("pw").iter().any(|a| a.contains("alice still here")));

    // Alice deletes her nym.
    let delete = lab.request("alice", b"delete: yes\n", &[]);
    lab.deliver(&config, &delete);
    lab.run_at(0);
    assert_eq!(lab.counter("config.deleted"), 2);
    let said = lab.read("pw");
    assert!(said.iter().any(|a| a.contains("Nym deleted") && a.contains("held back for 365 days")), "{said:?}");
    let articles = lab.articles_count();
    lab.deliver(&format!("alice@{DOMAIN}"), b"after the delete\n");
    lab.deliver(&format!("send@{DOMAIN}"), &lab.request("alice", b"To: dave@outside.test\n\nfrom the dead\n", &[]));
    lab.deliver(&config, &lab.request("alice", b"acksend: no\n", &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("drop.unknown"), 2, "mail to it is dropped as for an unknown name");
    assert_eq!(lab.counter("refused.unsigned"), 4, "it can neither send nor modify");
    assert_eq!(lab.articles_count(), articles, "nothing posted for it");
    assert!(!lab.dir.path().join("out/dave@outside.test").exists(), "nothing sent");

    // Somebody else's key cannot take the name; the refusal says why.
    let thief = lab.client();
    let mut text = thief.new_nym_key("alice");
    text.extend_from_slice(b"hsub: thief\n");
    lab.deliver(&config, &thief.request("alice", &text, &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("refused.taken"), 1);
    assert_eq!(lab.counter("config.created"), 2, "alice and bob only");
    let why = lab.read_as(&thief, "thief");
    assert!(why.iter().any(|a| a.contains("was deleted and is held back until")), "{why:?}");

    // Alice's own key takes it back; then her old delete, replayed, is refused.
    let mut text = lab.gpg.ok(&["--armor", "--export", &format!("alice@{DOMAIN}")], b"").stdout;
    text.extend_from_slice(b"hsub: pw2\n");
    lab.deliver(&config, &lab.request("alice", &text, &[]));
    lab.run_at(0);
    assert_eq!(lab.counter("config.created"), 3);
    let code = code_in(lab.read("pw2").last().unwrap());
    lab.deliver(&config, &lab.request("alice", format!("confirm: {code}\n").as_bytes(), &[]));
    lab.run_at(0);
    lab.deliver(&config, &delete);
    lab.run_at(0);
    assert_eq!(lab.counter("refused.replay"), 1);
    assert_eq!(lab.counter("config.deleted"), 2, "the replay deleted nothing");
    lab.deliver(&format!("alice@{DOMAIN}"), b"alive again\n");
    lab.run_at(0);
    assert!(lab.read("pw2").iter().any(|a| a.contains("alive again")));

    // Bob's name is free for anybody a year later.
    let later = 366 * 86400;
    lab.run_at(later); // the server's encryption subkey rotates meanwhile: fetch its new key.
    let newcomer = lab.client();
    let mut text = newcomer.new_nym_key("bob");
    text.extend_from_slice(b"hsub: new bob\n");
    let at = format!("{}!", lab.now + later);
    lab.deliver(&config, &newcomer.request("bob", &text, &["--faked-system-time", &at]));
    lab.run_at(later);
    assert_eq!(lab.counter("config.created"), 4, "bob's name is free again");
}

/// A request whose signature names alice's key as its issuer but was made by another key
/// finds alice through the key index and is refused; the same request really signed by
/// alice's key is taken (so the refusal is the forged signature's, not the format's).
#[test]
fn a_signature_claiming_another_nyms_key_is_refused() {
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::Cert;
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    let server = Cert::from_bytes(&ok(lab.nymd(0, &["key"]), b"").stdout).unwrap();
    let secret = lab
        .gpg
        .ok(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--armor",
                "--export-secret-keys",
                &format!("alice@{DOMAIN}"),
            ],
            b"",
        )
        .stdout;
    let alice = Cert::from_bytes(&secret).unwrap();
    let (mallory, _) = sequoia_openpgp::cert::CertBuilder::new().add_userid("mallory@nym.test").generate().unwrap();
    let config = format!("config@{DOMAIN}");
    lab.deliver(&config, &claiming(&server, &mallory, &alice, b"delete: yes\n"));
    lab.run_at(0);
    assert_eq!(lab.counter("refused.unsigned"), 1);
    assert_eq!(lab.counter("config.deleted"), 0);
    lab.deliver(&config, &claiming(&server, &alice, &alice, b"acksend: no\n"));
    lab.run_at(0);
    assert_eq!(lab.counter("config.modified"), 1, "the same construction signed by alice is taken");
    lab.deliver(&format!("alice@{DOMAIN}"), b"still alice's\n");
    lab.run_at(0);
    assert!(lab.read("pw").iter().any(|a| a.contains("still alice's")));
}

/// `text` signed by `signer`'s primary key in a signature whose issuer subpackets name the
/// signing key of `claimed`, as does its one-pass header, encrypted to `server`: GnuPG's
/// layout, every key id in it pointing at `claimed`.
fn claiming(
    server: &sequoia_openpgp::Cert,
    signer: &sequoia_openpgp::Cert,
    claimed: &sequoia_openpgp::Cert,
    text: &[u8],
) -> Vec<u8> {
    use sequoia_openpgp::packet::one_pass_sig::OnePassSig3;
    use sequoia_openpgp::packet::signature::SignatureBuilder;
    use sequoia_openpgp::policy::StandardPolicy;
    use sequoia_openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient};
    use sequoia_openpgp::serialize::Serialize;
    use sequoia_openpgp::types::{Features, SignatureType};
    use std::io::Write;
    let policy = StandardPolicy::new();
    let now = std::time::SystemTime::now();
    let named = claimed.keys().with_policy(&policy, now).for_signing().next().unwrap().key().clone();
    let secret = signer
        .keys()
        .with_policy(&policy, now)
        .secret()
        .for_signing()
        .next()
        .map(|k| k.key().clone())
        .unwrap_or_else(|| signer.primary_key().key().clone().parts_into_secret().unwrap().role_into_unspecified());
    let mut pair = secret.into_keypair().unwrap();
    let sig = SignatureBuilder::new(SignatureType::Binary)
        .set_signature_creation_time(now)
        .unwrap()
        .set_issuer(named.keyid())
        .unwrap()
        .set_issuer_fingerprint(named.fingerprint())
        .unwrap()
        .sign_message(&mut pair, text)
        .unwrap();
    let recipients: Vec<Recipient> = server
        .keys()
        .with_policy(&policy, now)
        .supported()
        .alive()
        .for_transport_encryption()
        .map(|ka| Recipient::new(Features::empty().set_seipdv1(), ka.key().key_handle(), ka.key()))
        .collect();
    let mut out = Vec::new();
    let m = Message::new(&mut out);
    let m = Armorer::new(m).kind(sequoia_openpgp::armor::Kind::Message).build().unwrap();
    let mut m = Encryptor::for_recipients(m, recipients).build().unwrap();
    let mut ops = OnePassSig3::new(SignatureType::Binary);
    ops.set_hash_algo(sig.hash_algo());
    ops.set_pk_algo(sig.pk_algo());
    ops.set_issuer(named.keyid());
    ops.set_last(true);
    sequoia_openpgp::Packet::from(ops).serialize(&mut m).unwrap();
    let mut w = LiteralWriter::new(m).build().unwrap();
    w.write_all(text).unwrap();
    let mut m = w.finalize_one().unwrap().unwrap();
    sequoia_openpgp::Packet::from(sig).serialize(&mut m).unwrap();
    m.finalize().unwrap();
    out
}

/// The lab's mail leaves through `util::lab_sendmail_in` (into the same `out/` Maildirs),
/// which logs each sendmail's arguments: the envelope sender is seen.
fn with_recording_sendmail(lab: &Lab) -> PathBuf {
    let script = crate::util::lab_sendmail_in(lab.dir.path(), &lab.dir.path().join("out"));
    lab.set("transport", "\"sendmail\"");
    lab.set("sendmail", &format!("{:?}", script.display().to_string()));
    lab.dir.path().join("lab-sendmail.log")
}

/// Mail alice sends through send@ (signed with her key, encrypted to the server).
fn alice_sends(lab: &Lab, original: &str) {
    lab.deliver(&format!("send@{DOMAIN}"), &lab.request("alice", original.as_bytes(), &[]));
}

fn outbox_of(lab: &Lab, rcpt: &str) -> Vec<Vec<u8>> {
    files(&lab.dir.path().join("out").join(rcpt).join("new"))
}

/// A block request to block@ from `from`, as a recipient's mail program sends it.
fn block_request(lab: &Lab, from: &str) {
    lab.put(
        format!(
            "X-Original-To: block@{DOMAIN}\nFrom: {from}\nTo: block@{DOMAIN}\nSubject: destination-block\n\
             Message-ID: <{}@outside.test>\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nno more, please\n",
            rand::random::<u64>()
        )
        .as_bytes(),
    );
}

/// Dave, a recipient of nym mail, reads on it how to block, asks block@, answers the
/// confirmation: the nym's next mail to him (any subaddress) is not delivered, the other
/// recipients of the same mail get theirs; every mail leaves with the envelope sender
/// bounces@, and a bounce arriving there is destroyed unread and counted.
#[test]
fn a_recipient_blocks_himself_through_the_confirmation() {
    let lab = Lab::new();
    let log = with_recording_sendmail(&lab);
    confirmed_nym(&lab, "alice", "pw");
    alice_sends(&lab, "To: dave@outside.test\nSubject: hi\n\nfirst mail\n");
    lab.run_at(0);
    let first = outbox_of(&lab, "dave@outside.test");
    assert_eq!(first.len(), 1);
    let label = header(&first[0], "X-Anonymous");
    assert!(label.contains(&format!("\"destination-block\" to block@{DOMAIN}")), "says how to block: {label}");

    block_request(&lab, "Dave <Dave@Outside.test>");
    lab.run_at(0);
    assert_eq!(lab.counter("block.confirmation-sent"), 1);
    let got = outbox_of(&lab, "dave@outside.test");
    assert_eq!(got.len(), 2, "the confirmation");
    let confirmation = &got[1];
    assert_eq!(header(confirmation, "From"), format!("block@{DOMAIN}"));
    assert!(String::from_utf8_lossy(confirmation).contains("> Subject: destination-block"));
    // Nothing blocked until the answer: the nym's mail still reaches him.
    alice_sends(&lab, "To: dave@outside.test\nSubject: hi\n\nsecond mail\n");
    lab.run_at(0);
    assert_eq!(outbox_of(&lab, "dave@outside.test").len(), 3);

    // Dave answers (his mail program keeps the subject).
    let subject = header(confirmation, "Subject");
    lab.put(format!("X-Original-To: block@{DOMAIN}\nFrom: dave@outside.test\nTo: block@{DOMAIN}\nSubject: Re: {subject}\n\nyes\n").as_bytes());
    lab.run_at(0);
    assert_eq!(lab.counter("block.confirmed"), 1);

    alice_sends(
        &lab,
        "To: dave@outside.test, carol@outside.test\nCc: Dave+lists@outside.test\nSubject: hi\n\nthird mail\n",
    );
    lab.run_at(0);
    assert_eq!(outbox_of(&lab, "dave@outside.test").len(), 3, "blocked: nothing more for dave");
    assert!(!lab.dir.path().join("out/dave+lists@outside.test").exists(), "nor for his subaddress");
    let carol = outbox_of(&lab, "carol@outside.test");
    assert_eq!(carol.len(), 1, "the other recipient gets hers");
    assert!(String::from_utf8_lossy(&carol[0]).contains("third mail"));
    assert_eq!(lab.counter("send.blocked-recipient"), 2);
    assert!(lab.read("pw").iter().any(|a| a.contains("went to 1 recipient")), "the nym's ack counts what went out");

    // Every mail the server handed to sendmail had its own envelope sender.
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.lines().count() >= 4, "{args}");
    assert!(args.lines().all(|l| l.starts_with(&format!("-i -f bounces@{DOMAIN} -- "))), "{args}");

    // A bounce of the nym's mail comes back to bounces@: destroyed, never seen by a nym.
    let articles = lab.articles_count();
    lab.put(
        format!(
            "X-Original-To: bounces@{DOMAIN}\nReturn-Path: <>\nFrom: MAILER-DAEMON@outside.test\nTo: bounces@{DOMAIN}\n\
             Subject: Undelivered Mail Returned to Sender\n\n> From: alice@{DOMAIN}\n> third mail\n"
        )
        .as_bytes(),
    );
    lab.run_at(0);
    assert_eq!(lab.counter("drop.bounce"), 1);
    assert_eq!(lab.articles_count(), articles, "nothing posted");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), args, "nothing sent");
    assert_eq!(std::fs::read_dir(lab.home().join("Maildir/new")).unwrap().count(), 0, "taken, not kept");
}

/// A forged request names a victim who never answers: one confirmation, however often it
/// is asked (with any subaddress), blocks nothing; a made-up nonce blocks nothing; the
/// day's cap holds for other addresses.
#[test]
fn a_forged_block_request_blocks_nothing_and_sends_one_confirmation() {
    let lab = Lab::new();
    lab.set("block_confirmations_per_day", "2");
    confirmed_nym(&lab, "alice", "pw");
    block_request(&lab, "victim@outside.test");
    lab.run_at(0);
    block_request(&lab, "Victim+x@outside.test");
    block_request(&lab, "victim@outside.test");
    lab.put(format!("X-Original-To: block@{DOMAIN}\nFrom: mallory@evil.test\nTo: block@{DOMAIN}\nSubject: Re: block-confirm:00112233445566778899aabbccddeeff\n\n").as_bytes());
    lab.run_at(3600);
    assert_eq!(outbox_of(&lab, "victim@outside.test").len(), 1, "exactly one confirmation");
    assert!(!lab.dir.path().join("out/victim+x@outside.test").exists());
    assert_eq!(lab.counter("block.confirmation-sent"), 1);
    assert_eq!(lab.counter("block.pending"), 2);
    assert_eq!(lab.counter("block.unknown-nonce"), 1);
    // The cap: one more address gets its confirmation, the next none.
    block_request(&lab, "w1@outside.test");
    block_request(&lab, "w2@outside.test");
    lab.run_at(3600);
    assert_eq!(lab.counter("block.confirmation-sent"), 2);
    assert_eq!(lab.counter("block.over-cap"), 1);
    assert_eq!(outbox_of(&lab, "w1@outside.test").len() + outbox_of(&lab, "w2@outside.test").len(), 1);
    // Unanswered, the victim still gets the nym's mail.
    alice_sends(&lab, "To: victim@outside.test\nSubject: hi\n\nstill reaches you\n");
    lab.run_at(3600);
    assert_eq!(outbox_of(&lab, "victim@outside.test").len(), 2);
    assert_eq!(lab.counter("send.blocked-recipient"), 0);
    // Mail to block@ that is neither a request nor a reply is taken and counted.
    lab.deliver(&format!("block@{DOMAIN}"), b"hello?\n");
    lab.run_at(3600);
    assert_eq!(lab.counter("block.ignored"), 1);
}

/// The operator blocks an address and a whole domain by hand; unblocks; bad input is an
/// error that changes nothing.
#[test]
fn the_operator_blocks_an_address_and_a_domain() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    let block = |args: &[&str]| {
        let mut a = vec!["block"];
        a.extend_from_slice(args);
        String::from_utf8(ok(lab.nymd(0, &a), b"").stdout).unwrap().trim().to_string()
    };
    assert_eq!(block(&["add", "Erin+x@Outside.test"]), "blocked");
    assert_eq!(block(&["add", "erin@outside.test"]), "already blocked");
    assert_eq!(block(&["check", "erin+other@outside.test"]), "blocked");
    assert_eq!(block(&["add", "@evil.test"]), "blocked");
    assert_eq!(block(&["check", "anyone@evil.test"]), "blocked");
    assert_eq!(block(&["check", "frank@outside.test"]), "not blocked");
    let bad = run(lab.nymd(0, &["block", "add", "not an address"]), b"");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("local@domain"), "{bad:?}");

    alice_sends(&lab, "To: erin@outside.test, mallory@evil.test\nCc: frank@outside.test\nSubject: hi\n\nmail one\n");
    lab.run_at(0);
    assert_eq!(outbox_of(&lab, "frank@outside.test").len(), 1);
    assert!(!lab.dir.path().join("out/erin@outside.test").exists());
    assert!(!lab.dir.path().join("out/mallory@evil.test").exists(), "the whole domain");
    assert_eq!(lab.counter("send.blocked-recipient"), 2);

    assert_eq!(block(&["remove", "erin@outside.test"]), "unblocked");
    assert_eq!(block(&["remove", "erin@outside.test"]), "was not blocked");
    alice_sends(&lab, "To: erin@outside.test\nSubject: hi\n\nmail two\n");
    lab.run_at(0);
    assert_eq!(outbox_of(&lab, "erin@outside.test").len(), 1, "unblocked");
}

/// A key block with `delete:` or `confirm:` beside it was taken as a key refresh and the
/// command ignored: now it is refused with the reason, and the nym is untouched.
#[test]
fn a_key_block_with_delete_or_confirm_is_refused_with_a_reason() {
    let lab = Lab::new();
    confirmed_nym(&lab, "alice", "pw");
    let key = lab.gpg.ok(&["--armor", "--export", &format!("alice@{DOMAIN}")], b"").stdout;
    for extra in ["delete: yes\nhsub: pw\n", "confirm: 0011223344556677\nhsub: pw\n"] {
        let mut text = key.clone();
        text.extend_from_slice(extra.as_bytes());
        lab.deliver(&format!("config@{DOMAIN}"), &lab.request("alice", &text, &[]));
        lab.run_at(0);
    }
    assert_eq!(lab.counter("refused.key-and-command"), 2);
    assert_eq!((lab.counter("config.deleted"), lab.counter("config.refreshed")), (0, 0));
    let said = lab.read("pw");
    let refusals: Vec<_> = said.iter().filter(|a| a.contains("Request refused") && a.contains("of its own")).collect();
    assert_eq!(refusals.len(), 2, "{said:?}");
    lab.deliver(&format!("alice@{DOMAIN}"), b"still alive\n");
    lab.run_at(0);
    assert!(lab.read("pw").iter().any(|a| a.contains("still alive")), "not deleted");
}

/// RFC 2142: postmaster@ and abuse@ of the nym domain reach a person. Mail to them is
/// filed unread in the Maildir's `.operator` folder (counted), never dropped and never
/// handled as a request; mail to the server's other reserved names is dropped. A flood of
/// it cannot fill the disk: the folder keeps the newest 1000.
#[test]
fn postmaster_and_abuse_reach_the_operator() {
    let lab = Lab::new();
    lab.deliver(&format!("postmaster@{DOMAIN}"), b"your server bounces my mail\n");
    lab.deliver(&format!("Abuse@{DOMAIN}"), b"a nym of yours harasses me\n");
    lab.deliver(&format!("nobody@{DOMAIN}"), b"to a reserved name nobody reads\n");
    lab.run_at(0);
    let kept = files(&lab.home().join("Maildir/.operator/new"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|m| String::from_utf8_lossy(m).contains("harasses")));
    assert_eq!((lab.counter("operator.kept"), lab.counter("drop.reserved")), (2, 1));
    assert!(files(&lab.home().join("Maildir/new")).is_empty());

    for i in 0..1003 {
        lab.put(format!("X-Original-To: abuse@{DOMAIN}\nSubject: {i}\n\nflood\n").as_bytes());
    }
    lab.run_at(60);
    assert_eq!(files(&lab.home().join("Maildir/.operator/new")).len(), 1000);
    assert_eq!(lab.counter("operator.over-cap"), 5);
}
