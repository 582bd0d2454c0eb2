//! OpenPGP CFB mode with resynchronisation (RFC 4880 §13.9), the cipher of a tag 9 packet.
//!
//! The ciphertext starts with a random 16-byte block and a repeat of its last two bytes
//! (the "quick check"); after those 18 bytes the IV is resynchronised to ciphertext bytes
//! 2..18 and plain CFB follows. No MDC: D4 forbids it, the Verification hash replaces it.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};

/// Bytes of the random prefix: one block plus the two-byte quick check.
pub const PREFIX_LEN: usize = BLOCK + 2;
const BLOCK: usize = 16;

/// The AES variants OpenPGP names (RFC 4880 §9.2, ids 7, 8, 9). Mixtasy writes AES-256;
/// GnuPG may choose the others, so they are read too.
pub enum Cipher {
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CfbError {
    #[error("unsupported symmetric algorithm {0}")]
    UnsupportedAlgorithm(u8),
    #[error("session key has the wrong length for its algorithm")]
    KeyLength,
    #[error("encrypted data shorter than its random prefix")]
    Truncated,
    #[error("quick check of the random prefix failed (wrong session key or damaged data)")]
    QuickCheck,
    #[error("two cipher blocks fed into AES are equal (a tag)")]
    RepeatedInput,
}

impl Cipher {
    /// Makes a cipher from the OpenPGP algorithm id and key.
    pub fn new(algo: u8, key: &[u8]) -> Result<Self, CfbError> {
        let bad = |_| CfbError::KeyLength;
        Ok(match algo {
            7 => Cipher::Aes128(aes::Aes128::new_from_slice(key).map_err(bad)?),
            8 => Cipher::Aes192(aes::Aes192::new_from_slice(key).map_err(bad)?),
            9 => Cipher::Aes256(aes::Aes256::new_from_slice(key).map_err(bad)?),
            other => return Err(CfbError::UnsupportedAlgorithm(other)),
        })
    }

    fn encrypt_block(&self, block: &mut [u8; BLOCK]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::Aes128(c) => c.encrypt_block(b),
            Cipher::Aes192(c) => c.encrypt_block(b),
            Cipher::Aes256(c) => c.encrypt_block(b),
        }
    }

    /// Encrypts many independent blocks at once; AES-NI pipelines them.
    fn encrypt_blocks(&self, blocks: &mut [GenericArray<u8, aes::cipher::consts::U16>]) {
        match self {
            Cipher::Aes128(c) => c.encrypt_blocks(blocks),
            Cipher::Aes192(c) => c.encrypt_blocks(blocks),
            Cipher::Aes256(c) => c.encrypt_blocks(blocks),
        }
    }

    /// Encrypts `prefix` (16 random bytes) and `plain` into `out`, appending
    /// `PREFIX_LEN + plain.len()` bytes.
    pub fn encrypt(&self, prefix: &[u8; BLOCK], plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut fr = [0u8; BLOCK];
        self.encrypt_block(&mut fr);
        let mut c0 = [0u8; BLOCK];
        for i in 0..BLOCK {
            c0[i] = fr[i] ^ prefix[i];
        }
        out.extend_from_slice(&c0);
        let mut fre = c0;
        self.encrypt_block(&mut fre);
        out.push(fre[0] ^ prefix[BLOCK - 2]);
        out.push(fre[1] ^ prefix[BLOCK - 1]);
        // Resync: the IV is now ciphertext bytes 2..18.
        let mut iv = [0u8; BLOCK];
        iv.copy_from_slice(&out[start + 2..start + PREFIX_LEN]);
        for chunk in plain.chunks(BLOCK) {
            self.encrypt_block(&mut iv);
            let n = chunk.len();
            for i in 0..n {
                iv[i] ^= chunk[i];
            }
            out.extend_from_slice(&iv[..n]);
        }
    }

