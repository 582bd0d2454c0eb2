//! Plain OpenPGP in and out: what the server reads (a message encrypted to its key and
//! signed by a nym, as `gpg --sign --encrypt` makes it) and what it writes (mail encrypted
//! to a nym and signed by the server). Not the mix layers (`format`): these are ordinary
//! RFC 9580 messages with integrity protection, so that stock GnuPG is a client.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::serialize::MarshalInto;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};

use crate::mixes::keys::KeyRing;

/// How old a request's signature may be (nym.alias.net).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 86400);
/// How far in the future a request's signature may be dated (nym.alias.net).
pub const MAX_AHEAD: Duration = Duration::from_secs(86400);

/// Why a request is not taken; the counters of mixtasy-nymd(8) are named after these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("not an OpenPGP message the server can decrypt")]
    Undecryptable,
    #[error("no valid signature by a known nym key")]
    Unsigned,
    #[error("the signature is older than 7 days")]
    Stale,
    #[error("the signature is dated more than a day ahead")]
    Ahead,
    #[error("the request was seen before")]
    Replay,
}

impl Refused {
    pub fn counter(&self) -> &'static str {
        match self {
            Refused::Undecryptable => "refused.undecryptable",
            Refused::Unsigned => "refused.unsigned",
            Refused::Stale => "refused.stale",
            Refused::Ahead => "refused.ahead",
            Refused::Replay => "refused.replay",
        }
    }
}

/// A decrypted message and the signature on it, if one verified.
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// The creation time the signature claims, before it is verified: a signature dated
    /// ahead of the verification time does not verify, and is refused for that reason.
    pub claimed: Option<SystemTime>,
    pub signed: Option<Signed>,
    /// The keys the signatures name as their issuers, verified or not: where to look for
    /// the signer's key before a second, verifying pass.
    pub issuers: Vec<KeyHandle>,
}

/// A good signature by a nym key.
pub struct Signed {
    /// The signer's primary fingerprint (hex).
    pub fingerprint: String,
    pub created: SystemTime,
    /// SHA-256 of the signature packet: the replay cache's key.
    pub hash: [u8; 32],
}

/// Freshness of a signature made at `created`: at most `MAX_AGE` old, at most
/// `MAX_AHEAD` ahead of `now`.
pub fn fresh(created: SystemTime, now: SystemTime) -> Result<(), Refused> {
    if created + MAX_AGE < now {
        return Err(Refused::Stale);
    }
    if created > now + MAX_AHEAD {
        return Err(Refused::Ahead);
    }
    Ok(())
}

struct Helper<'a> {
    ring: &'a KeyRing,
    now: SystemTime,
    signers: Vec<Cert>,
    issuers: Vec<KeyHandle>,
    /// The creation time the first signature claims, verified or not.
    claimed: Option<SystemTime>,
    good: Option<Signed>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        self.issuers.extend(ids.iter().cloned());
        Ok(self.signers.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                for r in results {
                    use openpgp::parse::stream::VerificationError as E;
                    let sig = match &r {
                        Ok(g) => Some(g.sig),
                        Err(
                            E::MissingKey { sig }
                            | E::UnboundKey { sig, .. }
                            | E::BadKey { sig, .. }
                            | E::BadSignature { sig, .. }
                            | E::MalformedSignature { sig, .. },
                        ) => Some(*sig),
                        Err(_) => None,
                    };
                    if self.claimed.is_none() {
                        self.claimed = sig.and_then(|s| s.signature_creation_time());
                    }
                    let Ok(r) = r else { continue };
                    if self.good.is_none() {
                        let created = r
                            .sig
                            .signature_creation_time()
                            .ok_or_else(|| anyhow!("signature without creation time"))?;
                        let hash: [u8; 32] = Sha256::digest(r.sig.to_vec()?).into();
                        self.good = Some(Signed { fingerprint: r.ka.cert().fingerprint().to_hex(), created, hash });
                    }
                }
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        _sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            let keys: Vec<_> = match pkesk.recipient() {
                Some(h) => self.ring.valid(self.now).filter(|k| h.aliases(KeyHandle::from(k.keyid.clone()))).collect(),
                None => self.ring.valid(self.now).collect(),
            };
            for k in keys {
                let opened = match pkesk {
                    PKESK::V3(p) => k.decrypt(p),
                    _ => None,
                };
                if let Some((algo, sk)) = opened {
                    if decrypt(Some(algo), &sk) {
                        return Ok(None);
                    }
                }
            }
        }
        Err(anyhow!("no key to decrypt the message"))
    }
}

