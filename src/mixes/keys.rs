//! Mix keys (D8, thesis 6.3.1): the node's long-term key with short-lived encryption
//! subkeys, and the key ring that peeling decrypts with.
//!
//! The primary key only certifies; every layer is encrypted to a cv25519 subkey that is
//! valid for two days. Secret material lives in one file, `secret-key.pgp`, mode 0600.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use openpgp::cert::amalgamation::ValidateAmalgamation;
use openpgp::cert::{CertBuilder, CipherSuite, KeyBuilder};
use openpgp::crypto::SessionKey;
use openpgp::packet::key;
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::PKESK;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::KeyFlags;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyID};
use sequoia_openpgp as openpgp;

use crate::mixes::address::MixAddress;
use crate::mixes::modes::Modes;
use crate::mixes::session::SubkeySecret;

/// The thesis' subkey lifetime.
pub const SUBKEY_VALIDITY: Duration = Duration::from_secs(2 * 24 * 3600);

/// The one user id a mix key carries (D8).
pub fn user_id(name: &str, modes: &Modes, address: &MixAddress) -> String {
    format!("{name} (mixtasy-mode:{modes}) <{address}>")
}

fn encryption_flags() -> KeyFlags {
    KeyFlags::empty().set_transport_encryption().set_storage_encryption()
}

/// A mix key as D8 has it, before subkeys: certification-only Ed25519 primary created at
/// `born`, without expiry, and the D8 user id.
fn primary_builder(name: &str, modes: &Modes, address: &MixAddress, born: SystemTime) -> CertBuilder<'static> {
    CertBuilder::new()
        .set_creation_time(born)
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_primary_key_flags(KeyFlags::empty().set_certification())
        .set_validity_period(None)
        .add_userid(user_id(name, modes, address))
}

/// Generates a mix key: certification-only Ed25519 primary without expiry, the D8 user id,
/// one cv25519 encryption subkey valid for `validity` from `now`.
pub fn generate(name: &str, modes: &Modes, address: &MixAddress, now: SystemTime, validity: Duration) -> Result<Cert> {
    let (cert, _revocation) = primary_builder(name, modes, address, now)
        .add_subkey(encryption_flags(), validity, None)
        .generate()
        .context("generating the mix key")?;
    Ok(cert)
}

/// When an encryption subkey was created and when it expires, read from its binding
/// signature as of its creation (so expired subkeys are still described).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub created: SystemTime,
    pub expires: Option<SystemTime>,
}

impl Validity {
    /// Valid at `now`, allowing a subkey created up to `skew` in the future (clock skew).
    pub fn valid_at(&self, now: SystemTime, skew: Duration) -> bool {
        self.created <= now + skew && self.expires.is_none_or(|e| now < e)
    }
}

/// Every encryption-capable subkey of `cert` with its validity. Subkeys whose binding does
/// not verify, or that do not carry an encryption flag, are left out.
pub fn encryption_subkeys(cert: &Cert) -> Vec<(key::Key<key::PublicParts, key::SubordinateRole>, Validity)> {
    let policy = StandardPolicy::new();
    let mut out = Vec::new();
    for ka in cert.keys().subkeys() {
        let created = ka.key().creation_time();
        let Ok(vka) = ka.with_policy(&policy, created) else { continue };
        if !(vka.for_transport_encryption() || vka.for_storage_encryption()) {
            continue;
        }
        out.push((ka.key().clone(), Validity { created, expires: vka.key_expiration_time() }));
    }
    out
}

/// What `rotate` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// A new subkey was added.
    pub added: bool,
    /// How many expired subkeys had their secret material destroyed.
    pub destroyed: usize,
}

impl Rotation {
    pub fn changed(&self) -> bool {
        self.added || self.destroyed > 0
    }
}

/// Key rotation (thesis 6.3.1, D8) at `now`: once the newest encryption subkey has passed
/// half its validity, or none is valid at all (a node that was off, a clock that jumped),
/// a new cv25519 subkey valid for `validity` is added, so two are valid at any time. Every
/// subkey that has expired loses its secret material: forward secrecy.
pub fn rotate(cert: Cert, now: SystemTime, validity: Duration) -> Result<(Cert, Rotation)> {
    rotate_with(cert, now, validity, false)
}

