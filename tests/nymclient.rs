//! The nym's owner's client `mixtasy nym …` against the real `mixtasy-nymd`: create,
//! confirm, receive from an outside sender, fetch by hSub into a Maildir, send as the nym;
//! and the attacks on fetch: articles forged under the nym's hSub, damaged articles,
//! other nyms' articles, the same article twice.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nym::{code_in, confirmed_nym, files, header, Lab, DOMAIN};
use crate::util::{lab_sendmail, mixtasy, ok, run, Inn, Net};

/// One user of the client: a client home and a Maildir their mail program reads.
struct Owner {
    dir: tempfile::TempDir,
    address: String,
    /// Where `fetch` reads the group: the lab's Maildir, or INN.
    source: String,
    /// The client home (its own, or a lab network's client with the mix keys).
    home: PathBuf,
}

impl Owner {
    fn new(lab: &Lab, name: &str) -> Self {
        let source = format!("maildir:{}", lab.home().join("news").display());
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let o = Owner { dir, address: format!("{name}@{DOMAIN}"), source, home };
        std::fs::write(o.dir.path().join("server.asc"), ok(lab.nymd(0, &["key"]), b"").stdout).unwrap();
        o
    }

    fn home(&self) -> PathBuf {
        self.home.clone()
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("NymMail")
    }

    fn cmd(&self, lab: &Lab, args: &[&str]) -> Command {
        let mut c = mixtasy();
        c.arg("--home").arg(self.home()).arg("--now").arg(lab.now.to_string()).arg("nym").args(args);
        c
    }

    /// A request with `--print`, handed to the server as Postfix would hand it the mail
    /// that came out of the network's exit.
    fn request(&self, lab: &Lab, args: &[&str], stdin: &[u8]) {
        let mut args = args.to_vec();
        args.extend_from_slice(&["--print"]);
        let mail = ok(self.cmd(lab, &args), stdin).stdout;
        let to = header(&mail, "To");
        assert!(to == format!("config@{DOMAIN}") || to == format!("send@{DOMAIN}"), "{to}");
        let (_, body) = mail.split_at(mail.windows(2).position(|w| w == b"\n\n").unwrap() + 2);
        lab.deliver(&to, body);
    }

