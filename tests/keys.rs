//! Key rotation and forward secrecy through the real binary, with the clock moved forward
//! (`--now`), never by sleeping: a simulated week of rounds.

use std::collections::HashMap;
use std::path::Path;

use openpgp::packet::key::SecretKeyMaterial;
use openpgp::parse::Parse;
use sequoia_openpgp as openpgp;

use crate::util::*;

/// The secret scalar bytes of every encryption subkey that still has one, by fingerprint.
fn secret_scalars(armored_tsk: &[u8]) -> HashMap<String, Vec<u8>> {
    let cert = openpgp::Cert::from_bytes(armored_tsk).unwrap();
    let mut out = HashMap::new();
    for ka in cert.keys().subkeys().secret() {
        if let SecretKeyMaterial::Unencrypted(u) = ka.key().secret() {
            let bytes = u.map(|m| match m {
                openpgp::crypto::mpi::SecretKeyMaterial::ECDH { scalar } => scalar.value().to_vec(),
                _ => Vec::new(),
            });
            assert_eq!(bytes.len(), 32, "cv25519 scalar");
            out.insert(ka.key().fingerprint().to_hex(), bytes);
        }
    }
    out
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// Runs the client at time `t` (seconds since the epoch).
fn client_at(net: &Net, t: u64) -> std::process::Command {
    let mut c = mixtasy();
    c.arg("--home").arg(net.client_home()).args(["--now", &t.to_string()]);
    c
}

#[test]
fn a_simulated_week_of_rounds() {
    let mut net = Net::new(1_900_000_000);
    for f in ["a.test", "b.test", "c.test", "d.test"] {
        net.add_lab_node(f, "middleman,exitpublic");
    }
    let step = 6 * 3600u64;
    let validity = 2 * 86400u64;
    let mut seen: HashMap<String, (Vec<u8>, u64)> = HashMap::new(); // fpr → (scalar, expiry)
                                                                    // (time of a step, messages a.test had accepted by then): replay entries come from these.
    let mut accepted: Vec<(u64, i64)> = Vec::new();
    let mut early_message = None;
    for i in 0..=28u64 {
        let t = net.now + i * step;
        // Every node rotates in its round; the sender learns the current keys.
        for f in ["a.test", "b.test", "c.test", "d.test"] {
            net.round_later(f, i * step);
        }
        let mut keys = Vec::new();
        for f in ["a.test", "b.test", "c.test", "d.test"] {
            let mut c = mixtasyd();
            c.arg("--home").arg(net.home(f)).args(["--now", &t.to_string(), "key", "export"]);
            keys.extend(ok(c, b"").stdout);
        }
        let mut c = client_at(&net, t);
        c.args(["directory", "import"]);
        ok(c, &keys);
        // A message to a.test now (first hop a.test).
        let out = net.dir.path().join(format!("out{i}"));
        let mut c = client_at(&net, t);
        c.args(["create", "--first-mix", "a.test", "--out"]).arg(&out);
        ok(c, format!("To: bob@rcpt.test\n\nmessage {i}\n").as_bytes());
        let mail = std::fs::read(out.join("0001.eml")).unwrap();
        if i == 0 {
            early_message = Some(mail.clone());
        }
        net.inject(&mail);
        let mut c = mixtasyd();
        c.arg("--home").arg(net.home("a.test")).args(["--now", &t.to_string(), "--round"]);
        ok(c, b"");

        // One or two subkeys with a secret valid now, never zero.
        let st = net.status("a.test");
        let mut c = mixtasyd();
        c.arg("--home").arg(net.home("a.test")).args(["--now", &t.to_string(), "key", "export", "--secret"]);
        let scalars = secret_scalars(&ok(c, b"").stdout);
        let cert = openpgp::Cert::from_bytes(&net.export("a.test", false)).unwrap();
        let valid = mixtasy::mixes::keys::encryption_subkeys(&cert)
            .into_iter()
            .filter(|(k, v)| {
                scalars.contains_key(&k.fingerprint().to_hex())
                    && v.valid_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t), std::time::Duration::ZERO)
            })
            .count();
        assert!((1..=2).contains(&valid), "{valid} valid subkeys at step {i}");
        for (k, v) in mixtasy::mixes::keys::encryption_subkeys(&cert) {
            let exp = v.expires.unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            if let Some(s) = scalars.get(&k.fingerprint().to_hex()) {
                seen.insert(k.fingerprint().to_hex(), (s.clone(), exp));
            }
        }
        // Every secret of a subkey expired by now is gone from every file of the home.
        for (fpr, (scalar, exp)) in &seen {
            if *exp <= t {
                assert!(!scalars.contains_key(fpr), "expired secret still exported at step {i}");
                let hits = files_containing(&net.home("a.test"), scalar);
                assert!(hits.is_empty(), "secret of expired subkey {fpr} found at step {i} in {hits:?}");
            }
        }
        // The replay cache holds only hashes of messages whose subkey is still valid: at most
        // those accepted in the last subkey lifetime (a subkey lives `validity` at most).
        let total = st.get("intake.forwarded") + st.get("intake.final") + st.get("intake.part");
        let before = accepted.iter().rev().find(|(ts, _)| ts + validity <= t).map_or(0, |(_, n)| *n);
        accepted.push((t, total));
        let recent = total - before;
        assert!(st.get("replay_entries") <= recent, "replay cache {} > {recent} at step {i}", st.get("replay_entries"));
    }
    assert!(
        seen.values().filter(|(_, e)| *e <= net.now + 28 * step).count() >= 4,
        "several subkeys expired during the week"
    );
    // The first message, replayed now: its subkey is long gone.
    net.inject(&early_message.unwrap());
    net.round_later("a.test", 28 * step + 60);
    let st = net.status("a.test");
    assert_eq!(st.get("drop.expired-key"), 1);
    assert!(st.get("key.destroyed") >= 5 && st.get("key.added") >= 6, "{}", st.0);
}

#[test]
fn an_old_backup_restores_and_its_first_round_adds_a_subkey() {
    let mut net = Net::new(1_800_000_000);
    net.add_node("a.test", "middleman,exitpublic");
    let backup = net.dir.path().join("backup.asc");
    std::fs::write(&backup, net.export("a.test", true)).unwrap();
    // Five days later every subkey of the backup has expired (2-day validity).
    let later = net.now + 5 * 86400;
    let home = net.dir.path().join("restored");
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(["--now", &later.to_string(), "init", "--key"]).arg(&backup);
    ok(c, b"");
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(["--now", &later.to_string(), "--round"]);
    ok(c, b"");
    let mut c = mixtasyd();
    c.arg("--home").arg(&home).args(["--now", &later.to_string(), "status", "--json"]);
    let st = Status(String::from_utf8(ok(c, b"").stdout).unwrap());
    assert_eq!((st.get("key.added"), st.get("key.destroyed")), (1, 1), "{}", st.0);
    // A public key is no backup.
    let public = net.dir.path().join("public.asc");
    std::fs::write(&public, net.export("a.test", false)).unwrap();
    let mut c = mixtasyd();
    c.arg("--home").arg(net.dir.path().join("other")).args(["--now", &later.to_string(), "init", "--key"]).arg(&public);
    let out = run(c, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no secret primary key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