    /// Decrypts a tag 9 body: checks the quick-check bytes, returns the plaintext after the
    /// prefix. Call `distinct_inputs` first: decrypting a body that fails it reveals a
    /// structure its author planted.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CfbError> {
        if data.len() < PREFIX_LEN {
            return Err(CfbError::Truncated);
        }
        let mut p0 = [0u8; BLOCK];
        self.encrypt_block(&mut p0);
        for i in 0..BLOCK {
            p0[i] ^= data[i];
        }
        let mut fre = [0u8; BLOCK];
        fre.copy_from_slice(&data[..BLOCK]);
        self.encrypt_block(&mut fre);
        if fre[0] ^ data[BLOCK] != p0[BLOCK - 2] || fre[1] ^ data[BLOCK + 1] != p0[BLOCK - 1] {
            return Err(CfbError::QuickCheck);
        }
        // Plain CFB with IV = data[2..18]: keystream block i = E(ciphertext block i-1).
        // Every such block is known up front, so batches of them go through AES-NI at once,
        // and the XOR runs on whole 16-byte words.
        const BATCH: usize = 64;
        let ct = &data[PREFIX_LEN..];
        let mut plain = ct.to_vec();
        let nblocks = ct.len().div_ceil(BLOCK);
        let mut ks = [GenericArray::<u8, aes::cipher::consts::U16>::default(); BATCH];
        let mut block = 0;
        while block < nblocks {
            let n = BATCH.min(nblocks - block);
            for (j, k) in ks[..n].iter_mut().enumerate() {
                let i = block + j;
                let prev = if i == 0 { &data[2..PREFIX_LEN] } else { &ct[(i - 1) * BLOCK..i * BLOCK] };
                k.copy_from_slice(prev);
            }
            self.encrypt_blocks(&mut ks[..n]);
            let span = &mut plain[block * BLOCK..((block + n) * BLOCK).min(ct.len())];
            let whole = span.len() / BLOCK;
            let mut words = span.chunks_exact_mut(BLOCK);
            for (w, k) in (&mut words).zip(ks.iter()) {
                let x = u128::from_ne_bytes((&*w).try_into().expect("16 bytes"))
                    ^ u128::from_ne_bytes(k[..].try_into().expect("16 bytes"));
                w.copy_from_slice(&x.to_ne_bytes());
            }
            let tail = words.into_remainder();
            if !tail.is_empty() {
                let k = &ks[whole];
                for (b, kb) in tail.iter_mut().zip(k.iter()) {
                    *b ^= kb;
                }
            }
            block += n;
        }
        Ok(plain)
    }
}