/// Decrypts `msg` (armored or binary) with the server's keys and verifies its signature
/// against `signers`, as of `now` + `MAX_AHEAD`: a signature dated further ahead does not
/// verify, and `Opened::claimed` lets the caller refuse it for that reason.
pub fn open(ring: &KeyRing, msg: &[u8], signers: &[Cert], now: SystemTime, max: usize) -> Result<Opened, Refused> {
    let policy = StandardPolicy::new();
    let helper = Helper { ring, now, signers: signers.to_vec(), issuers: Vec::new(), claimed: None, good: None };
    let mut d = DecryptorBuilder::from_bytes(msg)
        .and_then(|b| b.with_policy(&policy, Some(now + MAX_AHEAD), helper))
        .map_err(|_| Refused::Undecryptable)?;
    let mut plaintext = Vec::new();
    (&mut d).take(max as u64 + 1).read_to_end(&mut plaintext).map_err(|_| Refused::Undecryptable)?;
    if plaintext.len() > max {
        return Err(Refused::Undecryptable);
    }
    let h = d.helper_mut();
    Ok(Opened { plaintext, claimed: h.claimed, signed: h.good.take(), issuers: std::mem::take(&mut h.issuers) })
}

/// The names the key index (`store::index_keys`) files `cert` under: the key id and the
/// fingerprint of each key that can sign for it at `now`, upper-case hex. Only signing keys:
/// a request's issuer is one, and a signing subkey is bound only with its own back
/// signature, so nobody can file another nym's signing key under their own nym (an
/// encryption subkey needs no such consent: anybody may bind alice's to their key) and
/// crowd alice out of the candidates her own signature names.
pub fn handles(cert: &Cert, now: SystemTime) -> Vec<String> {
    cert.keys()
        .with_policy(&StandardPolicy::new(), key_time(cert, now))
        .for_signing()
        .flat_map(|k| [k.key().keyid().to_hex(), k.key().fingerprint().to_hex()])
        .collect()
}

/// The names under which the key index finds the key a signature's issuer `handle` names:
/// a key id as is, a fingerprint as itself and as its key id.
pub fn handle_names(handle: &KeyHandle) -> Vec<String> {
    match handle {
        KeyHandle::KeyID(id) => vec![id.to_hex()],
        KeyHandle::Fingerprint(fp) => vec![fp.to_hex(), openpgp::KeyID::from(fp).to_hex()],
    }
}

/// The signing key of `cert` that holds its secret and is valid at `now`: what signs the
/// server's mail and a nym's requests alike.
pub fn signing_key(
    cert: &Cert,
    now: SystemTime,
) -> Option<openpgp::packet::Key<openpgp::packet::key::SecretParts, openpgp::packet::key::UnspecifiedRole>> {
    let policy = StandardPolicy::new();
    cert.keys()
        .with_policy(&policy, now)
        .secret()
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .map(|ka| ka.key().clone())
}

