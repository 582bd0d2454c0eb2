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
    Some(
        lines[at + 2..]
            .iter()
            .take_while(|l| !(l.starts_with(".TP") || l.starts_with(".SH") || l.starts_with(".SS")))
            .copied()
            .collect(),
    )
}

#[test]
fn every_setting_is_documented_with_its_default_in_order() {
    let page = unescape(&read("man/mixtasyd.toml.5"));
    let mut last = 0;
    for s in SETTINGS {
        let body = entry(&page, s.name).unwrap_or_else(|| {
            panic!(
                "man/mixtasyd.toml.5 has no entry for the setting `{}`: add `.TP` then `.B {}` under SETTINGS",
                s.name, s.name
            )
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
                        && (w[1] == format!(".B {d}")
                            || w[1]
                                .strip_prefix(".BR ")
                                .and_then(|r| r.strip_prefix(d))
                                .is_some_and(|r| r.starts_with(' ')))
                });
                assert!(shown, "man/mixtasyd.toml.5: the entry for `{}` must show `Default:` and then `.BR {d} .` (its default in mixtasyd.toml)", s.name);
            }
        }
        let pos = page.find(&format!(".TP\n.B {}\n", s.name)).unwrap();
        assert!(pos > last, "man/mixtasyd.toml.5: `{}` is out of order; keep the order of config::SETTINGS", s.name);
        last = pos;
    }
}

/// The string literals of a source file that look like counter names: `word.word`, lower
/// case letters and hyphens (the pinger and the nym server name their counters in place;
/// mixtasyd's are `counters::ALL`).
fn counter_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut in_str = false;
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (in_str, c) {
                (true, '\\') => {
                    cur.push(c);
                    cur.extend(chars.next());
                }
                (true, '"') => {
                    in_str = false;
                    let looks = cur.split_once('.').is_some_and(|(a, b)| {
                        let part = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                        part(a) && part(b)
                    });
                    if looks && !out.contains(&cur) {
                        out.push(cur.clone());
                    }
                    cur.clear();
                }
                (true, c) => cur.push(c),
                (false, '"') => in_str = true,
                (false, _) => {}
            }
        }
    }
    out
}

