//! The session key of a layer (D4): a PKESK v3 with ECDH over Curve25519 (RFC 6637, the
//! "cv25519" subkeys of D8), wrapped and unwrapped here instead of by sequoia's
//! `Key::encrypt` and `KeyPair`.
//!
//! Why: with sequoia's Nettle backend, every `Key::encrypt` seeds a fresh Yarrow generator
//! for the ephemeral key (1 500 SHA-256 iterations, more than the whole rest of a layer), and
//! every `KeyPair::decrypt` first unseals the secret from sequoia's encrypted memory (a
//! SHA-256 over a 16 KiB pre-key) and re-reads it. Here the ephemeral secret comes from the
//! caller's CSPRNG, and each subkey's scalar is read once per key ring. The curve arithmetic
//! is OpenSSL's X25519 (issue 18): on the bench machine 36 µs a shared point, key import and
//! context included, where Nettle's `curve25519_mul` took 56 (and curve25519-dalek 50); its
//! x86_64 code uses MULX/ADX where the CPU has them. KDF and parameters are RFC 6637's, byte
//! for byte what sequoia and GnuPG compute (tested both ways below); keys of any other
//! algorithm keep going through sequoia.

use anyhow::Result;
use openpgp::crypto::mem::Protected;
use openpgp::crypto::mpi::{self, Ciphertext, MPI};
use openpgp::crypto::{Decryptor, KeyPair, SessionKey};
use openpgp::packet::key::{self, Key, PublicParts, SecretParts, UnspecifiedRole};
use openpgp::packet::pkesk::PKESK3;
use openpgp::types::{Curve, HashAlgorithm, PublicKeyAlgorithm, SymmetricAlgorithm};
use openssl::derive::Deriver;
use openssl::pkey::{Id, PKey, Private};
use rand::CryptoRng;
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};

/// Bytes of a Curve25519 scalar or point.
const X25519_LEN: usize = 32;

/// A PKESK v3 carrying `session_key` for `algo` to `recipient`. Cv25519 ECDH subkeys with
/// the usual SHA-256 KDF take the fast path; any other key goes through sequoia.
pub fn pkesk_for<R: key::KeyRole>(
    recipient: &Key<PublicParts, R>,
    algo: SymmetricAlgorithm,
    session_key: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<PKESK3> {
    let (q, hash, sym) = match recipient.mpis() {
        mpi::PublicKey::ECDH { curve: Curve::Cv25519, q, hash: hash @ HashAlgorithm::SHA256, sym }
            if sym.key_size().is_ok_and(|n| n <= 32) =>
        {
            (q, *hash, *sym)
        }
        _ => return PKESK3::for_recipient(algo, &SessionKey::from(session_key), recipient),
    };
    let point: &[u8; X25519_LEN] = q.decode_point(&Curve::Cv25519)?.0.try_into()?;
    // The ephemeral key pair {v, V = vG}; OpenSSL clamps v, and computes V as it imports v.
    let mut v: Protected = vec![0u8; X25519_LEN].into();
    rng.fill_bytes(&mut v);
    let v = x25519_secret(&v)?;
    let ephemeral = v.raw_public_key()?;
    let shared = shared_point(&v, point)?;
    // m = algo || session key || checksum, PKCS5-padded to 40 bytes (RFC 6637 §8; 40
    // hides the session key's length, as sequoia and GnuPG do).
    let mut m: Protected = vec![0u8; 40].into();
    let n = 1 + session_key.len() + 2;
    anyhow::ensure!(n <= m.len(), "session key too long");
    m[0] = algo.into();
    m[1..1 + session_key.len()].copy_from_slice(session_key);
    let checksum = session_key.iter().map(|&b| u16::from(b)).fold(0u16, u16::wrapping_add);
    m[1 + session_key.len()..n].copy_from_slice(&checksum.to_be_bytes());
    let pad = (m.len() - n) as u8;
    m[n..].fill(pad);
    let kek = kdf(&shared, sym, &param(recipient, hash, sym))?;
    let wrapped = openpgp::crypto::ecdh::aes_key_wrap(sym, &kek, &m)?;
    let ciphertext = Ciphertext::ECDH { e: MPI::new_compressed_point(&ephemeral), key: wrapped.into_boxed_slice() };
    PKESK3::new(Some(recipient.keyid()), PublicKeyAlgorithm::ECDH, ciphertext)
}

/// The secret half of one encryption subkey, read once, ready to unwrap session keys.
pub enum SubkeySecret {
    /// A cv25519 subkey: its public key (for the KDF parameters) and its scalar as OpenSSL's
    /// X25519 key (read in the byte order X25519 takes; OpenPGP stores it reversed). OpenSSL
    /// clears it when the key is freed.
    Cv25519 { public: Key<PublicParts, UnspecifiedRole>, scalar: PKey<Private> },
    /// Any other algorithm: sequoia's key pair.
    Other(KeyPair),
}

impl SubkeySecret {
    /// Reads the secret of `key`; fails when it is encrypted with a passphrase.
    pub fn new(key: Key<SecretParts, UnspecifiedRole>) -> Result<Self> {
        let scalar = match (key.mpis(), key.secret()) {
            (mpi::PublicKey::ECDH { curve: Curve::Cv25519, .. }, key::SecretKeyMaterial::Unencrypted(u)) => {
                u.map(|s| match s {
                    mpi::SecretKeyMaterial::ECDH { scalar } => {
                        let mut r = scalar.value_padded(X25519_LEN);
                        r.reverse();
                        Some(r)
                    }
                    _ => None,
                })
            }
            _ => None,
        };
        Ok(match scalar {
            Some(scalar) => SubkeySecret::Cv25519 { public: key.parts_into_public(), scalar: x25519_secret(&scalar)? },
            None => SubkeySecret::Other(key.into_keypair()?),
        })
    }

    /// The session key `pkesk` carries, if this subkey unwraps it: `PKESK3::decrypt` with
    /// this secret (it checks the algorithm octet and the checksum, as before).
    pub fn decrypt(&self, pkesk: &PKESK3) -> Option<(SymmetricAlgorithm, SessionKey)> {
        match self {
            SubkeySecret::Cv25519 { public, scalar } => pkesk.decrypt(&mut Cv25519Decryptor { public, scalar }, None),
            SubkeySecret::Other(pair) => pkesk.decrypt(&mut pair.clone(), None),
        }
    }
}

/// A borrowed cv25519 secret as sequoia's `Decryptor`.
struct Cv25519Decryptor<'a> {
    public: &'a Key<PublicParts, UnspecifiedRole>,
    scalar: &'a PKey<Private>,
}