/// `rotate`, adding a subkey anyway when `force`.
fn rotate_with(cert: Cert, now: SystemTime, validity: Duration, force: bool) -> Result<(Cert, Rotation)> {
    let mut report = Rotation::default();
    let subkeys = encryption_subkeys(&cert);
    let secret: Vec<_> = cert.keys().subkeys().secret().map(|k| k.key().fingerprint()).collect();
    let newest =
        subkeys.iter().filter(|(k, _)| secret.contains(&k.fingerprint())).map(|(_, v)| *v).max_by_key(|v| v.created);
    let any_valid = subkeys.iter().any(|(k, v)| secret.contains(&k.fingerprint()) && v.valid_at(now, Duration::ZERO));
    let half_passed = newest.is_none_or(|v| now >= v.created + validity / 2);
    let mut cert = cert;
    if force || !any_valid || half_passed {
        let policy = StandardPolicy::new();
        let old = cert;
        let vc = old.with_policy(&policy, now).context("the mix key's primary is not valid now")?;
        cert = KeyBuilder::new(encryption_flags())
            .set_creation_time(now)
            .set_cipher_suite(CipherSuite::Cv25519)
            .subkey(vc)?
            .set_key_validity_period(validity)?
            .set_signature_creation_time(now)?
            .attach_cert()
            .context("adding a new encryption subkey")?;
        report.added = true;
    }
    let expired: Vec<_> = encryption_subkeys(&cert)
        .into_iter()
        .filter(|(k, v)| v.expires.is_some_and(|e| e <= now) && secret.contains(&k.fingerprint()))
        .map(|(k, _)| k.fingerprint())
        .collect();
    if !expired.is_empty() {
        // Serialize without the expired secrets and read back: the only copy of them in
        // this process is dropped with the old cert.
        let bytes = SerializeInto::to_vec(&cert.as_tsk().set_filter(|k| !expired.contains(&k.fingerprint())))?;
        cert = Cert::from_bytes(&bytes)?;
        report.destroyed = expired.len();
    }
    Ok((cert, report))
}

/// A key transition (issue 10): a new mix key for the same address, with `name` and
/// `modes`, whose user id the old primary certifies, so that directories holding the old key
/// take the new one (and nothing else) in its place. The old key's encryption subkeys that
/// are still valid are bound to the new primary too, secrets included: a message a sender
/// encrypted to them before learning the new key still peels, and rotation destroys them
/// when they expire, as ever. The new primary is dated from the oldest of them, so that their
/// bindings (dated from their own creation, as `encryption_subkeys` reads them) follow it.
pub fn transition(
    old: &Cert,
    name: &str,
    modes: &Modes,
    address: &MixAddress,
    now: SystemTime,
    validity: Duration,
) -> Result<Cert> {
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::packet::Packet;
    use openpgp::types::SignatureType;
    let carried: Vec<_> = old
        .keys()
        .subkeys()
        .secret()
        .filter_map(|ka| {
            let v = encryption_subkeys(old).into_iter().find(|(k, _)| k.fingerprint() == ka.key().fingerprint())?.1;
            v.valid_at(now, Duration::ZERO).then(|| (ka.key().clone(), v))
        })
        .collect();
    let born = carried.iter().map(|(_, v)| v.created).min().unwrap_or(now).min(now);
    let (new, _) = primary_builder(name, modes, address, born).generate().context("generating the new mix key")?;
    let mut new_signer = new.primary_key().key().clone().parts_into_secret()?.into_keypair()?;
    let mut packets: Vec<Packet> = Vec::new();
    for (key, v) in &carried {
        let mut b = SignatureBuilder::new(SignatureType::SubkeyBinding)
            .set_key_flags(encryption_flags())?
            .set_signature_creation_time(v.created)?;
        if let Some(e) = v.expires {
            b = b.set_key_validity_period(e.duration_since(v.created).unwrap_or_default())?;
        }
        let sig = b.sign_subkey_binding(&mut new_signer, new.primary_key().key(), key)?;
        packets.push(key.clone().into());
        packets.push(sig.into());
    }
    let mut old_signer = old
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .context("the mix key file has no secret primary key to certify the new key with")?
        .into_keypair()?;
    let uid = new.userids().next().expect("one user id").userid().clone();
    let certification = SignatureBuilder::new(SignatureType::GenericCertification)
        .set_signature_creation_time(now)?
        .sign_userid_binding(&mut old_signer, new.primary_key().key(), &uid)?;
    packets.push(certification.into());
    let (new, _) = new.insert_packets(packets)?;
    // A fresh subkey of its own, as `rotate` makes it.
    let (new, _) = rotate_with(new, now, validity, true)?;
    Ok(new)
}

