//! SHA-1, the one helper for it: the Verification hash (D6) and WKD's local-part hash.
//!
//! OpenSSL's (issue 18), the library of the session key's X25519. It picks its code at
//! run time: the SHA extensions (`sha_ni`) where the CPU has them, AVX2 or SSSE3 code with a
//! vectorised message schedule otherwise; the `OPENSSL_ia32cap` variable masks CPU features,
//! which is how `benches/layer.rs` times a CPU without SHA extensions on one that has them.
//! Measured on the bench machine (20 KiB, µs): OpenSSL 10.8 with `sha_ni`, 16.8 without;
//! Nettle 11.6 and 24.9; the `sha1` crate used before 10.6 and 24.6 (its portable code; its
//! `asm` feature does nothing in 0.10.7). See doc/protocol.md, "Cost of a layer".

/// Bytes of a SHA-1 digest.
pub const LEN: usize = 20;

/// SHA-1 of `data`.
pub fn digest(data: &[u8]) -> [u8; LEN] {
    openssl::sha::sha1(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; LEN]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fips_180_vectors() {
        assert_eq!(hex(digest(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(digest(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            hex(digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // A million 'a's: many blocks, as the 20 KiB window is.
        assert_eq!(hex(digest(&vec![b'a'; 1_000_000])), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }
}