impl Decryptor for Cv25519Decryptor<'_> {
    fn public(&self) -> &Key<PublicParts, UnspecifiedRole> {
        self.public
    }

    fn decrypt(&mut self, ciphertext: &Ciphertext, plaintext_len: Option<usize>) -> openpgp::Result<SessionKey> {
        let Ciphertext::ECDH { e, .. } = ciphertext else {
            return Err(openpgp::Error::InvalidArgument("not an ECDH ciphertext".into()).into());
        };
        let point: &[u8; X25519_LEN] = e.decode_point(&Curve::Cv25519)?.0.try_into()?;
        let shared = shared_point(self.scalar, point)?;
        openpgp::crypto::ecdh::decrypt_unwrap(self.public, &shared, ciphertext, plaintext_len)
    }
}

/// An X25519 secret scalar (RFC 7748 byte order) as OpenSSL's key.
fn x25519_secret(scalar: &[u8]) -> Result<PKey<Private>> {
    Ok(PKey::private_key_from_raw_bytes(scalar, Id::X25519)?)
}

/// S = xP, OpenSSL's X25519. It refuses a point of small order (an all-zero S), which
/// Nettle computed: such a PKESK fails here instead of at the key unwrap.
fn shared_point(x: &PKey<Private>, point: &[u8; X25519_LEN]) -> Result<Protected> {
    let peer = PKey::public_key_from_raw_bytes(point, Id::X25519)?;
    let mut deriver = Deriver::new(x)?;
    deriver.set_peer(&peer)?;
    let mut s: Protected = vec![0u8; X25519_LEN].into();
    let n = deriver.derive(&mut s)?;
    anyhow::ensure!(n == X25519_LEN, "X25519 gave {n} bytes");
    Ok(s)
}

/// RFC 6637 §8's KDF parameters: curve OID, algorithm, KDF and KEK ids, "Anonymous
/// Sender    " and the recipient's fingerprint (sequoia caches it in the key).
fn param<R: key::KeyRole>(recipient: &Key<PublicParts, R>, hash: HashAlgorithm, sym: SymmetricAlgorithm) -> Vec<u8> {
    let oid = Curve::Cv25519.oid();
    let fp = recipient.fingerprint();
    let mut p = Vec::with_capacity(1 + oid.len() + 1 + 4 + 20 + fp.as_bytes().len());
    p.push(oid.len() as u8);
    p.extend_from_slice(oid);
    p.push(PublicKeyAlgorithm::ECDH.into());
    p.extend_from_slice(&[3, 1, hash.into(), sym.into()]);
    p.extend_from_slice(b"Anonymous Sender    ");
    p.extend_from_slice(fp.as_bytes());
    p
}