    fn fetch(&self, lab: &Lab) -> String {
        let out = ok(
            self.cmd(lab, &["fetch", &self.address, "--from", &self.source, "--into", self.inbox().to_str().unwrap()]),
            b"",
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn mails(&self) -> Vec<String> {
        files(&self.inbox().join("new")).into_iter().map(|m| String::from_utf8(m).unwrap()).collect()
    }

    fn profile(&self) -> PathBuf {
        self.home().join("nyms").join(&self.address)
    }
}

/// Creates and confirms a nym with the client alone, fetching from `source` (None: the
/// lab's Maildir).
fn created(lab: &Lab, name: &str, hsub: &str) -> Owner {
    created_with(lab, name, hsub, None)
}

fn created_with(lab: &Lab, name: &str, hsub: &str, source: Option<String>) -> Owner {
    let mut o = Owner::new(lab, name);
    if let Some(s) = source {
        o.source = s;
    }
    let server = o.dir.path().join("server.asc");
    o.request(
        lab,
        &["create", &o.address, "--server-key", server.to_str().unwrap(), "--hsub", hsub, "--delivery", "newsgroup"],
        b"",
    );
    lab.run_at(0);
    assert_eq!(lab.counter("config.created"), 1);
    let said = o.fetch(lab);
    let mails = o.mails();
    assert_eq!(mails.len(), 1, "the confirmation, fetched from the group: {said}");
    o.request(lab, &["confirm", &o.address, &code_in(&mails[0])], b"");
    lab.run_at(0);
    assert_eq!(lab.counter("config.confirmed"), 1);
    o.fetch(lab);
    let mails = o.mails();
    assert_eq!(mails.len(), 2, "the confirmation, then the server's word that it took it");
    assert!(mails.iter().any(|m| m.contains("Delivery confirmed")), "{mails:?}");
    o
}

#[test]
fn client_creates_confirms_fetches_and_sends_as_the_nym() {
    let lab = Lab::new();
    let alice = created(&lab, "alice", "alice's hsub passphrase");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(alice.profile().join("key.pgp")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(alice.profile()).unwrap().permissions().mode() & 0o777, 0o700);

    // Another nym, made with GnuPG alone, shares the group: its mail is read, not kept.
    confirmed_nym(&lab, "bob", "bob-pw");
    lab.deliver(&format!("bob@{DOMAIN}"), b"for bob only\n");
    lab.deliver(&format!("alice@{DOMAIN}"), b"hello alice, from outside\n");
    lab.run_at(0);
    assert_eq!(lab.counter("inbound.delivered"), 2);
    let before = alice.mails().len();
    let said = alice.fetch(&lab);
    let mails = alice.mails();
    assert_eq!(mails.len(), before + 1, "{said}");
    assert!(
        mails.iter().any(|m| m.contains("hello alice, from outside") && m.contains("From: someone@outside.test")),
        "{mails:?}"
    );
    assert!(!mails.iter().any(|m| m.contains("for bob only")));
    assert!(said.contains(&format!("read {} article(s)", lab.articles_count())), "every article is downloaded: {said}");
    // Fetching again brings nothing twice.
    alice.fetch(&lab);
    assert_eq!(alice.mails().len(), mails.len());

    // Send as the nym: the owner's own address goes nowhere.
    let original =
        b"From: Alice Owner <owner@home.test>\nTo: carol@outside.test\nSubject: from a nym\n\nsigned by the nym key\n";
    alice.request(&lab, &["send", &alice.address], original);
    lab.run_at(0);
    assert_eq!(lab.counter("send.sent"), 1);
    let out = files(&lab.dir.path().join("out/carol@outside.test/new"));
    assert_eq!(out.len(), 1);
    let text = String::from_utf8_lossy(&out[0]);
    assert_eq!(header(&out[0], "From"), format!("alice@{DOMAIN}"));
    assert!(
        text.contains("signed by the nym key") && !text.contains("owner@home.test") && !text.contains("Alice Owner"),
        "{text}"
    );

    // A send with no recipient is refused by the client, before anything is sealed.
    let o = run(alice.cmd(&lab, &["send", &alice.address, "--print"]), b"Subject: nobody\n\nx\n");
    assert!(!o.status.success() && o.stdout.is_empty());
}

#[test]
fn fetch_keeps_only_what_the_server_sealed_to_the_nym() {
    use mixtasy::nymserv::{hsub, pgp};
    use sequoia_openpgp::parse::Parse;
    let lab = Lab::new();
    let alice = created(&lab, "alice", "pw");
    let have = alice.mails().len();
    let key = sequoia_openpgp::Cert::from_file(alice.profile().join("key.pgp")).unwrap();
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(lab.now);
    // An adversary who learnt the hSub passphrase posts mail sealed to alice's public key
    // but signed by their own key (say, to plant a fake confirmation or instructions).
    let (mallory, _) = sequoia_openpgp::cert::CertBuilder::general_purpose(Some("config@nym.test")).generate().unwrap();
    let forged = pgp::seal(
        &key.clone().strip_secret_key_material(),
        &mallory,
        b"Subject: from the operator\n\nsend your key\n",
        None,
        now,
    )
    .unwrap();
    let news = lab.home().join("news/new");
    let post = |name: &str, body: &[u8]| {
        let mut a = format!(
            "Newsgroups: alt.anonymous.messages\nSubject: {}\nMessage-ID: <{name}@x>\n\n",
            hsub::make(Some("pw"), &mut rand::rng())
        )
        .into_bytes();
        a.extend_from_slice(body);
        std::fs::write(news.join(name), a).unwrap();
    };
    post("forged", &forged);
    // A real article of alice's, damaged in transit.
    lab.deliver(&format!("alice@{DOMAIN}"), b"the real one\n");
    lab.run_at(0);
    let newest = newest_article(&news);
    let mut damaged = std::fs::read(&newest).unwrap();
    let i = damaged.len() - 200;
    damaged[i] = if damaged[i] == b'A' { b'B' } else { b'A' };
    post("damaged", &mailparse::parse_mail(&damaged).unwrap().get_body_raw().unwrap());
    // The same real article a second time (a replay in the group).
    std::fs::copy(&newest, news.join("again")).unwrap();

    let said = alice.fetch(&lab);
    let mails = alice.mails();
    assert_eq!(mails.len(), have + 1, "only the real article, once: {said}");
    assert!(mails.iter().any(|m| m.contains("the real one")));
    assert!(!mails.iter().any(|m| m.contains("send your key")));
    assert!(said.contains("2 of ours refused"), "{said}");
    // The refused articles are left alone, and a later fetch still refuses them.
    let again = alice.fetch(&lab);
    assert!(again.contains("0 new mail") && again.contains("2 of ours refused"), "{again}");
}

fn newest_article(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap());
    names.pop().unwrap()
}

/// The whole workflow with the real news server: mixtasy-nymd posts to INN over NNTP, the
/// client reads the whole group from INN and keeps its own by hSub.
#[test]
fn through_inn_create_confirm_receive_fetch_and_send() {
    let inn = Inn::start();
    let lab = Lab::new();
    lab.set("news", &format!("{:?}", inn.url()));
    let alice = created_with(&lab, "alice", "pw at inn", Some(inn.url()));
    assert_eq!(lab.counter("out.news"), 2, "the confirmation and its answer went to INN");
    // Somebody else's traffic in the group: an article posted by another nym.
    confirmed_nym_elsewhere(&lab);
    lab.deliver(&format!("alice@{DOMAIN}"), b"mail for alice through INN\n");
    lab.run_at(0);
    assert_eq!(lab.counter("out.news-failed"), 0, "{}", inn.log());
    let said = alice.fetch(&lab);
    assert!(said.contains("read 4 article(s)"), "the whole group is read: {said}");
    let mails = alice.mails();
    assert_eq!(mails.len(), 3, "{said}");
    assert!(mails.iter().any(|m| m.contains("mail for alice through INN")));
    alice.fetch(&lab);
    assert_eq!(alice.mails().len(), 3, "nothing twice");

    alice.request(
        &lab,
        &["send", &alice.address],
        b"To: dave@outside.test\nSubject: hi\n\nfrom the nym, read over INN\n",
    );
    lab.run_at(0);
    let out = files(&lab.dir.path().join("out/dave@outside.test/new"));
    assert_eq!(out.len(), 1);
    assert_eq!(header(&out[0], "From"), format!("alice@{DOMAIN}"));
}

/// One more article in the group, for a nym that is not alice: a create by another
/// client whose confirmation is posted to the group.
fn confirmed_nym_elsewhere(lab: &Lab) {
    let bob = Owner::new(lab, "bob");
    let server = bob.dir.path().join("server.asc");
    bob.request(lab, &["create", &bob.address, "--server-key", server.to_str().unwrap(), "--hsub", "bob's"], b"");
    lab.run_at(0);
}

/// Without `--print`: requests and sends leave through the Mixtasy network (four lab
/// mixes), like `mixtasy send`, and reach the server only from an exit.
#[test]
fn requests_and_sends_go_through_the_network() {
    let lab = Lab::new();
    let mut net = Net::new(lab.now);
    let mixes = ["m1.test", "m2.test", "m3.test", "m4.test"];
    for n in mixes {
        net.add_lab_node(n, "middleman,exitpublic");
    }
    net.introduce_nodes();
    net.publish_all_to_client();
    let mut alice = Owner::new(&lab, "alice");
    alice.home = net.client_home();
    let sendmail = lab_sendmail(&net);
    // One request through the network, then handed to the server as Postfix would.
    let through = |args: &[&str], stdin: &[u8], to: &str| {
        let mut c = alice.cmd(&lab, args);
        c.arg("--sendmail").arg(&sendmail);
        let said = String::from_utf8(ok(c, stdin).stderr).unwrap();
        assert!(said.contains("handed 1 wire message(s) to sendmail"), "{said}");
        for _ in 0..6 {
            for n in mixes {
                net.round(n);
            }
        }
        let got = net.delivered(to);
        let mail = got.last().unwrap_or_else(|| panic!("nothing reached {to}"));
        let text = String::from_utf8_lossy(mail);
        assert!(text.contains("-----BEGIN PGP MESSAGE-----") && !text.contains("owner@home.test"), "{text}");
        let (_, body) = mail.split_at(mail.windows(2).position(|w| w == b"\n\n").unwrap() + 2);
        lab.deliver(to, body);
        lab.run_at(0);
    };
    let server = alice.dir.path().join("server.asc");
    through(
        &["create", &alice.address, "--server-key", server.to_str().unwrap(), "--hsub", "pw"],
        b"",
        &format!("config@{DOMAIN}"),
    );
    assert_eq!(lab.counter("config.created"), 1);
    alice.fetch(&lab);
    let code = code_in(&alice.mails()[0]);
    through(&["confirm", &alice.address, &code], b"", &format!("config@{DOMAIN}"));
    assert_eq!(lab.counter("config.confirmed"), 1);
    through(
        &["send", &alice.address],
        b"From: owner@home.test\nTo: erin@outside.test\nSubject: s\n\nvia the mixes\n",
        &format!("send@{DOMAIN}"),
    );
    let out = files(&lab.dir.path().join("out/erin@outside.test/new"));
    assert_eq!(out.len(), 1);
    assert_eq!(header(&out[0], "From"), format!("alice@{DOMAIN}"));
    assert!(String::from_utf8_lossy(&out[0]).contains("via the mixes"));
}

/// A nym key the user made with GnuPG and keeps in a file of their own (`--key`): used for
/// create and fetch, never copied into the client home.
#[test]
fn a_gnupg_key_kept_in_a_file_is_used_and_not_copied() {
    let lab = Lab::new();
    lab.new_nym_key("carol");
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
                &format!("carol@{DOMAIN}"),
            ],
            b"",
        )
        .stdout;
    let carol = Owner::new(&lab, "carol");
    let keyfile = carol.dir.path().join("carol-secret.asc");
    std::fs::write(&keyfile, secret).unwrap();
    let (key, server) = (keyfile.to_str().unwrap(), carol.dir.path().join("server.asc"));
    carol.request(
        &lab,
        &["create", &carol.address, "--server-key", server.to_str().unwrap(), "--hsub", "c", "--key", key],
        b"",
    );
    lab.run_at(0);
    assert_eq!(lab.counter("config.created"), 1);
    assert!(!carol.profile().join("key.pgp").exists(), "the key stays in the user's file");
    // Without --key the client has no key for carol, and says so.
    let from = format!("maildir:{}", lab.home().join("news").display());
    let o = run(
        carol.cmd(&lab, &["fetch", &carol.address, "--from", &from, "--into", carol.inbox().to_str().unwrap()]),
        b"",
    );
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--key"), "{o:?}");
    ok(
        carol.cmd(
            &lab,
            &["fetch", &carol.address, "--from", &from, "--into", carol.inbox().to_str().unwrap(), "--key", key],
        ),
        b"",
    );
    assert!(carol.mails().iter().any(|m| m.contains("confirm: ")), "the confirmation, opened with the file's key");
    // Someone else's key in that file is refused.
    let (other, _) = sequoia_openpgp::cert::CertBuilder::general_purpose(Some("mallory@nym.test")).generate().unwrap();
    use sequoia_openpgp::serialize::MarshalInto;
    std::fs::write(&keyfile, other.as_tsk().armored().to_vec().unwrap()).unwrap();
    let o = run(carol.cmd(&lab, &["confirm", &carol.address, "0f3a", "--key", key, "--print"]), b"");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not for carol@nym.test"), "{o:?}");
}

