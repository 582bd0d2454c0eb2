//! The Debian package (issue 17), as an operator on Debian 12 meets it: `scripts/package`
//! builds it and lintian passes it, `apt-get install ./…deb` installs it with what it
//! depends on, the installed binaries, man pages and units work, the postinst's user and
//! home make a working exit node, `remove` keeps the node's home and a reinstall carries on
//! with it, and `purge` leaves nothing of the package, the home or the user.
//!
//! Needs root (it installs a package and runs the node as `mixtasy`); without root it says
//! so and passes. It refuses to run on a host with a node of its own in /var/lib/mixtasyd
//! or a `mixtasy` user the package did not make (purge would delete them). It starts no
//! service and installs without Recommends, so the host's Postfix, which the lab tests run
//! with their own configuration (tests/postfix.rs), is neither installed, configured nor
//! started by it; the node delivers through the `maildir:` transport into its own home,
//! never to sendmail. From install to purge it holds the lock the Postfix lab tests take
//! (their hook-up refuses an alias route while a user `mixtasy` exists). A guard purges the
//! package and whatever it left when the test fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use sequoia_openpgp::parse::Parse;

use crate::postfix::{cmd_ok, files_below, is_root, lock_etc_postfix};
use crate::util::*;

const PACKAGE: &str = "mixtasyd";
const HOME: &str = "/var/lib/mixtasyd";
const USER: &str = "mixtasy";
/// The test node's address: a home with any other address is an operator's node.
const ADDRESS: &str = "mixtasy@pkgtest.example.org";
/// Where the test node's exit delivers (`maildir:` transport), inside its home.
const DELIVERED: &str = "/var/lib/mixtasyd/delivered";
const ORIGINAL: &[u8] = b"To: bob@rcpt.test\nSubject: packaged\n\nthrough the installed package\n";

/// `apt-get -y ARGS` without questions, Recommends or a wait for another apt's lock.
fn apt(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(["-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]).args(args);
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// dpkg's two-letter state of the package (`ii`, `rc`, …), or None when dpkg has forgotten it.
fn dpkg_state() -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", PACKAGE]).output().unwrap();
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !state.is_empty() && state != "un").then_some(state)
}

fn getent(db: &str, key: &str) -> Option<String> {
    let out = Command::new("getent").args([db, key]).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `mixtasyd --home /var/lib/mixtasyd ARGS` as the node user, as an operator runs it.
fn node(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", USER, "--", "/usr/bin/mixtasyd", "--home", HOME]).args(args).current_dir("/");
    c
}

/// The test's node, if /var/lib/mixtasyd holds one: its config names ADDRESS.
fn home_is_the_tests() -> bool {
    std::fs::read_to_string(Path::new(HOME).join("mixtasyd.toml"))
        .is_ok_and(|t| t.contains(&format!("address = \"{ADDRESS}\"")))
}

/// Refuses a host where purge would destroy something not the test's; clears what a killed
/// earlier run left.
fn refuse_or_clear_leftovers() {
    let key = Path::new(HOME).join("secret-key.pgp");
    assert!(
        !key.exists() || home_is_the_tests(),
        "{} holds a node that is not this test's: the package test would purge it; run it on a test machine",
        key.display()
    );
    if dpkg_state().is_some() {
        ok(apt(&["purge", PACKAGE]), b"");
    }
    assert!(
        getent("passwd", USER).is_none(),
        "user {USER} exists without the package (scripts/install --system?): purge would delete it; run on a test machine"
    );
    let _ = std::fs::remove_dir_all(HOME);
}

/// Purges the package, and then what a failed postrm would have left (none of it was there
/// before the test: `refuse_or_clear_leftovers`).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if dpkg_state().is_some() {
            let out = apt(&["purge", PACKAGE]).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("cleaning up: apt-get purge {PACKAGE} failed: {out:?}");
            }
        }
        if getent("passwd", USER).is_some() {
            let _ = Command::new("userdel").arg(USER).status();
        }
        if getent("group", USER).is_some() {
            let _ = Command::new("groupdel").arg(USER).status();
        }
        let _ = std::fs::remove_dir_all(HOME);
    }
}

/// `path`'s mode bits and owner.
fn mode_owner(path: &str) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid())
}

/// A wire mail for the node at /var/lib/mixtasyd, as the one hop and exit, carrying ORIGINAL.
fn mail_for_the_node() -> Vec<u8> {
    let public = ok(node(&["key", "export"]), b"").stdout;
    let cert = sequoia_openpgp::Cert::from_bytes(&public).unwrap();
    let now = SystemTime::now();
    let mix = mixtasy::mixes::directory::check(&cert, now).unwrap_or_else(|e| panic!("the node's key: {e:?}"));
    let mut rng = rand::rng();
    let fin = mixtasy::format::message::build_final(
        &mixtasy::format::message::new_id(&mut rng),
        mixtasy::format::message::Kind::Singlepart,
        ORIGINAL,
        &mut rng,
    );
    mixtasy::sender::create::wrap(fin, &[&mix], None, now, &mut rng).unwrap().mail
}

