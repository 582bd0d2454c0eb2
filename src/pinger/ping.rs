//! The ping message (doc/protocol.md, "Ping messages"): an ordinary original for the
//! pinger's own address, PGP/MIME encrypted to the pinger key (`sender::pgpmime`), wrapped
//! like any user mail (`sender::create::wrap`) over one hop (an exit mix) or two (a
//! middleman, then the trusted exit). Inside the encryption:
//!
//! ```text
//! Mixtasy-Ping: 1
//! Id: <32 hex digits>
//! Sent: <unix seconds>
//! Mac: <HMAC-SHA256 of "mixtasy-ping 1\n<id>\n<sent>" under the ping secret, 64 hex digits>
//! ```
//!
//! The exit sees a mail to the pinger and nothing of what it carries; only the pinger, which
//! alone holds the ping secret, can make a valid one, so a mix cannot forge a return or a
//! better latency, and a returned ping is counted once (`store::mark_returned`).

use std::io::Read;
use std::time::SystemTime;

use anyhow::{anyhow, Result};
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use rand::{CryptoRng, Rng, RngCore};
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};

use crate::batch::state::unix;
use crate::format::message::{self, hex, Kind};
use crate::mixes::directory::Mix;
use crate::mixes::keys;
use crate::sender::{create, pgpmime};

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(data).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn mac(secret: &[u8], id: &str, sent: i64) -> String {
    hex(&hmac_sha256(secret, format!("mixtasy-ping 1\n{id}\n{sent}").as_bytes()))
}

/// The payload text of a ping.
pub fn payload(secret: &[u8], id: &str, sent: SystemTime) -> String {
    let s = unix(sent);
    format!("Mixtasy-Ping: 1\r\nId: {id}\r\nSent: {s}\r\nMac: {}\r\n", mac(secret, id, s))
}

/// A new random ping id.
pub fn new_id(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    hex(&b)
}

/// The wire mail of one ping along `path` (first hop first; its last hop delivers).
pub fn build(
    pinger: &Cert,
    address: &str,
    secret: &[u8],
    id: &str,
    path: &[&Mix],
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<create::WireMessage> {
    let original = format!(
        "To: {address}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{}",
        payload(secret, id, now)
    );
    let public = pinger.clone().strip_secret_key_material();
    let encrypted = pgpmime::encrypt(original.as_bytes(), &[public], now)?;
    let mid = message::new_id(rng);
    if encrypted.len() > message::capacity(&mid, Kind::Singlepart) {
        return Err(anyhow!("a ping does not fit one final message"));
    }
    let fin = message::build_final(&mid, Kind::Singlepart, &encrypted, rng);
    create::wrap(fin, path, None, now, rng)
}

/// What a mail in the pinger's Maildir is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// A ping made by this pinger: its id and send time.
    Valid { id: String, sent: i64 },
    /// Encrypted to the pinger and shaped like a ping, but its MAC is wrong: made by someone
    /// without the secret.
    Forged,
    /// Not a ping (no OpenPGP message the pinger key opens): operator mail, bounces.
    NotPing,
}

/// Reads one delivered mail.
/// `now` is the time the pinger key is taken at (the `--now` of simulated runs).
pub fn read(mail: &[u8], pinger: &Cert, secret: &[u8], now: SystemTime) -> Intake {
    let Some(plain) = decrypt(mail, pinger, now) else { return Intake::NotPing };
    let text = String::from_utf8_lossy(&plain);
    let field =
        |name: &str| text.lines().find_map(|l| l.trim_end().strip_prefix(name).map(str::trim).map(str::to_string));
    if field("Mixtasy-Ping:").as_deref() != Some("1") {
        return Intake::NotPing;
    }
    let (Some(id), Some(sent), Some(given)) =
        (field("Id:"), field("Sent:").and_then(|s| s.parse::<i64>().ok()), field("Mac:"))
    else {
        return Intake::Forged;
    };
    let want = mac(secret, &id, sent);
    // Constant time: a forger learns nothing from how long a refusal took.
    if given.len() != want.len() || given.bytes().zip(want.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
        return Intake::Forged;
    }
    Intake::Valid { id, sent }
}

/// The plaintext of the first OpenPGP message in `mail` that the pinger key opens.
fn decrypt(mail: &[u8], pinger: &Cert, now: SystemTime) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
    const END: &[u8] = b"-----END PGP MESSAGE-----";
    let start = mail.windows(BEGIN.len()).position(|w| w == BEGIN)?;
    let end = start + mail[start..].windows(END.len()).position(|w| w == END)? + END.len();
    let policy = StandardPolicy::new();
    let mut d = DecryptorBuilder::from_bytes(&mail[start..end])
        .ok()?
        .with_policy(&policy, Some(now), Helper(pinger, now))
        .ok()?;
    let mut plain = Vec::new();
    d.by_ref().take(64 * 1024).read_to_end(&mut plain).ok()?;
    Some(plain)
}

struct Helper<'a>(&'a Cert, SystemTime);

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _: &[SKESK],
        sym: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        if keys::open_with_cert(self.0, Some(self.1), pkesks, sym, decrypt) {
            return Ok(None);
        }
        Err(anyhow!("not encrypted to the pinger key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn pinger() -> Cert {
        let t = tempfile::tempdir().unwrap();
        crate::pinger::home::PingerHome::new(t.path().join("p")).init("pinger@ping.test", SystemTime::now()).unwrap()
    }

    fn sealed(cert: &Cert, text: &str) -> Vec<u8> {
        let orig = format!("To: pinger@ping.test\r\n\r\n{text}");
        pgpmime::encrypt(orig.as_bytes(), &[cert.clone().strip_secret_key_material()], SystemTime::now()).unwrap()
    }

    #[test]
    fn only_the_secret_makes_a_valid_ping() {
        let cert = pinger();
        let now = SystemTime::now();
        let good = sealed(&cert, &payload(b"secret", "00ff", now));
        assert_eq!(read(&good, &cert, b"secret", now), Intake::Valid { id: "00ff".into(), sent: unix(now) });
        // The same ping under another secret, or with its send time moved, is forged.
        assert_eq!(read(&good, &cert, b"other", now), Intake::Forged);
        let moved = payload(b"secret", "00ff", now)
            .replace(&format!("Sent: {}", unix(now)), &format!("Sent: {}", unix(now) - 3600));
        assert_eq!(read(&sealed(&cert, &moved), &cert, b"secret", now), Intake::Forged);
        assert_eq!(read(&sealed(&cert, "Mixtasy-Ping: 1\r\nId: 00ff\r\n"), &cert, b"secret", now), Intake::Forged);
        // Mail the pinger key does not open is not a ping at all.
        assert_eq!(read(b"To: pinger@ping.test\r\n\r\nhello\r\n", &cert, b"secret", now), Intake::NotPing);
        assert_eq!(read(&sealed(&pinger(), &payload(b"secret", "00ff", now)), &cert, b"secret", now), Intake::NotPing);
    }
}
