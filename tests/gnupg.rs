//! GnuPG as the independent peer (D4, crypto-engine.md): every layer we create must decrypt
//! with stock `gpg --ignore-mdc-error -d`, and what stock `gpg --rfc2440 -e` writes (from a
//! file and from a pipe) must open with our code and go through the real `mixtasyd peel`.
//!
//! Each test runs gpg in its own temporary home and kills that home's agent on the way out,
//! panic or not. A missing `gpg` is a failure, not a skip: the test script installs GnuPG.

use std::collections::HashMap;
use std::path::Path;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mixtasy::format::message::{self, Kind, Revealed};
use mixtasy::format::packet::{self, BodyLen};
use mixtasy::format::sizes::INNER;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::keys::KeyRing;
use mixtasy::{format::armor, format::layer, format::verification, format::wire};
use sequoia_openpgp::parse::Parse;

use crate::util::*;

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const MODES: &str = "middleman,exitpublic";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn at(net: &Net) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(net.now)
}

/// A node's key ring, built by sequoia from the secret key the node exports.
fn ring_from_export(secret: &[u8]) -> KeyRing {
    let cert = sequoia_openpgp::Cert::from_bytes(secret).expect("exported secret key parses");
    KeyRing::from_cert(&cert, Duration::from_secs(3600)).expect("key ring from exported secret key")
}

/// The armored body of a wire message: everything from the BEGIN line on.
fn armor_text(mail: &[u8]) -> &[u8] {
    let i = mail.windows(BEGIN.len()).position(|w| w == BEGIN).expect("wire message has an armored body");
    &mail[i..]
}

/// Asserts the exact D4 Verification line shape (not just what `check` accepts).
fn assert_verification_line(content: &[u8], what: &str) {
    assert!(
        content.len() >= verification::LINE_LEN + INNER,
        "{what}: revealed message of {} bytes is too short",
        content.len()
    );
    assert_eq!(&content[..14], b"Verification: ", "{what}: no Verification line first");
    assert!(
        content[14..54].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
        "{what}: Verification hash is not 40 lowercase hex digits: {:?}",
        String::from_utf8_lossy(&content[14..54])
    );
    assert_eq!(&content[54..56], b"\r\n", "{what}: Verification line does not end in CRLF");
}

/// The first SED/SEIPD header after the PKESKs of a binary OpenPGP message.
fn data_header(bin: &[u8]) -> packet::Header {
    let mut input = bin;
    loop {
        let (h, _) = packet::parse_header(input).expect("packet header");
        if h.tag != 1 {
            return h;
        }
        input = packet::read_packet(input).expect("PKESK packet").rest;
    }
}

/// What peeling one wire message all the way to its exit found.
struct Delivered {
    kind: Kind,
    payload: Vec<u8>,
    hops: usize,
}

