//! `scripts/install` (issue 13): it installs the binaries it is given (`--from`), and the
//! next steps it prints start the node as a middleman, at an address that must be filled in
//! with the host's FQDN (pasted as printed, `init` refuses it and leaves nothing behind), and
//! hook Postfix up before the timer starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{mixtasyd, ok, run};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install")
}

/// Where cargo put the binaries under test (target/debug).
fn built() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mixtasyd")).parent().unwrap().to_path_buf()
}

/// Runs scripts/install with `args`, HOME (and the unit directory) inside `dir`; its stdout.
fn install(dir: &Path, args: &[&str]) -> String {
    let mut c = Command::new(script());
    c.args(args).env("HOME", dir.join("home")).env("XDG_CONFIG_HOME", dir.join("home/.config"));
    String::from_utf8(ok(c, b"").stdout).unwrap()
}

/// The position of the first line of `text` containing `what`, failing with the text.
fn line_of(text: &str, what: &str) -> usize {
    text.lines().position(|l| l.contains(what)).unwrap_or_else(|| panic!("no line with {what:?} in:\n{text}"))
}

/// What every flavour's next steps must say: `middleman` first wherever modes are given,
/// no `$(hostname -f)` (a short name on many hosts), init, then the Postfix hook-up, then
/// the check, then the timer; and the init line works once FQDN is filled in, and only then.
/// Returns the printed init line's arguments from `init` on.
fn check_next_steps(text: &str, hookup: &str) -> Vec<String> {
    let modes: Vec<&str> = text.split("--modes ").skip(1).map(|rest| rest.split_whitespace().next().unwrap()).collect();
    assert!(!modes.is_empty(), "the next steps give no --modes:\n{text}");
    for m in &modes {
        assert_eq!(m.split(',').next(), Some("middleman"), "--modes {m} does not start with middleman:\n{text}");
    }
    assert!(!text.contains("$(hostname"), "the next steps derive the address from hostname:\n{text}");
    let init = line_of(text, " init --address");
    let hook = line_of(text, hookup);
    let check = line_of(text, "mixtasyd check");
    let timer = line_of(text, "enable --now mixtasyd.timer");
    assert!(init < hook && hook < check && check < timer, "steps out of order (init, hook-up, check, timer):\n{text}");

    let line = text.lines().nth(init).unwrap();
    let args: Vec<String> = line.split_whitespace().skip_while(|w| *w != "init").map(str::to_string).collect();
    assert!(args.iter().any(|a| a == "mixtasy@FQDN"), "the init line has no mixtasy@FQDN placeholder: {line}");

    // Pasted as printed: refused, and nothing left that would make the right init fail.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(&args);
    let out = run(c, b"");
    assert!(!out.status.success(), "init accepted the placeholder address mixtasy@FQDN");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fully qualified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filled: Vec<String> = args.iter().map(|a| a.replace("FQDN", "mix.example.org")).collect();
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(&filled);
    ok(c, b"");
    let config = std::fs::read_to_string(home.join("mixtasyd.toml")).unwrap();
    assert!(config.contains("modes = \"middleman\""), "{config}");
    assert!(config.contains("address = \"mixtasy@mix.example.org\""), "{config}");
    args
}

#[test]
fn user_install_from_built_binaries_prints_middleman_fqdn_and_hookup_steps() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let from = built();
    let text = install(dir.path(), &["--user", "--from", from.to_str().unwrap(), "--prefix", prefix.to_str().unwrap()]);

    for b in ["mixtasyd", "mixtasy"] {
        let installed = prefix.join("bin").join(b);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(from.join(b)).unwrap(),
            "{b} is not the given binary"
        );
        assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
    }
    for page in ["man1/mixtasy.1", "man5/mixtasyd.toml.5", "man8/mixtasyd.8"] {
        assert!(prefix.join("share/man").join(page).is_file(), "{page} not installed");
    }
    let unit = std::fs::read_to_string(dir.path().join("home/.config/systemd/user/mixtasyd.service")).unwrap();
    assert!(
        unit.contains(&format!("{}/bin/mixtasyd", prefix.display())),
        "the unit does not run the installed binary:\n{unit}"
    );
    let unit = std::fs::read_to_string(dir.path().join("home/.config/systemd/user/mixtasy-pinger.service")).unwrap();
    assert!(
        unit.contains(&format!("{}/bin/mixtasy-pinger --round", prefix.display())),
        "the pinger unit does not run the installed binary:\n{unit}"
    );

    let unit = std::fs::read_to_string(dir.path().join("home/.config/systemd/user/mixtasy-nymd.service")).unwrap();
    assert!(
        unit.contains(&format!("{}/bin/mixtasy-nymd --run", prefix.display())),
        "the nym server's unit does not run the installed binary:\n{unit}"
    );
    assert!(prefix.join("share/man/man8/mixtasy-nymd.8").is_file(), "mixtasy-nymd(8) not installed");

    check_next_steps(&text, "scripts/postfix-hookup --user");
    let init = text.lines().nth(line_of(&text, " init --address")).unwrap();
    assert!(
        init.trim_start().starts_with(&format!("{}/bin/mixtasyd init", prefix.display())),
        "init line does not run the installed binary: {init}"
    );
}

#[test]
fn system_dry_run_prints_middleman_fqdn_and_hookup_steps_and_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let from = built();
    let text = install(
        dir.path(),
        &["--system", "--dry-run", "--from", from.to_str().unwrap(), "--prefix", prefix.to_str().unwrap()],
    );
    assert!(!prefix.exists(), "--dry-run created {}", prefix.display());
    assert!(
        text.contains(&format!(
            "+ install -m 0755 {0}/mixtasyd {0}/mixtasy {0}/mixtasy-pinger {0}/mixtasy-nymd {1}/bin/",
            from.display(),
            prefix.display()
        )),
        "{text}"
    );
    check_next_steps(&text, "scripts/postfix-hookup --root --domain FQDN");
}

#[test]
fn from_a_directory_without_binaries_is_refused_before_installing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let mut c = Command::new(script());
    c.args(["--user", "--from"]).arg(dir.path()).arg("--prefix").arg(&prefix).env("HOME", dir.path());
    let out = run(c, b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mixtasyd is missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!prefix.exists());
}