/// Drops `mail` into the node's Maildir as the MTA would (owned by the node user).
fn deliver_to_node(mail: &[u8], name: &str, uid: u32, gid: u32) {
    let file = Path::new(HOME).join("Maildir/new").join(name);
    std::fs::write(&file, mail).unwrap();
    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
}

/// What the test node's exit delivered to bob@rcpt.test.
fn delivered_to_bob() -> Vec<Vec<u8>> {
    files_below(&Path::new(DELIVERED).join("bob@rcpt.test/new")).iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Runs rounds (at most 3) until bob has `n` mails.
fn rounds_until_bob_has(n: usize) {
    for _ in 0..3 {
        ok(node(&["--round"]), b"");
        if delivered_to_bob().len() >= n {
            return;
        }
    }
    panic!("the installed node delivered {} of {n} mails in 3 rounds", delivered_to_bob().len());
}

/// `scripts/package` as an operator runs it: without the variables cargo sets for a test
/// (CARGO_MANIFEST_DIR, CARGO_PKG_*, …), which build scripts track (ring's does), so that
/// the release build they are in would differ from a plain `cargo build --release` and each
/// would rebuild what the other built.
fn package_command(root: &Path) -> Command {
    let mut c = Command::new(root.join("scripts/package"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let set_by_cargo_test = k.starts_with("CARGO_PKG_")
            || [
                "CARGO",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&k.as_ref());
        if set_by_cargo_test {
            c.env_remove(k.as_ref());
        }
    }
    c
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn the_debian_package_installs_a_working_node_and_purge_leaves_nothing() {
    if !is_root() {
        eprintln!(
            "skipped: the package test installs a Debian package and runs the node as user {USER}: run it as root"
        );
        return;
    }
    refuse_or_clear_leftovers();

    // Built, and lintian passed it (scripts/package fails on a lintian error or warning).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = ok(package_command(root), b"");
    let deb = root.join(lines(&built).last().expect("scripts/package names the .deb"));
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{PACKAGE}_{}-", env!("CARGO_PKG_VERSION"))) && name.ends_with(".deb"), "{name}");
    let field = |f: &str| {
        let mut c = Command::new("dpkg-deb");
        c.arg("-f").arg(&deb).arg(f);
        String::from_utf8(ok(c, b"").stdout).unwrap().trim().to_string()
    };
    let depends = field("Depends");
    for d in ["libc6", "libnettle8", "libssl3", "adduser"] {
        assert!(
            depends.split(", ").any(|x| x.starts_with(d)),
            "Depends lacks {d} (from shlibs or the metadata): {depends}"
        );
    }
    assert_eq!(field("Recommends"), "postfix | mail-transport-agent");

    // From install to purge the user `mixtasy` exists, which the Postfix lab's alias route
    // refuses to shadow: they wait. Declared first, the lock is released after the guard purged.
    let _postfix_tests_wait = Path::new("/etc/postfix").exists().then(lock_etc_postfix);
    let _purge = Purge;
    ok(apt(&["install", deb.to_str().unwrap()]), b"");
    assert_eq!(dpkg_state().as_deref(), Some("ii"));
    let listed = lines(&cmd_ok("dpkg", &["-L", PACKAGE]));
    let files: Vec<PathBuf> = listed.iter().map(PathBuf::from).filter(|p| p.is_file()).collect();
    for f in [
        "/usr/bin/mixtasyd",
        "/usr/bin/mixtasy",
        "/lib/systemd/system/mixtasyd.service",
        "/lib/systemd/system/mixtasyd.timer",
        "/usr/share/doc/mixtasyd/README.Debian",
        "/usr/share/doc/mixtasyd/operator.md",
        "/usr/share/doc/mixtasyd/examples/mixtasyd.toml",
        "/usr/share/mixtasyd/postfix-hookup",
    ] {
        assert!(files.iter().any(|p| p == Path::new(f)), "{f} not installed; dpkg -L:\n{}", listed.join("\n"));
    }
    for f in &files {
        assert!(!f.starts_with("/usr/local") && !f.starts_with("/etc"), "the package installs {}", f.display());
    }

    // The binaries, the man pages and the units, as installed.
    for b in ["mixtasyd", "mixtasy"] {
        let mut c = Command::new(format!("/usr/bin/{b}"));
        c.arg("--version");
        assert_eq!(String::from_utf8(ok(c, b"").stdout).unwrap(), format!("{b} {}\n", env!("CARGO_PKG_VERSION")));
    }
    for (page, section) in [("mixtasyd", "man8"), ("mixtasyd.toml", "man5"), ("mixtasy", "man1")] {
        let mut c = Command::new("man");
        c.args(["-w", page]).env_remove("MANPATH");
        let at = String::from_utf8(ok(c, b"").stdout).unwrap();
        assert!(at.starts_with(&format!("/usr/share/man/{section}/{page}.")), "man -w {page}: {at}");
    }
    let service = std::fs::read_to_string("/lib/systemd/system/mixtasyd.service").unwrap();
    assert!(service.contains("\nExecStart=/usr/bin/mixtasyd --round\n"), "{service}");
    let mut c = Command::new("systemd-analyze");
    c.args(["verify", "/lib/systemd/system/mixtasyd.service", "/lib/systemd/system/mixtasyd.timer"])
        .env_remove("MANPATH");
    let o = ok(c, b"");
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Nothing enabled (no wants/ link or copy anywhere in /etc/systemd).
    let enabled: Vec<PathBuf> = files_below(Path::new("/etc/systemd"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("mixtasyd"))
        .collect();
    assert!(enabled.is_empty(), "the package enabled {enabled:?}");

    // The system user and its home.
    let pw = getent("passwd", USER).expect("postinst made the user");
    let f: Vec<&str> = pw.split(':').collect();
    let (uid, gid): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert!(uid < 1000, "{pw}: not a system user");
    assert_eq!((f[5], f[6]), (HOME, "/usr/sbin/nologin"), "{pw}");
    assert_eq!(mode_owner(HOME), (0o700, uid));
    if getent("group", "postdrop").is_some() {
        let groups = String::from_utf8(cmd_ok("id", &["-nG", USER]).stdout).unwrap();
        assert!(groups.split_whitespace().any(|g| g == "postdrop"), "{USER} is not in postdrop: {groups}");
    }

    // A working exit node, made as the guide says, that delivers a mail.
    ok(node(&["init", "--address", ADDRESS, "--modes", "middleman,exitpublic"]), b"");
    let key_file = format!("{HOME}/secret-key.pgp");
    assert_eq!(mode_owner(&key_file), (0o600, uid));
    let config = Path::new(HOME).join("mixtasyd.toml");
    configure_file(&config, "transport", &format!("\"maildir:{DELIVERED}\""));
    for (k, v) in [
        ("min_pool", "0"),
        ("threshold", "1"),
        ("rate", "1.0"),
        ("dummy_time_p", "0.0"),
        ("dummy_flush_p", "0.0"),
        ("dummy_starved_p", "0.0"),
        ("dummy_arrival_p", "0.0"),
    ] {
        configure_file(&config, k, v);
    }
    deliver_to_node(&mail_for_the_node(), "pkgtest.1", uid, gid);
    rounds_until_bob_has(1);
    assert!(String::from_utf8_lossy(&delivered_to_bob()[0]).contains("through the installed package"));
    let key = std::fs::read(&key_file).unwrap();

    // Remove: the binaries go, the home with its key and the user stay.
    ok(apt(&["remove", PACKAGE]), b"");
    assert_ne!(dpkg_state().as_deref(), Some("ii"));
    for f in &files {
        assert!(!f.exists(), "{} is left after remove", f.display());
    }
    assert_eq!(std::fs::read(&key_file).unwrap(), key, "remove changed the key");
    assert!(getent("passwd", USER).is_some(), "remove deleted the user, who owns the kept home");

    // A reinstall takes the kept node as it is, and it goes on delivering.
    ok(apt(&["install", deb.to_str().unwrap()]), b"");
    assert_eq!(std::fs::read(&key_file).unwrap(), key, "the reinstall changed the key");
    assert_eq!(mode_owner(HOME), (0o700, uid));
    assert!(home_is_the_tests(), "the reinstall rewrote the settings");
    deliver_to_node(&mail_for_the_node(), "pkgtest.2", uid, gid);
    rounds_until_bob_has(2);

    // Purge: nothing of the package, the home or the user is left.
    ok(apt(&["purge", PACKAGE]), b"");
    assert_eq!(dpkg_state(), None, "dpkg still knows {PACKAGE} after purge");
    let out = Command::new("dpkg").args(["-L", PACKAGE]).output().unwrap();
    assert!(!out.status.success(), "dpkg -L {PACKAGE} after purge: {}", String::from_utf8_lossy(&out.stdout));
    for f in &files {
        assert!(!f.exists(), "{} is left after purge", f.display());
    }
    for d in ["/usr/share/doc/mixtasyd", "/usr/share/mixtasyd", HOME] {
        assert!(!Path::new(d).exists(), "{d} is left after purge");
    }
    assert_eq!(getent("passwd", USER), None, "purge left the user");
    assert_eq!(getent("group", USER), None, "purge left the group");
    if let Some(postdrop) = getent("group", "postdrop") {
        assert!(!postdrop.split([':', ',']).skip(3).any(|m| m == USER), "purge left {USER} in postdrop: {postdrop}");
    }
}