/// `plaintext` encrypted to `to`'s encryption keys and signed by `signer` (the server's
/// signing key), armored; wrapped once more in a symmetric layer under `passphrase` when
/// given (the `symmetric:` setting). The recipient's key id is left out (a wildcard
/// recipient, as nymserv does), so that articles in the shared group do not name their nym.
pub fn seal(to: &Cert, signer: &Cert, plaintext: &[u8], passphrase: Option<&str>, now: SystemTime) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    let recipients: Vec<Recipient> = to
        .keys()
        .with_policy(&policy, key_time(to, now))
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .map(|ka| Recipient::new(ka.valid_cert().features(), None::<KeyHandle>, ka.key()))
        .collect();
    if recipients.is_empty() {
        return Err(anyhow!("the nym key has no usable encryption key"));
    }
    let pair = signing_key(signer, now).context("the server key has no signing key")?.into_keypair()?;
    let mut inner = Vec::new();
    {
        let m = Message::new(&mut inner);
        let m = Encryptor::for_recipients(m, recipients).build()?;
        let m = Signer::new(m, pair)?.creation_time(now).build()?;
        let mut w = LiteralWriter::new(m).build()?;
        w.write_all(plaintext)?;
        w.finalize()?;
    }
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = Armorer::new(m).kind(openpgp::armor::Kind::Message).build()?;
        let mut w = match passphrase {
            Some(p) => {
                let m = Encryptor::with_passwords(m, Some(p)).symmetric_algo(SymmetricAlgorithm::AES256).build()?;
                LiteralWriter::new(m).build()?
            }
            None => {
                // The inner message is already whole OpenPGP: copy it under the armor.
                let mut m = m;
                m.write_all(&inner)?;
                m.finalize()?;
                return Ok(out);
            }
        };
        w.write_all(&inner)?;
        w.finalize()?;
    }
    Ok(out)
}

/// The time to judge a nym key at: now, or its creation if that is later (a key made
/// moments ago on a client whose clock runs ahead of the server's).
fn key_time(cert: &Cert, now: SystemTime) -> SystemTime {
    now.max(cert.primary_key().key().creation_time())
}

/// Whether `cert` has an encryption key `seal` can use at `now`.
pub fn can_receive(cert: &Cert, now: SystemTime) -> bool {
    cert.keys()
        .with_policy(&StandardPolicy::new(), key_time(cert, now))
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .next()
        .is_some()
}

/// A public key from an armored or binary block, checked to be a certificate.
pub fn cert(bytes: &[u8]) -> Result<Cert> {
    Cert::from_bytes(bytes).context("not an OpenPGP key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::types::{KeyFlags, SignatureType};

    /// Mallory binds alice's signing key into his own key as a signing subkey (he can make
    /// the binding, not alice's back signature): the index files his nym under his keys only.
    #[test]
    fn another_nyms_signing_key_bound_without_its_consent_is_not_indexed() {
        let now = SystemTime::now();
        let (alice, _) = CertBuilder::general_purpose(Some("alice@nym.test")).generate().unwrap();
        let (mallory, _) = CertBuilder::general_purpose(Some("mallory@nym.test")).generate().unwrap();
        let policy = StandardPolicy::new();
        let signing = alice.keys().with_policy(&policy, now).for_signing().next().unwrap().key().clone();
        let sub = signing.clone().role_into_subordinate();
        let mut pair = mallory.primary_key().key().clone().parts_into_secret().unwrap().into_keypair().unwrap();
        let binding = SignatureBuilder::new(SignatureType::SubkeyBinding)
            .set_key_flags(KeyFlags::empty().set_signing())
            .unwrap()
            .sign_subkey_binding(&mut pair, mallory.primary_key().key(), &sub)
            .unwrap();
        let (mallory, _) = mallory.insert_packets(vec![openpgp::Packet::from(sub), binding.into()]).unwrap();
        assert!(mallory.keys().any(|k| k.key().fingerprint() == signing.fingerprint()), "the key is in his cert");
        let filed = handles(&mallory, now);
        assert!(!filed.contains(&signing.keyid().to_hex()) && !filed.contains(&signing.fingerprint().to_hex()));
        assert_eq!(filed.len(), 2, "his own signing key, by id and fingerprint");
        assert!(handles(&alice, now).contains(&signing.keyid().to_hex()));
    }
}