/// Revokes the mix key (its secret is, or may be, in the wrong hands): the old key with a
/// revocation of its primary, which directories honour by never using it again and by
/// letting another key take its address.
pub fn revoke(old: &Cert, reason: &str, now: SystemTime) -> Result<Cert> {
    let mut signer = old
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .context("the mix key file has no secret primary key to revoke it with")?
        .into_keypair()?;
    let sig = openpgp::cert::CertRevocationBuilder::new()
        .set_reason_for_revocation(openpgp::types::ReasonForRevocation::KeyCompromised, reason.as_bytes())?
        .set_signature_creation_time(now)?
        .build(&mut signer, old, None)?;
    Ok(old.clone().insert_packets(std::iter::once(sig))?.0)
}

/// One encryption subkey of the node: ready to decrypt session keys, or, once its secret
/// was destroyed, kept only so that a message to it is counted as expired, not unknown.
pub struct DecryptionKey {
    pub keyid: KeyID,
    pub validity: Validity,
    /// Read once per key ring, not per message (`session`); only ever in memory.
    secret: Option<SubkeySecret>,
}

impl DecryptionKey {
    /// The session key `pkesk` carries, if this subkey has its secret and unwraps it.
    pub fn decrypt(&self, pkesk: &PKESK3) -> Option<(SymmetricAlgorithm, SessionKey)> {
        self.secret.as_ref()?.decrypt(pkesk)
    }
}

/// Whether a secret transport-encryption key of `cert` (valid at `time`, or now) unwraps one
/// of `pkesks` to a session key that `decrypt` accepts: the DecryptionHelper of a program that
/// holds a whole secret certificate (pinger, nym owner), not a mix's key ring.
pub fn open_with_cert(
    cert: &Cert,
    time: Option<SystemTime>,
    pkesks: &[PKESK],
    sym: Option<SymmetricAlgorithm>,
    decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
) -> bool {
    let policy = StandardPolicy::new();
    for ka in cert.keys().with_policy(&policy, time).secret().for_transport_encryption() {
        let Ok(mut pair) = ka.key().clone().into_keypair() else { continue };
        if pkesks.iter().any(|p| p.decrypt(&mut pair, sym).is_some_and(|(a, k)| decrypt(a, &k))) {
            return true;
        }
    }
    false
}

/// What the key ring knows of a key id.
pub enum Lookup<'a> {
    Valid(&'a DecryptionKey),
    Expired,
    NotYetValid,
    Unknown,
}

/// The node's secret encryption subkeys, loaded once per process.
pub struct KeyRing {
    keys: Vec<DecryptionKey>,
    skew: Duration,
}

impl KeyRing {
    /// Loads every secret encryption subkey of the node's key. `skew` is how far in the
    /// future a subkey's creation may lie and still be used (clock skew between mixes).
    pub fn from_cert(cert: &Cert, skew: Duration) -> Result<Self> {
        let mut keys = Vec::new();
        for (public, validity) in encryption_subkeys(cert) {
            let secret = match cert.keys().subkeys().secret().find(|k| k.key().fingerprint() == public.fingerprint()) {
                Some(ka) => Some(
                    SubkeySecret::new(ka.key().clone().role_into_unspecified())
                        .context("a secret subkey is encrypted with a passphrase; mix keys must not be")?,
                ),
                None => None,
            };
            keys.push(DecryptionKey { keyid: public.keyid(), validity, secret });
        }
        Ok(KeyRing { keys, skew })
    }

