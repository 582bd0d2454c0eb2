//! Issue 10, section 2: the recipient-domain exit rule (D7) holds only when the domain
//! vouches for the mix key in its OpenPGP Web Key Directory. A WKD is served over HTTPS on
//! loopback by the test, with a CA made for it (rcgen, rustls): nothing leaves the machine,
//! the client reaches it through `--wkd-resolve` and trusts it through `--wkd-ca-file`.
//! Without WKD, and with a WKD that holds another key, the recipient's domain mix is one
//! exit among others; with it, it is the exit every time. No lookup happens at send time.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

use crate::util::*;

/// An HTTPS server on 127.0.0.1 answering GETs from a map of `host + path?query` to bytes
/// (404 otherwise), with a certificate for `hosts` from a fresh test CA (`ca_file`, PEM);
/// or plain HTTP (`start_http`, as a pinger's output is served).
pub(crate) struct WkdServer {
    pub(crate) port: u16,
    ca_file: PathBuf,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WkdServer {
    fn start(dir: &std::path::Path, hosts: &[&str]) -> Self {
        Self::start_with(dir, hosts, false)
    }

    /// Plain HTTP on 127.0.0.1 (`http://127.0.0.1:PORT/…`, keyed `127.0.0.1:PORT/…`).
    pub(crate) fn start_http(dir: &std::path::Path) -> Self {
        Self::start_with(dir, &["localhost"], true)
    }

    fn start_with(dir: &std::path::Path, hosts: &[&str], plain: bool) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mixtasy test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let ca_file = dir.join("wkd-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Default::default();
        let (stop, requests) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (f, s, r) = (files.clone(), stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                let mut tls: Box<dyn ReadWrite> = if plain {
                    Box::new(stream)
                } else {
                    Box::new(rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), stream))
                };
                // One request per connection; a broken handshake is the client's business.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: ").or_else(|| l.strip_prefix("host: ")))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if target.is_empty() {
                    continue;
                }
                r.fetch_add(1, Ordering::SeqCst);
                let body = f.lock().unwrap().get(&format!("{host}{target}")).cloned();
                let response = match body {
                    Some(b) => [format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).into_bytes(), b].concat(),
                    None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = tls.write_all(&response);
                tls.close();
                let _ = tls.flush();
            }
        });
        WkdServer { port, ca_file, files, requests, stop, thread: Some(thread) }
    }

    /// Serves `cert` (binary, as a WKD does) at `url` (https://host/path?query).
    fn serve(&self, url: &str, armored: &[u8]) {
        let cert = openpgp::Cert::from_bytes(armored).unwrap();
        let key = url.strip_prefix("https://").unwrap().to_string();
        self.files.lock().unwrap().insert(key, cert.to_vec().unwrap());
    }

    /// Serves `body` as it is (a policy file; over plain HTTP, anything).
    pub(crate) fn serve_raw(&self, url: &str, body: &[u8]) {
        let key = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap();
        self.files.lock().unwrap().insert(key.to_string(), body.to_vec());
    }

    pub(crate) fn clear(&self) {
        self.files.lock().unwrap().clear();
    }
}

/// A connection of the server: TLS (closed with close_notify) or plain TCP.
trait ReadWrite: Read + Write {
    fn close(&mut self) {}
}

impl ReadWrite for std::net::TcpStream {}

impl ReadWrite for rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
    }
}

impl Drop for WkdServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const RCPT: &str = "rcpt.test";

/// The mix that delivers each of `n` messages to bob@rcpt.test, found by peeling every hop
/// with the real nodes.
fn exits(net: &Net, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut mail = net.create(format!("To: bob@{RCPT}\nSubject: {i}\n\nhello\n").as_bytes(), &[]).remove(0);
            loop {
                let at = wire_to(&mail);
                let (out, _) = net.peel(&at, &mail).unwrap_or_else(|e| panic!("dropped at {at}: {e}"));
                if !out.windows(27).any(|w| w == b"-----BEGIN PGP MESSAGE-----") {
                    return at;
                }
                mail = out;
            }
        })
        .collect()
}

