//! OpenPGP packet framing in every length form, packet after packet, then the layer reader
//! on the same bytes (with an empty key ring it must stop at the session key).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for _ in 0..64 {
        match mixtasy::format::packet::read_packet(rest) {
            Ok(p) if p.rest.len() < rest.len() => rest = p.rest,
            _ => break,
        }
    }
    let ring = mixtasy::mixes::keys::KeyRing::from_cert(&empty_cert(), std::time::Duration::ZERO).unwrap();
    let _ = mixtasy::format::layer::open(data, &ring, std::time::SystemTime::UNIX_EPOCH);
});

fn empty_cert() -> sequoia_openpgp::Cert {
    use std::sync::OnceLock;
    static C: OnceLock<sequoia_openpgp::Cert> = OnceLock::new();
    C.get_or_init(|| sequoia_openpgp::cert::CertBuilder::new().generate().unwrap().0).clone()
}
