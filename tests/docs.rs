//! The manual pages against the code: every setting of `config::SETTINGS` with its default
//! in mixtasyd.toml(5), every counter of `counters::ALL` in mixtasyd(8), and no groff
//! warnings in any page.

use std::path::{Path, PathBuf};
use std::process::Command;

use mixtasy::node::config::SETTINGS;
use mixtasy::node::counters;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Roff source with the escapes these pages use turned back into the characters they
/// print, so names and defaults can be compared with the code's text.
fn unescape(roff: &str) -> String {
    roff.replace("\\(dq", "\"").replace("\\-", "-").replace("\\%", "").replace("\\&", "").replace("\\e", "\\")
}

/// The body of the `.TP` entry tagged `.B name`: the lines after the tag up to the next
/// `.TP`, `.SH` or `.SS`. None if there is no such entry.
fn entry<'a>(page: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = page.lines().collect();
    let tag = format!(".B {name}");
    let at = lines.windows(2).position(|w| w[0] == ".TP" && w[1] == tag)?;
    Some(lines[at + 2..].iter().take_while(|l| !(l.starts_with(".TP") || l.starts_with(".SH") || l.starts_with(".SS"))).copied().collect())
}

#[test]
fn every_setting_is_documented_with_its_default_in_order() {
    let page = unescape(&read("man/mixtasyd.toml.5"));
    let mut last = 0;
    for s in SETTINGS {
        let body = entry(&page, s.name).unwrap_or_else(|| {
            panic!("man/mixtasyd.toml.5 has no entry for the setting `{}`: add `.TP` then `.B {}` under SETTINGS", s.name, s.name)
        });
        match s.default {
            None => assert!(
                body.iter().any(|l| l.contains("Required")),
                "man/mixtasyd.toml.5: `{}` has no default; its entry must say \"Required\"",
                s.name
            ),
            Some(d) => {
                // `Default:` then the value bold: `.BR value .` (or `.B value`).
                let shown = body.windows(2).any(|w| {
                    w[0].trim_end().ends_with("Default:")
                        && (w[1] == format!(".B {d}") || w[1].strip_prefix(".BR ").and_then(|r| r.strip_prefix(d)).is_some_and(|r| r.starts_with(' ')))
                });
                assert!(shown, "man/mixtasyd.toml.5: the entry for `{}` must show `Default:` and then `.BR {d} .` (its default in mixtasyd.toml)", s.name);
            }
        }
        let pos = page.find(&format!(".TP\n.B {}\n", s.name)).unwrap();
        assert!(pos > last, "man/mixtasyd.toml.5: `{}` is out of order; keep the order of config::SETTINGS", s.name);
        last = pos;
    }
}

/// Every counter a node can raise is in `counters::ALL` (a debug build refuses to raise
/// one that is not), so the manual is checked against that list.
#[test]
fn every_counter_is_documented() {
    let page = unescape(&read("man/mixtasyd.8"));
    let missing: Vec<&str> = counters::ALL.iter().map(|c| c.name).filter(|n| !page.contains(&format!("\n.B {n}\n"))).collect();
    assert!(missing.is_empty(), "man/mixtasyd.8 does not document these counters (as `.TP` then `.B NAME` under COUNTERS): {missing:?}");
}

#[test]
fn man_pages_have_no_groff_warnings() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("man")).unwrap().map(|e| e.unwrap().path()).collect();
    pages.sort();
    assert!(pages.len() >= 3, "expected the man pages in man/, found {pages:?}");
    for page in pages {
        let out = match Command::new("groff").args(["-man", "-ww", "-z"]).arg(&page).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("groff is not installed: install groff (Debian package groff-base; scripts/install-deps --test) to check the man pages")
            }
            Err(e) => panic!("running groff: {e}"),
        };
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.is_empty(), "groff -man -ww -z {} ({}):\n{said}", page.display(), out.status);
    }
}

/// `systemd-analyze verify` accepts both flavours of the units (nothing is started). The
/// binary path is pointed at the built binary and MANPATH at our pages, as an install would.
#[test]
fn systemd_units_verify() {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: run scripts/install-deps --test"
    );
    let t = tempfile::tempdir().unwrap();
    for (section, page) in [("man1", "mixtasy.1"), ("man5", "mixtasyd.toml.5"), ("man8", "mixtasyd.8")] {
        std::fs::create_dir_all(t.path().join("man").join(section)).unwrap();
        std::fs::copy(root.join("man").join(page), t.path().join("man").join(section).join(page)).unwrap();
    }
    let runtime = t.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    for (flavour, placeholder) in [("system", "/usr/local/bin/mixtasyd"), ("user", "%h/.local/bin/mixtasyd")] {
        let dir = t.path().join(flavour);
        std::fs::create_dir(&dir).unwrap();
        for unit in ["mixtasyd.service", "mixtasyd.timer"] {
            let text = std::fs::read_to_string(root.join("units").join(flavour).join(unit)).unwrap();
            if unit.ends_with(".service") {
                assert!(text.contains(placeholder), "{flavour}/{unit} runs {placeholder}");
            }
            std::fs::write(dir.join(unit), text.replace(placeholder, env!("CARGO_BIN_EXE_mixtasyd"))).unwrap();
        }
        let mut c = Command::new("systemd-analyze");
        if flavour == "user" {
            c.arg("--user");
        }
        c.arg("verify").arg(dir.join("mixtasyd.service")).arg(dir.join("mixtasyd.timer"));
        c.env("MANPATH", t.path().join("man")).env("XDG_RUNTIME_DIR", &runtime);
        let o = c.output().unwrap();
        assert!(o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(), "{flavour} units: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
}