#[test]
fn the_recipient_domain_mix_is_the_exit_only_when_its_wkd_vouches_for_its_key() {
    let mut net = Net::new(1_900_000_000);
    for (f, modes) in [
        ("a.test", "middleman,exitpublic"),
        ("b.test", "middleman"),
        ("c.test", "middleman"),
        (RCPT, "middleman,exitpublic"),
    ] {
        net.add_node(f, modes);
    }
    net.publish_all_to_client();
    let server = WkdServer::start(net.dir.path(), &[&format!("openpgpkey.{RCPT}"), RCPT]);
    let addr = mixtasy::mixes::address::MixAddress::for_fqdn(RCPT).unwrap();
    let [advanced, direct] = mixtasy::mixes::wkd::urls(&addr);
    let dead = free_port();
    let ca = server.ca_file.to_str().unwrap().to_string();
    let resolve_advanced = format!("openpgpkey.{RCPT}:443:127.0.0.1:{}", server.port);
    let resolve_dead_advanced = format!("openpgpkey.{RCPT}:443:127.0.0.1:{dead}");
    let resolve_direct = format!("{RCPT}:443:127.0.0.1:{}", server.port);
    let wkd_args = |advanced: &str| {
        vec![
            "--wkd-resolve".to_string(),
            advanced.to_string(),
            "--wkd-resolve".into(),
            resolve_direct.clone(),
            "--wkd-ca-file".into(),
            ca.clone(),
        ]
    };

    // Without the domain's word the mix of rcpt.test is one exit among the exitpublic ones.
    let seen: BTreeSet<String> = exits(&net, 24).into_iter().collect();
    assert_eq!(seen, [String::from("a.test"), RCPT.to_string()].into(), "random exitpublic exits");

    // The WKD holds another key for mixtasy@rcpt.test (the advanced method answers): no vouching.
    let impostor = impostor_key(&net);
    server.serve(&advanced, &impostor);
    let impostor_fpr = openpgp::Cert::from_bytes(&impostor).unwrap().fingerprint().to_hex();
    let mut c = net.client_cmd();
    c.args(["directory", "verify-wkd"]).args(wkd_args(&resolve_advanced));
    let out = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(
        out.contains(&format!("wkd mixtasy@{RCPT}: the domain holds another key ({impostor_fpr}): not vouched")),
        "{out}"
    );
    assert!(
        out.contains("wkd mixtasy@a.test: lookup failed, record unchanged"),
        "a.test has no WKD (no name resolves): {out}"
    );
    assert!(!net.client_home().join(format!("directory/mixtasy@{RCPT}.wkd")).exists());
    let seen: BTreeSet<String> = exits(&net, 24).into_iter().collect();
    assert_eq!(seen.len(), 2, "still random: {seen:?}");

    // The real key, by the direct method (no advanced host answers), learnt on import. Being
    // in the WKD is not enough (a provider may publish every user's key there): the domain's
    // policy file must opt the key in (review of issue 10, attack 6).
    server.clear();
    let real = net.export(RCPT, false);
    server.serve(&direct, &real);
    let real_fpr = openpgp::Cert::from_bytes(&real).unwrap().fingerprint().to_hex();
    let mut c = net.client_cmd();
    c.args(["directory", "import", "--wkd"]).args(wkd_args(&resolve_dead_advanced));
    let out = String::from_utf8(ok(c, &real).stdout).unwrap();
    assert!(out.contains(&format!("wkd mixtasy@{RCPT}: the domain holds key {real_fpr} but its WKD policy file has no `mixtasy-exit: {real_fpr}`: not vouched")), "{out}");
    assert!(!net.client_home().join(format!("directory/mixtasy@{RCPT}.wkd")).exists());
    let policy_url = mixtasy::mixes::wkd::policy_urls(&addr)[1].clone();
    server.serve_raw(&policy_url, format!("protocol-version: 15\nmixtasy-exit: {impostor_fpr}\n").as_bytes());
    let mut c = net.client_cmd();
    c.args(["directory", "verify-wkd"]).args(wkd_args(&resolve_dead_advanced));
    let out = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(
        out.contains("its WKD policy file has no `mixtasy-exit"),
        "another key opted in is no word for this one: {out}"
    );
    server.serve_raw(&policy_url, format!("protocol-version: 15\nmixtasy-exit: {real_fpr}\n").as_bytes());
    let mut c = net.client_cmd();
    c.args(["directory", "verify-wkd"]).args(wkd_args(&resolve_dead_advanced));
    let out = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(out.contains(&format!("wkd mixtasy@{RCPT}: the domain vouches for key {real_fpr}")), "{out}");
    let record = std::fs::read_to_string(net.client_home().join(format!("directory/mixtasy@{RCPT}.wkd"))).unwrap();
    assert_eq!(record.trim(), format!("{real_fpr} {}", net.now), "the record names the exact fingerprint and when");
    assert_eq!(mixtasy::node::home::loose_permissions(&net.client_home()).unwrap(), Vec::<PathBuf>::new());
    let mut c = net.client_cmd();
    c.args(["directory", "list"]);
    let list = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(
        list.lines().any(|l| l.starts_with(&format!("mixtasy@{RCPT}  ")) && l.ends_with("  domain-vouched (WKD)")),
        "{list}"
    );
    let before = server.requests.load(Ordering::SeqCst);
    assert!(exits(&net, 8).iter().all(|e| e == RCPT), "the vouched domain mix is the exit");
    assert_eq!(server.requests.load(Ordering::SeqCst), before, "no WKD lookup at send time");

    // A WKD that comes to hold another key withdraws the word at the next check.
    server.clear();
    server.serve(&direct, &impostor);
    let mut c = net.client_cmd();
    c.args(["directory", "verify-wkd"]).args(wkd_args(&resolve_dead_advanced));
    ok(c, b"");
    let seen: BTreeSet<String> = exits(&net, 24).into_iter().collect();
    assert_eq!(seen.len(), 2, "random again: {seen:?}");

    // A WKD answer over TLS the client does not trust (no --wkd-ca-file: the built-in web
    // roots) counts for nothing, as a man in the middle's would.
    server.clear();
    server.serve(&direct, &real);
    let mut c = net.client_cmd();
    c.args(["directory", "verify-wkd", "--wkd-resolve", &resolve_dead_advanced, "--wkd-resolve", &resolve_direct]);
    let out = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(out.contains(&format!("wkd mixtasy@{RCPT}: lookup failed, record unchanged")), "{out}");
    assert!(!net.client_home().join(format!("directory/mixtasy@{RCPT}.wkd")).exists());
}