/// `modify --symmetric` and `--hsub`: mail sealed before the server took the change and
/// mail sealed after are both read (the client keeps every passphrase it was given).
#[test]
fn mail_under_old_and_new_passphrases_is_read_after_modify() {
    let lab = Lab::new();
    let alice = created(&lab, "alice", "old hsub");
    lab.deliver(&format!("alice@{DOMAIN}"), b"before the change\n");
    lab.run_at(0);
    alice.request(&lab, &["modify", &alice.address, "--hsub", "new hsub", "--symmetric", "outer layer"], b"");
    lab.run_at(0);
    assert_eq!(lab.counter("config.modified"), 1);
    lab.deliver(&format!("alice@{DOMAIN}"), b"after the change\n");
    lab.run_at(0);
    // The new article is under the new hSub, in a symmetric layer GnuPG's nym key alone cannot open.
    let news = lab.home().join("news/new");
    let newest = std::fs::read(newest_article(&news)).unwrap();
    assert!(mixtasy::nymserv::hsub::matches(&header(&newest, "Subject"), "new hsub"));
    {
        use mixtasy::nymclient::{fetch, profile::Settings};
        use sequoia_openpgp::{parse::Parse, Cert};
        let key = Cert::from_file(alice.profile().join("key.pgp")).unwrap();
        let server = Cert::from_file(alice.profile().join("server.asc")).unwrap();
        let body = mailparse::parse_mail(&newest).unwrap().get_body_raw().unwrap();
        let now = std::time::SystemTime::now();
        let plain = Settings { hsub: vec!["new hsub".into()], symmetric: vec![] };
        assert!(fetch::open(&body, &key, &server, &plain, now).is_err(), "the symmetric layer is there");
        let sym = Settings { symmetric: vec!["outer layer".into()], ..plain };
        assert!(fetch::open(&body, &key, &server, &sym, now).is_ok());
    }
    let said = alice.fetch(&lab);
    let mails = alice.mails();
    assert!(
        mails.iter().any(|m| m.contains("before the change")) && mails.iter().any(|m| m.contains("after the change")),
        "{said}"
    );
    // A modify with nothing in it is refused before anything is sealed.
    let o = run(alice.cmd(&lab, &["modify", &alice.address, "--print"]), b"");
    assert!(!o.status.success() && o.stdout.is_empty());
}