/// Every counter a node can raise is in `counters::ALL` (a debug build refuses to raise
/// one that is not), so the manual is checked against that list.
#[test]
fn every_counter_is_documented() {
    let page = unescape(&read("man/mixtasyd.8"));
    let missing: Vec<&str> =
        counters::ALL.iter().map(|c| c.name).filter(|n| !page.contains(&format!("\n.B {n}\n"))).collect();
    assert!(
        missing.is_empty(),
        "man/mixtasyd.8 does not document these counters (as `.TP` then `.B NAME` under COUNTERS): {missing:?}"
    );
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
        assert!(
            out.status.success() && said.is_empty(),
            "groff -man -ww -z {} ({}):\n{said}",
            page.display(),
            out.status
        );
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
    for (section, page) in [
        ("man1", "mixtasy.1"),
        ("man5", "mixtasyd.toml.5"),
        ("man8", "mixtasyd.8"),
        ("man8", "mixtasy-pinger.8"),
        ("man8", "mixtasy-nymd.8"),
    ] {
        std::fs::create_dir_all(t.path().join("man").join(section)).unwrap();
        std::fs::copy(root.join("man").join(page), t.path().join("man").join(section).join(page)).unwrap();
    }
    let runtime = t.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    for (program, binary) in [
        ("mixtasyd", env!("CARGO_BIN_EXE_mixtasyd")),
        ("mixtasy-pinger", env!("CARGO_BIN_EXE_mixtasy-pinger")),
        ("mixtasy-nymd", env!("CARGO_BIN_EXE_mixtasy-nymd")),
    ] {
        for (flavour, bin_dir) in [("system", "/usr/local/bin/"), ("user", "%h/.local/bin/")] {
            let placeholder = format!("{bin_dir}{program} ");
            let dir = t.path().join(program).join(flavour);
            std::fs::create_dir_all(&dir).unwrap();
            for unit in [format!("{program}.service"), format!("{program}.timer")] {
                let text = std::fs::read_to_string(root.join("units").join(flavour).join(&unit)).unwrap();
                if unit.ends_with(".service") {
                    assert!(text.contains(&placeholder), "{flavour}/{unit} runs {placeholder}");
                }
                std::fs::write(dir.join(&unit), text.replace(&placeholder, &format!("{binary} "))).unwrap();
            }
            let mut c = Command::new("systemd-analyze");
            if flavour == "user" {
                c.arg("--user");
            }
            c.arg("verify").arg(dir.join(format!("{program}.service"))).arg(dir.join(format!("{program}.timer")));
            c.env("MANPATH", t.path().join("man")).env("XDG_RUNTIME_DIR", &runtime);
            let o = c.output().unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
                "{flavour} {program} units: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// The pinger's settings with their defaults and the counters its round raises, in
/// mixtasy-pinger(8).
#[test]
fn the_pinger_settings_and_counters_are_documented() {
    let page = unescape(&read("man/mixtasy-pinger.8"));
    for s in mixtasy::pinger::config::SETTINGS {
        let body = entry(&page, s.name)
            .unwrap_or_else(|| panic!("man/mixtasy-pinger.8 has no entry for the setting `{}`", s.name));
        match s.default {
            None => assert!(body.iter().any(|l| l.contains("Required")), "`{}` must say Required", s.name),
            Some(d) => assert!(
                body.windows(2).any(|w| w[0].trim_end().ends_with("Default:") && w[1] == format!(".BR {d} .")),
                "`{}` must show `Default:` then `.BR {d} .`",
                s.name
            ),
        }
    }
    // `pubring.asc` is a file name the round writes, not a counter.
    let names: Vec<String> =
        counter_literals(&read("src/pinger/round.rs")).into_iter().filter(|n| n != "pubring.asc").collect();
    assert!(names.len() >= 8, "found only {names:?} in src/pinger/round.rs: is the scan broken?");
    let missing: Vec<&String> = names.iter().filter(|n| !page.contains(&format!("\n.B {n}\n"))).collect();
    assert!(missing.is_empty(), "man/mixtasy-pinger.8 does not document these counters: {missing:?}");
}

/// mixtasy-nymd(8) documents every counter the nym server raises and every setting of its
/// default file.
#[test]
fn every_nymd_counter_and_setting_is_documented() {
    let page = unescape(&read("man/mixtasy-nymd.8"));
    let mut names = Vec::new();
    for file in ["src/nymserv/run.rs", "src/nymserv/deliver.rs", "src/nymserv/pgp.rs", "src/nymserv/blocking.rs"] {
        // The code only: unit tests hold domain names that look like counters.
        names.extend(counter_literals(read(file).split("#[cfg(test)]").next().unwrap()));
    }
    assert!(names.len() >= 30, "found only {} counter names in src/nymserv: is the scan broken?", names.len());
    let missing: Vec<&String> = names.iter().filter(|n| !page.contains(&format!("\n.B {n}\n"))).collect();
    assert!(missing.is_empty(), "man/mixtasy-nymd.8 does not document these counters: {missing:?}");
    for s in mixtasy::nymserv::config::SETTINGS {
        let body = entry(&page, s.name)
            .unwrap_or_else(|| panic!("man/mixtasy-nymd.8 has no entry for the setting `{}`", s.name));
        // The page shows a default as it reads, unquoted; an empty list as "none".
        let shown = match s.default {
            None => body.iter().any(|l| l.contains("Required")),
            Some("[]") => body.iter().any(|l| l.contains("Default: none")),
            Some(d) => body.contains(&format!(".BR {} .", d.trim_matches('"')).as_str()),
        };
        assert!(shown, "man/mixtasy-nymd.8 does not show the default of `{}`: {:?}", s.name, s.default);
    }
}