/// RFC 6637 §7: Hash(00 00 00 01 || S || param), cut to the KEK's key size. Only SHA-256,
/// what cv25519 keys name (`pkesk_for` leaves others to sequoia).
fn kdf(shared: &Protected, sym: SymmetricAlgorithm, param: &[u8]) -> Result<Protected> {
    let n = sym.key_size()?;
    anyhow::ensure!(n <= 32, "KEK {sym} longer than SHA-256");
    let mut h = Sha256::new();
    h.update([0, 0, 0, 1]);
    h.update(&shared[..]);
    h.update(param);
    let digest = h.finalize();
    Ok(Protected::from(&digest[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixes::address::MixAddress;
    use crate::mixes::keys;
    use crate::mixes::modes::Modes;
    use rand::RngCore;
    use std::time::{Duration, SystemTime};

    fn subkey() -> Key<SecretParts, UnspecifiedRole> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cert = keys::generate(
            "A",
            &Modes::parse("middleman").unwrap(),
            &MixAddress::parse("mixtasy@a.test").unwrap(),
            now,
            keys::SUBKEY_VALIDITY,
        )
        .unwrap();
        let k = cert.keys().subkeys().secret().next().unwrap().key().clone();
        k.role_into_unspecified()
    }

    /// Ours and sequoia's agree both ways: sequoia's key pair opens our PKESK, we open
    /// sequoia's, with the same session key; a flipped bit anywhere in the wrapped key, or
    /// another subkey, gets nothing.
    #[test]
    fn agrees_with_sequoia_both_ways() {
        let key = subkey();
        let other = subkey();
        let secret = SubkeySecret::new(key.clone()).unwrap();
        assert!(matches!(secret, SubkeySecret::Cv25519 { .. }));
        let mut rng = rand::rng();
        for _ in 0..20 {
            let mut sk = [0u8; 32];
            rng.fill_bytes(&mut sk);
            let ours = pkesk_for(&key.clone().parts_into_public(), SymmetricAlgorithm::AES256, &sk, &mut rng).unwrap();
            let mut pair = key.clone().into_keypair().unwrap();
            let (algo, got) = ours.decrypt(&mut pair, None).expect("sequoia opens ours");
            assert_eq!((algo, &got[..]), (SymmetricAlgorithm::AES256, &sk[..]));

            let theirs = PKESK3::for_recipient(SymmetricAlgorithm::AES256, &SessionKey::from(&sk[..]), &key).unwrap();
            let (algo, got) = secret.decrypt(&theirs).expect("we open sequoia's");
            assert_eq!((algo, &got[..]), (SymmetricAlgorithm::AES256, &sk[..]));

            assert!(SubkeySecret::new(other.clone()).unwrap().decrypt(&ours).is_none(), "another subkey");
            let Ciphertext::ECDH { e, key: wrapped } = ours.esk() else { panic!("ECDH") };
            for i in 0..wrapped.len() {
                let mut bad = wrapped.to_vec();
                bad[i] ^= 0x10;
                let c = Ciphertext::ECDH { e: e.clone(), key: bad.into_boxed_slice() };
                let p = PKESK3::new(ours.recipient().cloned(), PublicKeyAlgorithm::ECDH, c).unwrap();
                assert!(secret.decrypt(&p).is_none(), "flipped bit in byte {i} of the wrapped key");
            }
            let mut e2 = e.value().to_vec();
            e2[5] ^= 1;
            let c = Ciphertext::ECDH { e: MPI::new(&e2), key: wrapped.clone() };
            let p = PKESK3::new(ours.recipient().cloned(), PublicKeyAlgorithm::ECDH, c).unwrap();
            assert!(secret.decrypt(&p).is_none(), "changed ephemeral point");
        }
    }

    /// A cv25519 key naming another KDF (SHA-512, AES-256 key wrap) is left to sequoia both
    /// ways, and still opens.
    #[test]
    fn other_kdf_parameters_go_through_sequoia() {
        use openpgp::packet::key::Key4;
        let key: Key<SecretParts, UnspecifiedRole> =
            Key4::import_secret_cv25519(&[0x33; 32], HashAlgorithm::SHA512, SymmetricAlgorithm::AES256, None)
                .unwrap()
                .into();
        let secret = SubkeySecret::new(key.clone()).unwrap();
        let mut rng = rand::rng();
        let p = pkesk_for(&key.clone().parts_into_public(), SymmetricAlgorithm::AES256, &[9; 32], &mut rng).unwrap();
        let (algo, got) = secret.decrypt(&p).expect("opens");
        assert_eq!((algo, &got[..]), (SymmetricAlgorithm::AES256, &[9u8; 32][..]));
        let (_, got) = p.decrypt(&mut key.into_keypair().unwrap(), None).expect("sequoia opens it");
        assert_eq!(&got[..], &[9u8; 32][..]);
    }

    #[test]
    fn fresh_ephemeral_key_every_time() {
        let key = subkey().parts_into_public();
        let mut rng = rand::rng();
        let a = pkesk_for(&key, SymmetricAlgorithm::AES256, &[1; 32], &mut rng).unwrap();
        let b = pkesk_for(&key, SymmetricAlgorithm::AES256, &[1; 32], &mut rng).unwrap();
        assert_ne!(a.esk(), b.esk());
    }
}