/// doc/nym.md's "Read your mail": the real NeoMutt, with the muttrc lines the guide shows
/// (read from the guide itself), opens the Maildir `mixtasy nym fetch` wrote and reads every
/// mail in it: the outside sender's, its encoded subject and body decoded, and the server's
/// answers. NeoMutt needs a terminal: script(1) gives it one, and it pipes each message,
/// decoded as it would show it, into a file.
#[test]
fn neomutt_reads_the_fetched_maildir_with_the_guides_muttrc() {
    let lab = Lab::new();
    let alice = created(&lab, "alice", "pw");
    let mail = format!(
        "X-Original-To: alice@{DOMAIN}\nTo: alice@{DOMAIN}\nFrom: Carol <carol@outside.test>\n\
         Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_to_a_nym?=\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
         the caf=C3=A9 is open\n"
    );
    std::fs::write(lab.home().join("Maildir/new/carol.lab"), mail).unwrap();
    lab.run_at(0);
    alice.fetch(&lab);
    assert_eq!(alice.mails().len(), 3, "the confirmation, its answer, carol's mail");

    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/nym.md")).unwrap();
    let lines = guide
        .split("```muttrc\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("doc/nym.md shows the muttrc lines in a ```muttrc block");
    assert!(lines.contains("~/NymMail"), "the guide's Maildir is the one `fetch --into ~/NymMail` writes");
    // The guide's lines as they are (HOME is the owner's directory, so `~/NymMail` is the
    // inbox `fetch` wrote), then what only a batch run needs: no files of the user's
    // touched, no key waited for, every message piped out decoded.
    let muttrc = alice.dir.path().join("muttrc");
    let read = alice.dir.path().join("read-by-neomutt");
    std::fs::write(
        &muttrc,
        format!(
            "{lines}set record=\"\"\nset header_cache=\"\"\nset wait_key=no\nset pipe_split=yes\nset pipe_decode=yes\nset charset=utf-8\n"
        ),
    )
    .unwrap();
    if Command::new("neomutt").arg("-v").stdin(std::process::Stdio::null()).output().is_err() {
        panic!("NeoMutt is not installed: this test runs the real one; run scripts/install-deps --test");
    }
    let push =
        format!("push \"<tag-pattern>~A<enter><tag-prefix><pipe-message>cat >> {}<enter><exit>\"", read.display());
    // `script` runs the line with $SHELL (CI has none: /bin/sh, which does not exec a last
    // command). `exec` and `--foreground` keep NeoMutt in the terminal's foreground group: in a
    // background group the terminal stops it, and a stopped NeoMutt blocks SIGTERM, so a plain
    // `timeout` never ends it. `-k` kills it should SIGTERM not.
    let line = format!("exec timeout --foreground -k 10 60 neomutt -n -F {} -e '{push}'", muttrc.display());
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("HOME", alice.dir.path())
        .env("TERM", "dumb")
        .env("LANG", "C.UTF-8")
        .env_remove("MAIL");
    let desc = format!("{c:?}");
    let out = run(c, b"");
    assert!(out.status.success(), "NeoMutt failed\n{}", crate::util::describe(&Command::new(desc), &out));
    let text = std::fs::read_to_string(&read).unwrap_or_default();
    assert!(text.contains("From: Carol <carol@outside.test>"), "{text}");
    assert!(text.contains("Subject: Grüße to a nym") && text.contains("the café is open"), "decoded: {text}");
    assert!(text.contains("Delivery confirmed"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("Subject: ")).count(), 3, "every mail read: {text}");
}

/// `mixtasy nym delete`: the server deletes the nym and says so in the group (fetched like
/// any mail); mail to it is dropped from then on, as for an unknown name.
#[test]
fn client_delete_ends_the_nym() {
    let lab = Lab::new();
    let alice = created(&lab, "alice", "pw");
    alice.request(&lab, &["delete", &alice.address], b"");
    lab.run_at(0);
    assert_eq!(lab.counter("config.deleted"), 1);
    alice.fetch(&lab);
    assert!(alice.mails().iter().any(|m| m.contains("Your nym is deleted")), "{:?}", alice.mails());
    lab.deliver(&format!("alice@{DOMAIN}"), b"after the delete\n");
    lab.run_at(0);
    assert_eq!((lab.counter("drop.unknown"), lab.counter("inbound.delivered")), (1, 0));
    // Sending as the deleted nym is refused.
    alice.request(&lab, &["send", &alice.address], b"To: dave@outside.test\nSubject: s\n\nx\n");
    lab.run_at(0);
    assert_eq!(lab.counter("refused.unsigned"), 1);
    assert!(!lab.dir.path().join("out/dave@outside.test").exists());
}