/// Review of issue 10, attack 5: an attacker uploads an impostor for an honest mix's
/// address, so a new sender's directory meets both with no history: a conflict. `create`
/// then refuses (paths would be built from whatever is left, perhaps only the attacker's
/// mixes) unless told `--despite-conflicts`; `directory import --wkd` settles the conflict
/// by the mix's own domain, which holds the real key.
#[test]
fn a_conflict_stops_create_until_the_mix_domain_settles_it() {
    let mut net = Net::new(1_900_000_000);
    for (f, modes) in [
        ("a.test", "middleman,exitpublic"),
        ("b.test", "middleman"),
        ("c.test", "middleman"),
        ("d.test", "middleman"),
        (RCPT, "middleman,exitpublic"),
    ] {
        net.add_node(f, modes);
    }
    let server = WkdServer::start(net.dir.path(), &[&format!("openpgpkey.{RCPT}"), RCPT]);
    let addr = mixtasy::mixes::address::MixAddress::for_fqdn(RCPT).unwrap();
    let [_, direct] = mixtasy::mixes::wkd::urls(&addr);
    let dead = free_port();
    let ca = server.ca_file.to_str().unwrap().to_string();
    let wkd_args = [
        "--wkd".to_string(),
        "--wkd-resolve".into(),
        format!("openpgpkey.{RCPT}:443:127.0.0.1:{dead}"),
        "--wkd-resolve".into(),
        format!("{RCPT}:443:127.0.0.1:{}", server.port),
        "--wkd-ca-file".into(),
        ca,
    ];
    let impostor = impostor_key(&net);
    let real = net.export(RCPT, false);
    let real_fpr = openpgp::Cert::from_bytes(&real).unwrap().fingerprint().to_hex();
    let mut all = impostor.clone();
    for f in ["a.test", "b.test", "c.test", "d.test", RCPT] {
        all.extend(net.export(f, false));
    }
    // What a keyserver holding the impostor answers a new sender (no WKD asked).
    let mut c = net.client_cmd();
    c.args(["directory", "import"]);
    let out = String::from_utf8(ok(c, &all).stdout).unwrap();
    assert!(out.contains(&format!("conflict mixtasy@{RCPT}: 2 unrelated keys")), "{out}");

    let original = format!("To: bob@{RCPT}\n\nhello\n");
    let mut c = net.client_cmd();
    c.args(["create", "--out"]).arg(net.dir.path().join("refused"));
    let out = run(c, original.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("unresolved key conflicts (mixtasy@{RCPT})")) && err.contains("--despite-conflicts"),
        "{err}"
    );
    assert!(!net.dir.path().join("refused").exists(), "nothing written");
    let mut c = net.client_cmd();
    c.args(["send", "--sendmail", "/bin/false"]);
    let out = run(c, original.as_bytes());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unresolved key conflicts"),
        "send refuses before any sendmail"
    );
    // The user's explicit word: built, with a warning, from the mixes not in conflict.
    let mut c = net.client_cmd();
    c.args(["create", "--despite-conflicts", "--out"]).arg(net.dir.path().join("despite"));
    let out = ok(c, original.as_bytes());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("warning: building paths without the mixes in conflict: mixtasy@{RCPT}")));

    // A WKD that holds neither key settles nothing; the mix's domain holding the real one does.
    let mut c = net.client_cmd();
    c.args(["directory", "import"]).args(&wkd_args);
    let out = String::from_utf8(ok(c, &impostor).stdout).unwrap();
    assert!(
        out.contains(&format!(
            "wkd mixtasy@{RCPT}: the domain vouches for none of the keys in conflict: conflict stays"
        )),
        "{out}"
    );
    server.serve(&direct, &real);
    server.serve_raw(&mixtasy::mixes::wkd::policy_urls(&addr)[1], format!("mixtasy-exit: {real_fpr}\n").as_bytes());
    let mut c = net.client_cmd();
    c.args(["directory", "import"]).args(&wkd_args);
    let out = String::from_utf8(ok(c, &impostor).stdout).unwrap();
    assert!(
        out.contains(&format!("wkd mixtasy@{RCPT}: the domain vouches for key {real_fpr}: conflict settled")),
        "{out}"
    );
    assert!(
        out.contains(&format!("wkd mixtasy@{RCPT}: the domain vouches for key {real_fpr}\n")),
        "and it is vouched as exit: {out}"
    );
    let mut c = net.client_cmd();
    c.args(["directory", "list"]);
    let list = String::from_utf8(ok(c, b"").stdout).unwrap();
    assert!(!list.contains("conflict"), "{list}");
    assert!(exits(&net, 4).iter().all(|e| e == RCPT), "the real, vouched key is used");
}

/// Another mix key for `mixtasy@RCPT`, made by a second home: the impostor's.
fn impostor_key(net: &Net) -> Vec<u8> {
    let impostor_home = net.dir.path().join("impostor");
    let mut c = mixtasyd();
    c.arg("--home").arg(&impostor_home).args([
        "--now",
        &net.now.to_string(),
        "init",
        "--address",
        &format!("mixtasy@{RCPT}"),
        "--modes",
        "middleman,exitpublic",
    ]);
    ok(c, b"");
    let mut c = mixtasyd();
    c.arg("--home").arg(&impostor_home).args(["--now", &net.now.to_string(), "key", "export"]);
    ok(c, b"").stdout
}