/// The anti-tagging check on a tag 9 body (D6, `doc/protocol.md` "Tagging the unverified
/// tail"): `Ok` when the 16-byte blocks that decryption feeds into AES are all distinct.
///
/// CFB decrypts block j as AES_k(C[j-1]) XOR C[j]. If two inputs are equal, two revealed
/// blocks are masked by the same pad and their XOR is the XOR of ciphertext blocks the
/// attacker chose: a mark that survives the layer. With all inputs distinct, every revealed
/// block is masked by its own pseudo-random pad, whatever the attacker wrote. The inputs are
/// the zero IV, the first block, bytes 2..18 (the resync IV), then every ciphertext block
/// after the prefix but the last, which feeds nothing. An honest body repeats one with
/// probability about n²/2^129, 2^-107 for a layer.
///
/// Cost: one pass through an open-addressing table (linear in the about 1 920 inputs;
/// measured beside the peel in `benches/layer.rs`). The table's hash is keyed with a random
/// secret per process, so an attacker cannot choose inputs that all fall into one slot and
/// make the check quadratic; equal hashes are always compared in full, so the key never
/// decides the verdict.
pub fn distinct_inputs(data: &[u8]) -> Result<(), CfbError> {
    static KEY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    if data.len() < PREFIX_LEN {
        return Err(CfbError::Truncated);
    }
    let block = |b: &[u8]| u128::from_le_bytes(b.try_into().expect("16 bytes"));
    let ct = &data[PREFIX_LEN..];
    let fed = ct.len().div_ceil(BLOCK).saturating_sub(1);
    let mut inputs: Vec<u128> = Vec::with_capacity(3 + fed);
    inputs.extend([0, block(&data[..BLOCK]), block(&data[2..PREFIX_LEN])]);
    inputs.extend(ct.chunks_exact(BLOCK).take(fed).map(block));
    // At most half full: short probe runs.
    let bits = (2 * inputs.len()).next_power_of_two().trailing_zeros();
    let mask = (1usize << bits) - 1;
    let mut table = vec![0u32; 1 << bits];
    let &(k1, k2) = KEY.get_or_init(|| (rand::random::<u64>() | 1, rand::random::<u64>() | 1));
    for (i, &x) in inputs.iter().enumerate() {
        let h = (x as u64).wrapping_mul(k1) ^ ((x >> 64) as u64).wrapping_mul(k2);
        let mut slot = (h >> (64 - bits)) as usize;
        loop {
            match table[slot] {
                0 => {
                    table[slot] = i as u32 + 1;
                    break;
                }
                j if inputs[j as usize - 1] == x => return Err(CfbError::RepeatedInput),
                _ => slot = (slot + 1) & mask,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(algo in 7u8..10, key in proptest::collection::vec(any::<u8>(), 32), prefix in any::<[u8; 16]>(), plain in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let klen = match algo { 7 => 16, 8 => 24, _ => 32 };
            let c = Cipher::new(algo, &key[..klen]).unwrap();
            let mut out = Vec::new();
            c.encrypt(&prefix, &plain, &mut out);
            prop_assert_eq!(out.len(), PREFIX_LEN + plain.len());
            prop_assert_eq!(c.decrypt(&out).unwrap(), plain);
        }

        #[test]
        fn flipped_bit_changes_exactly_two_blocks(plain in proptest::collection::vec(any::<u8>(), 64..512), pos in 0usize..10000, bit in 0u8..8) {
            let c = Cipher::new(9, &[3u8; 32]).unwrap();
            let mut out = Vec::new();
            c.encrypt(&[9u8; 16], &plain, &mut out);
            let pos = PREFIX_LEN + pos % plain.len();
            out[pos] ^= 1 << bit;
            let got = c.decrypt(&out).unwrap();
            let rel = pos - PREFIX_LEN;
            for i in 0..plain.len() {
                // CFB: the flipped byte itself, then the whole next block, are damaged.
                let blk = rel / 16;
                let damaged = i == rel || i / 16 == blk + 1;
                if !damaged { prop_assert_eq!(got[i], plain[i]); }
            }
            prop_assert_ne!(got[rel], plain[rel]);
        }
    }

    /// Why the check exists: one cipher block copied over another on the grid leaves no
    /// duplicate after decryption, yet two revealed blocks then XOR to a value the attacker
    /// chose, C[a+1] XOR C[b+1], without knowing the key. `distinct_inputs` refuses it.
    #[test]
    fn a_copied_block_is_a_handle_after_decryption_and_the_check_refuses_it() {
        let c = Cipher::new(9, &[0x5au8; 32]).unwrap();
        let plain: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut out = Vec::new();
        c.encrypt(&[3u8; 16], &plain, &mut out);
        let at = |i: usize| PREFIX_LEN + 16 * i;
        let (a, b) = (100, 200);
        let mut tagged = out.clone();
        tagged.copy_within(at(a)..at(a + 1), at(b));
        let revealed = c.decrypt(&tagged).unwrap();
        let xor = |x: &[u8], y: &[u8]| x.iter().zip(y).map(|(p, q)| p ^ q).collect::<Vec<u8>>();
        let handle = xor(&tagged[at(a + 1)..at(a + 2)], &tagged[at(b + 1)..at(b + 2)]);
        assert_eq!(xor(&revealed[16 * (a + 1)..16 * (a + 2)], &revealed[16 * (b + 1)..16 * (b + 2)]), handle);
        assert_eq!(distinct_inputs(&tagged), Err(CfbError::RepeatedInput));
    }

    #[test]
    fn distinct_inputs_covers_the_whole_grid_and_nothing_else() {
        let c = Cipher::new(9, &[7u8; 32]).unwrap();
        let mut out = Vec::new();
        c.encrypt(&[1u8; 16], &[0u8; 1000], &mut out);
        assert_eq!(distinct_inputs(&out), Ok(()));
        let blk = |i: usize| PREFIX_LEN + 16 * i..PREFIX_LEN + 16 * (i + 1);
        let nblocks = (out.len() - PREFIX_LEN).div_ceil(16);
        // Any two fed blocks equal: the first and the last fed one, two neighbours.
        for (a, b) in [(0, nblocks - 2), (10, 11), (30, 5)] {
            let mut t = out.clone();
            t.copy_within(blk(a), blk(b).start);
            assert_eq!(distinct_inputs(&t), Err(CfbError::RepeatedInput), "blocks {a} and {b}");
        }
        // A ciphertext block equal to the resync IV (bytes 2..18), to the first block, or
        // to the zero IV.
        for (what, value) in [
            ("resync IV", out[2..PREFIX_LEN].to_vec()),
            ("first block", out[..16].to_vec()),
            ("zero IV", vec![0u8; 16]),
        ] {
            let mut t = out.clone();
            t[blk(20)].copy_from_slice(&value);
            assert_eq!(distinct_inputs(&t), Err(CfbError::RepeatedInput), "{what}");
        }
        // The last block feeds nothing into AES (1000 bytes end in a partial block, so
        // the last whole block fed is nblocks - 2).
        let mut t = out.clone();
        let last = blk(nblocks - 1).start;
        let n = out.len() - last;
        t.copy_within(blk(3).start..blk(3).start + n, last);
        assert_eq!(distinct_inputs(&t), Ok(()));
        assert_eq!(distinct_inputs(&out[..10]), Err(CfbError::Truncated));
        assert_eq!(distinct_inputs(&out[..PREFIX_LEN]), Ok(()));
    }

    /// Blocks made to look alike (equal low halves, high halves differing in few bits, all
    /// zero): exact comparison decides, whatever the hash does with them.
    #[test]
    fn crafted_lookalike_blocks_are_judged_exactly() {
        let mut data = vec![0u8; PREFIX_LEN];
        data[0] = 1;
        data[5] = 2;
        for i in 0..1900u64 {
            let x = (u128::from(i) << 64) | 0x4141_4141_4141_4141;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.extend_from_slice(&[9u8; 16]);
        assert_eq!(distinct_inputs(&data), Ok(()));
        let copy: [u8; 16] = data[PREFIX_LEN + 16 * 7..PREFIX_LEN + 16 * 8].try_into().unwrap();
        data[PREFIX_LEN + 16 * 1500..PREFIX_LEN + 16 * 1501].copy_from_slice(&copy);
        assert_eq!(distinct_inputs(&data), Err(CfbError::RepeatedInput));
    }

    #[test]
    fn wrong_key_fails_quick_check_mostly() {
        let c = Cipher::new(9, &[1u8; 32]).unwrap();
        let mut out = Vec::new();
        c.encrypt(&[5u8; 16], b"hello", &mut out);
        let wrong = Cipher::new(9, &[2u8; 32]).unwrap();
        // 1 in 65536 wrong keys pass the quick check; this fixed one does not.
        assert_eq!(wrong.decrypt(&out).unwrap_err(), CfbError::QuickCheck);
        assert_eq!(c.decrypt(&out[..10]).unwrap_err(), CfbError::Truncated);
        assert!(matches!(Cipher::new(2, &[0; 24]), Err(CfbError::UnsupportedAlgorithm(2))));
        assert!(matches!(Cipher::new(9, &[0; 16]), Err(CfbError::KeyLength)));
    }
}
