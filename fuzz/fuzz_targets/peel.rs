//! Whole-message peeling at mix1 of the GnuPG fixture, at a time inside its subkey's
//! validity: the seed corpus holds the fixture's wire message, so mutations reach the
//! decryption, the Verification check and the message parser.
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use mixtasy::node::peel::{peel, Node};
use sequoia_openpgp::parse::Parse;

const KEY: &[u8] = include_bytes!("../../tests/fixtures/gnupg-4hop/keys/mixtasy@mix1.test.sec.asc");
const NOW: u64 = 1_795_262_400;

fn node() -> &'static Node {
    static N: OnceLock<Node> = OnceLock::new();
    N.get_or_init(|| {
        let cert = sequoia_openpgp::Cert::from_bytes(KEY).unwrap();
        Node {
            address: mixtasy::mixes::address::MixAddress::for_fqdn("mix1.test").unwrap(),
            modes: mixtasy::mixes::modes::Modes::parse("middleman,exitpublic").unwrap(),
            ring: mixtasy::mixes::keys::KeyRing::from_cert(&cert, Duration::from_secs(3600)).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    if let Ok(out) = peel(data, node(), now, &mut rand::rng()) {
        if let mixtasy::node::peel::Peeled::Forward { mail, .. } = out.peeled {
            assert_eq!(mixtasy::format::armor::decode(&mail).unwrap().len(), mixtasy::format::sizes::OUTER);
        }
    }
});