    pub fn lookup(&self, keyid: &KeyID, now: SystemTime) -> Lookup<'_> {
        match self.keys.iter().find(|k| &k.keyid == keyid) {
            None => Lookup::Unknown,
            Some(k) if k.secret.is_none() && k.validity.expires.is_some_and(|e| e <= now) => Lookup::Expired,
            Some(k) if k.secret.is_none() => Lookup::Unknown,
            Some(k) if k.validity.valid_at(now, self.skew) => Lookup::Valid(k),
            Some(k) if k.validity.created > now + self.skew => Lookup::NotYetValid,
            Some(_) => Lookup::Expired,
        }
    }

    /// Every key with a secret valid at `now` (for wildcard recipients).
    pub fn valid(&self, now: SystemTime) -> impl Iterator<Item = &DecryptionKey> {
        self.keys.iter().filter(move |k| k.secret.is_some() && k.validity.valid_at(now, self.skew))
    }

    /// How many subkeys still have their secret.
    pub fn secret_count(&self) -> usize {
        self.keys.iter().filter(|k| k.secret.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_week_of_rotation_never_leaves_zero_valid_subkeys() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let addr = MixAddress::parse("mixtasy@mix.test").unwrap();
        let mut cert = generate("Mix", &Modes::parse("middleman").unwrap(), &addr, t0, SUBKEY_VALIDITY).unwrap();
        let mut destroyed = 0;
        // Rounds every 15 minutes for a week.
        for step in 0..(7 * 96) {
            let now = t0 + Duration::from_secs(step * 900);
            let (c, r) = rotate(cert, now, SUBKEY_VALIDITY).unwrap();
            cert = c;
            destroyed += r.destroyed;
            let secret: Vec<_> = cert.keys().subkeys().secret().map(|k| k.key().fingerprint()).collect();
            let valid = encryption_subkeys(&cert)
                .iter()
                .filter(|(k, v)| secret.contains(&k.fingerprint()) && v.valid_at(now, Duration::ZERO))
                .count();
            assert!((1..=2).contains(&valid), "{valid} valid subkeys at step {step}");
            for (k, v) in encryption_subkeys(&cert) {
                if v.expires.unwrap() <= now {
                    assert!(!secret.contains(&k.fingerprint()), "expired secret kept at step {step}");
                }
            }
        }
        assert!(destroyed >= 5, "a week destroys about six subkeys, got {destroyed}");
    }

    #[test]
    fn a_node_off_for_a_week_gets_a_fresh_subkey() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let addr = MixAddress::parse("mixtasy@mix.test").unwrap();
        let cert = generate("Mix", &Modes::parse("middleman").unwrap(), &addr, t0, SUBKEY_VALIDITY).unwrap();
        let later = t0 + Duration::from_secs(7 * 86400);
        let (cert, r) = rotate(cert, later, SUBKEY_VALIDITY).unwrap();
        assert_eq!(r, Rotation { added: true, destroyed: 1 });
        let ring = KeyRing::from_cert(&cert, Duration::ZERO).unwrap();
        assert_eq!(ring.valid(later).count(), 1);
        assert_eq!(ring.secret_count(), 1, "only the new subkey still has a secret");
        let old = encryption_subkeys(&cert).into_iter().min_by_key(|(_, v)| v.created).unwrap().0;
        assert!(
            matches!(ring.lookup(&old.keyid(), later), Lookup::Expired),
            "a destroyed subkey is still known as expired"
        );
    }

    #[test]
    fn generated_key_follows_d8() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let addr = MixAddress::parse("mixtasy@mix.test").unwrap();
        let modes = Modes::parse("middleman,exitpublic").unwrap();
        let cert = generate("Mix", &modes, &addr, now, SUBKEY_VALIDITY).unwrap();
        let uids: Vec<String> =
            cert.userids().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()).collect();
        assert_eq!(uids, ["Mix (mixtasy-mode:middleman,exitpublic) <mixtasy@mix.test>"]);
        let subs = encryption_subkeys(&cert);
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].1, Validity { created: now, expires: Some(now + SUBKEY_VALIDITY) });
        let ring = KeyRing::from_cert(&cert, Duration::from_secs(3600)).unwrap();
        let id = subs[0].0.keyid();
        assert!(matches!(ring.lookup(&id, now), Lookup::Valid(_)));
        assert!(matches!(ring.lookup(&id, now - Duration::from_secs(1800)), Lookup::Valid(_)));
        assert!(matches!(ring.lookup(&id, now - Duration::from_secs(7200)), Lookup::NotYetValid));
        assert!(matches!(ring.lookup(&id, now + SUBKEY_VALIDITY), Lookup::Expired));
        assert!(matches!(ring.lookup(&KeyID::new(1), now), Lookup::Unknown));
    }
}