/// Walks one wire message hop by hop. At every hop gpg decrypts the armored body with the
/// node's secret key, its output must be a revealed message with a good Verification line
/// and equal what `layer::open` gives; then the real `mixtasyd peel` makes the next hop.
fn walk_with_gpg(
    net: &Net,
    gpg: &Gpg,
    rings: &mut HashMap<String, KeyRing>,
    mut mail: Vec<u8>,
    label: &str,
) -> Delivered {
    let now = at(net);
    for hop in 1.. {
        assert!(hop <= 16, "{label}: more hops than any path has");
        let fqdn = wire_to(&mail);
        let what = format!("{label}, hop {hop} at {fqdn}");
        let ring = rings.entry(fqdn.clone()).or_insert_with(|| {
            let secret = net.export(&fqdn, true);
            gpg.import(&secret);
            ring_from_export(&secret)
        });

        // GnuPG decrypts the layer.
        let out = gpg.ok(&["--ignore-mdc-error", "-d"], armor_text(&mail));
        let plain = out.stdout;
        assert_verification_line(&plain, &what);
        let (hash, rest) = verification::check(&plain)
            .unwrap_or_else(|e| panic!("{what}: gpg's output fails the Verification check: {e}"));
        assert_eq!(hash, verification::digest(&plain[verification::LINE_LEN..verification::LINE_LEN + INNER]));

        // Our code opens the same body to the same bytes.
        let body = wire_body(&mail);
        assert_eq!(body.len(), mixtasy::format::sizes::OUTER, "{what}: wire body is not OUTER bytes");
        let opened = layer::open(&body, ring, now).unwrap_or_else(|e| panic!("{what}: layer::open failed: {e}"));
        assert_eq!(opened.content.len(), plain.len(), "{what}: gpg and layer::open give different lengths");
        assert!(opened.content == plain, "{what}: gpg and layer::open give different bytes");

        let revealed = message::parse(rest).unwrap_or_else(|e| panic!("{what}: revealed message does not parse: {e}"));
        let peeled = net.peel(&fqdn, &mail).unwrap_or_else(|e| panic!("{what}: mixtasyd peel dropped it: {e}"));
        match revealed {
            Revealed::Intermediate(i) => {
                assert_eq!(i.from.to_string(), format!("mixtasy@{fqdn}"), "{what}: From is not this mix");
                let next = peeled.0;
                assert_eq!(
                    format!("mixtasy@{}", wire_to(&next)),
                    i.to.to_string(),
                    "{what}: peel forwards to another mix than To:"
                );
                mail = next;
            }
            Revealed::Final(f) => {
                assert_eq!(
                    peeled.0, *f.payload,
                    "{what}: mixtasyd peel delivers other bytes than the final message's literal"
                );
                return Delivered { kind: f.kind, payload: peeled.0, hops: hop };
            }
        }
    }
    unreachable!()
}

fn four_node_net() -> Net {
    let mut net = Net::new(unix_now());
    for fqdn in ["mix1.test", "mix2.test", "mix3.test", "mix4.test"] {
        net.add_node(fqdn, MODES);
    }
    net.publish_all_to_client();
    net
}

#[test]
fn every_layer_we_create_decrypts_with_gpg() {
    let gpg = Gpg::new();
    let net = four_node_net();
    let mut rings = HashMap::new();

    // Singlepart.
    let original =
        b"To: bob@rcpt.test\r\nSubject: layers for gpg\r\n\r\nEvery layer must open with stock GnuPG.\r\n".to_vec();
    let wires = net.create(&original, &[]);
    assert_eq!(wires.len(), 1, "a small original is one wire message");
    let d = walk_with_gpg(&net, &gpg, &mut rings, wires[0].clone(), "singlepart");
    assert_eq!(d.kind, Kind::Singlepart);
    assert_eq!(d.hops, mixtasy::sender::path::MIN_HOPS);
    assert!(d.payload == original, "singlepart: exit delivered other bytes than the original");

    // Multipart: about 100 KB, every layer of every part.
    let mut big = b"To: bob@rcpt.test\r\nSubject: a big one for gpg\r\n\r\n".to_vec();
    let mut i = 0u32;
    while big.len() < 100 * 1024 {
        big.extend_from_slice(format!("line {i:06} of the multipart original, checked at every layer\r\n").as_bytes());
        i += 1;
    }
    let wires = net.create(&big, &[]);
    assert!(wires.len() >= 2, "a 100 KB original must be multipart, got {} wire message(s)", wires.len());
    let mut parts = Vec::new();
    for (n, w) in wires.into_iter().enumerate() {
        let d = walk_with_gpg(&net, &gpg, &mut rings, w, &format!("multipart wire message {}", n + 1));
        assert_eq!(d.hops, mixtasy::sender::path::MIN_HOPS);
        let Kind::Multipart { part, total } = d.kind else {
            panic!("wire message {} is not multipart: {:?}", n + 1, d.kind)
        };
        parts.push((part, total, d.payload));
    }
    let n = parts.len() as u32;
    parts.sort_by_key(|p| p.0);
    for (i, (part, total, _)) in parts.iter().enumerate() {
        assert_eq!((*part, *total), (i as u32 + 1, n), "parts are not 1..={n} of {n}");
    }
    let joined: Vec<u8> = parts.into_iter().flat_map(|p| p.2).collect();
    assert_eq!(joined.len(), big.len());
    assert!(joined == big, "multipart: the parts delivered do not make up the original");
}

