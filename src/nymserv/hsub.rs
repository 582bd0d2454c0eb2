//! The hashed subject (hSub) of inbound mail: how a nym's owner picks its articles out of a
//! shared group without anyone else telling them apart. hex(iv ‖ SHA-256(iv ‖ passphrase))
//! cut to 48 hex digits, with 8 random bytes of IV; a nym without a passphrase gets a
//! random value of the same form, so every article looks alike (crooks/nymserv).

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::format::message::hex;

/// Hex digits of an hSub.
pub const LEN: usize = 48;
const IV: usize = 8;

fn digest(iv: &[u8], passphrase: &str) -> String {
    let mut h = Sha256::new();
    h.update(iv);
    h.update(passphrase.as_bytes());
    let mut out = hex(iv);
    out.push_str(&hex(&h.finalize()));
    out.truncate(LEN);
    out
}

/// A new hSub for `passphrase`, or a random fake for none.
pub fn make(passphrase: Option<&str>, rng: &mut impl RngCore) -> String {
    let mut iv = [0u8; IV];
    rng.fill_bytes(&mut iv);
    match passphrase.filter(|p| !p.is_empty()) {
        Some(p) => digest(&iv, p),
        None => {
            let mut fake = [0u8; LEN / 2];
            rng.fill_bytes(&mut fake);
            hex(&fake)
        }
    }
}

/// Whether `subject` is an hSub made with `passphrase`.
pub fn matches(subject: &str, passphrase: &str) -> bool {
    let s = subject.trim().to_ascii_lowercase();
    if s.len() != LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let iv: Vec<u8> = (0..IV).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
    digest(&iv, passphrase) == s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsub_matches_its_passphrase_only_and_fakes_look_alike() {
        let mut rng = rand::rng();
        let a = make(Some("secret"), &mut rng);
        let b = make(Some("secret"), &mut rng);
        assert_eq!(a.len(), LEN);
        assert_ne!(a, b, "a fresh IV each time: two articles of one nym differ");
        assert!(matches(&a, "secret") && matches(&b.to_uppercase(), "secret"));
        assert!(!matches(&a, "other"));
        let fake = make(None, &mut rng);
        assert_eq!(fake.len(), LEN);
        assert!(fake.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!matches(&fake, "secret"));
        // Independent of this code: the definition computed by hand with sha2.
        let iv = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut h = Sha256::new();
        h.update(iv);
        h.update(b"pw");
        let want: String = format!("0102030405060708{}", hex(&h.finalize()))[..48].to_string();
        assert!(matches(&want, "pw"));
    }
}