#[test]
fn gpg_rfc2440_message_decrypts_with_our_code() {
    let gpg = Gpg::new();
    let mut net = Net::new(unix_now());
    net.add_node("mix1.test", MODES);
    let address = MixAddress::parse("mixtasy@mix1.test").unwrap();
    gpg.import(&net.export("mix1.test", false));
    let ring = ring_from_export(&net.export("mix1.test", true));
    let now = at(&net);

    let original =
        b"To: bob@rcpt.test\r\nSubject: from stock GnuPG\r\n\r\nEncrypted by gpg --rfc2440, opened by Mixtasy.\r\n";
    let mut rng = rand::rng();
    let revealed = message::build_final(&message::new_id(&mut rng), Kind::Singlepart, original, &mut rng);
    assert_eq!(revealed.len(), verification::LINE_LEN + INNER);

    let enc = ["--rfc2440", "--compress-level", "0", "--trust-model", "always", "-r", "mixtasy@mix1.test"];
    let work = tempfile::tempdir_in(net.dir.path()).unwrap();
    let input = work.path().join("in.bin");
    let output = work.path().join("out.gpg");
    std::fs::write(&input, &revealed).unwrap();

    // From a file: old-format packets with definite lengths.
    let mut args: Vec<&str> = enc.to_vec();
    args.extend(["-o", path_str(&output), "-e", path_str(&input)]);
    gpg.ok(&args, b"");
    let from_file = std::fs::read(&output).unwrap();

    // From a pipe: new-format packets with partial body lengths.
    let mut args: Vec<&str> = enc.to_vec();
    args.push("-e");
    let from_stdin = gpg.ok(&args, &revealed).stdout;

    // The two framings really differ, and both are tag 9 (no MDC) after the PKESK.
    let (hf, hs) = (data_header(&from_file), data_header(&from_stdin));
    assert_eq!(hf.tag, 9, "gpg --rfc2440 from a file did not write a SED packet: {hf:?}");
    assert_eq!(hs.tag, 9, "gpg --rfc2440 from stdin did not write a SED packet: {hs:?}");
    assert!(
        !hf.new_format && matches!(hf.len, BodyLen::Definite(_)),
        "gpg from a file: expected an old-format definite SED, got {hf:?}"
    );
    assert!(
        hs.new_format && matches!(hs.len, BodyLen::Partial(_)),
        "gpg from stdin: expected a new-format partial SED, got {hs:?}"
    );

    for (form, bin) in [("file", &from_file), ("stdin", &from_stdin)] {
        let opened =
            layer::open(bin, &ring, now).unwrap_or_else(|e| panic!("gpg output from {form}: layer::open failed: {e}"));
        assert_eq!(opened.content.len(), revealed.len(), "gpg output from {form}: wrong length");
        assert!(opened.content == revealed, "gpg output from {form}: content differs from the revealed message");
        let (_, rest) = verification::check(&opened.content).unwrap_or_else(|e| panic!("gpg output from {form}: {e}"));
        match message::parse(rest) {
            Ok(Revealed::Final(f)) => {
                assert_eq!(f.kind, Kind::Singlepart);
                assert_eq!(*f.payload, original[..], "gpg output from {form}: wrong payload");
            }
            other => panic!("gpg output from {form}: not a final mix message: {other:?}"),
        }

        // Armored as a D5 mail, through the real CLI: the exit delivers the original.
        assert_eq!(armor::decode(armor::encode(bin).as_bytes()).unwrap(), *bin);
        let mail = wire::build(None, &address, bin);
        let (delivered, _) = net
            .peel("mix1.test", &mail)
            .unwrap_or_else(|e| panic!("gpg output from {form}: mixtasyd peel dropped it: {e}"));
        assert_eq!(delivered, original, "gpg output from {form}: mixtasyd peel delivered other bytes");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
