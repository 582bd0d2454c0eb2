//! ASCII armor (RFC 4880 §6): the wire body of every mix message (D5).
//!
//! Written as `BEGIN PGP MESSAGE`, no armor headers (no `Version:`: it would name the
//! software), 64-character lines and the CRC24 checksum. Read leniently as to line ends and
//! whitespace, strictly as to base64 and checksum.

use base64_simd::STANDARD as B64;

const BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
const END: &str = "-----END PGP MESSAGE-----";
/// The labels read: ours, and the one GnuPG writes for `--store`/`--enarmor` output
/// (D5 accepts GnuPG's labels). Keys and signatures are never a mix message.
const LABELS: [&str; 2] = ["MESSAGE", "ARMORED FILE"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArmorError {
    #[error("no armored PGP message (or GnuPG armored file) found")]
    NoArmor,
    #[error("armor has no END line")]
    Unterminated,
    #[error("armor body is not base64")]
    Base64,
    #[error("armor checksum is malformed")]
    BadChecksumLine,
    #[error("armor checksum does not match")]
    ChecksumMismatch,
}

/// CRC-24 as RFC 4880 §6.1 defines it (CRC-24/OPENPGP). A bitwise loop cost 200 µs per
/// wire body, sixteen bytes at a time by table about 8, folding with carry-less multiplication
/// (`clmul`, where the CPU has it) about 2; a peel computes it twice.
pub fn crc24(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= clmul::MIN_LEN
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("ssse3")
    {
        // SAFETY: the CPU has PCLMULQDQ and SSSE3 (and SSE2, part of x86_64).
        return unsafe { clmul::crc24(data) };
    }
    crc24_table(data, crc::CRC_24_OPENPGP.init)
}

/// CRC-24/OPENPGP from register value `init`, sixteen bytes at a time by table.
fn crc24_table(data: &[u8], init: u32) -> u32 {
    const CRC24: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_24_OPENPGP);
    let mut d = CRC24.digest_with_initial(init);
    d.update(data);
    d.finalize()
}

/// CRC-24 by folding (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
/// 2009), in the plain polynomial arithmetic of an MSB-first CRC: bit i of a `u128` read
/// big-endian is the coefficient of x^i. Four 128-bit lanes are each multiplied forward by
/// x^512 mod P and added to the next 64 bytes, then folded into one; that one and the tail are
/// left to the table with register 0. All of it modulo P·x^8, so that the 24-bit CRC stays in
/// the top of a 32-bit remainder and the constants fit a 64-bit multiply.
#[cfg(target_arch = "x86_64")]
mod clmul {
    use std::arch::x86_64::{
        __m128i, _mm_clmulepi64_si128, _mm_loadu_si128, _mm_set_epi64x, _mm_set_epi8, _mm_shuffle_epi8,
        _mm_storeu_si128, _mm_xor_si128,
    };

    /// Below this the table is as fast.
    pub const MIN_LEN: usize = 256;
    /// P·x^8, with its x^32 term.
    const P: u64 = (0x100_0000 | 0x86_4CFB) << 8;

    /// x^k mod P.
    const fn xpow(k: u32) -> u64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < k {
            r <<= 1;
            if r & (1 << 32) != 0 {
                r ^= P;
            }
            i += 1;
        }
        r
    }

    /// (high, low) multipliers that carry a 128-bit lane `bits` further along the message.
    const fn fold(bits: u32) -> (u64, u64) {
        (xpow(bits + 64), xpow(bits))
    }
    const BY_512: (u64, u64) = fold(512);
    const BY_128: (u64, u64) = fold(128);

    /// The multipliers in one register, high one in the high half.
    #[target_feature(enable = "sse2")]
    fn multipliers((hi, lo): (u64, u64)) -> __m128i {
        _mm_set_epi64x(hi as i64, lo as i64)
    }

    /// `x` times x^bits mod P, up to 96 bits: equal to x moved `bits` along, modulo P. The
    /// lanes stay in registers: the version that went through `u128` was half as fast.
    #[target_feature(enable = "pclmulqdq")]
    fn advance(x: __m128i, by: __m128i) -> __m128i {
        _mm_xor_si128(_mm_clmulepi64_si128::<0x00>(x, by), _mm_clmulepi64_si128::<0x11>(x, by))
    }

    /// 16 bytes as a lane: the register holds `u128::from_be_bytes(b)`.
    #[target_feature(enable = "ssse3")]
    fn block(b: &[u8]) -> __m128i {
        let b: &[u8; 16] = b.try_into().expect("16 bytes");
        // SAFETY: `b` is 16 readable bytes; the load is unaligned.
        let x = unsafe { _mm_loadu_si128(b.as_ptr().cast()) };
        _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
    }

    /// `super::crc24` for `data.len() >= MIN_LEN`.
    #[target_feature(enable = "pclmulqdq,ssse3")]
    pub fn crc24(data: &[u8]) -> u32 {
        debug_assert!(data.len() >= MIN_LEN);
        let (body, tail) = data.split_at(data.len() / 64 * 64);
        let mut chunks = body.chunks_exact(64);
        let first = chunks.next().expect("at least 64 bytes");
        // The register's start value, moved to the message's first 32 bits.
        let init = _mm_set_epi64x(i64::from(crc::CRC_24_OPENPGP.init << 8) << 32, 0);
        let mut lane = [
            _mm_xor_si128(block(&first[..16]), init),
            block(&first[16..32]),
            block(&first[32..48]),
            block(&first[48..]),
        ];
        let by_512 = multipliers(BY_512);
        for c in chunks {
            for (j, l) in lane.iter_mut().enumerate() {
                *l = _mm_xor_si128(advance(*l, by_512), block(&c[16 * j..16 * j + 16]));
            }
        }
        let by_128 = multipliers(BY_128);
        let mut x = lane[0];
        for l in &lane[1..] {
            x = _mm_xor_si128(advance(x, by_128), *l);
        }
        let mut le = [0u8; 16];
        // SAFETY: `le` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(le.as_mut_ptr().cast(), x) };
        let mut rest = [0u8; 16 + 63];
        rest[..16].copy_from_slice(&u128::from_le_bytes(le).to_be_bytes());
        rest[16..16 + tail.len()].copy_from_slice(tail);
        super::crc24_table(&rest[..16 + tail.len()], 0)
    }
}

/// Exact length of `encode(data)` for `n` bytes of data.
pub fn encoded_len(n: usize) -> usize {
    let b64 = n.div_ceil(3) * 4;
    BEGIN.len() + 2 + b64 + b64.div_ceil(64) + 6 + END.len() + 1
}

/// Armors `data` with `\n` line ends (what sendmail expects on its input).
pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(encoded_len(data.len()));
    encode_into(&mut out, data);
    String::from_utf8(out).expect("armor is ASCII")
}

/// Appends the armor of `data` to `out` (reserve `encoded_len` first to avoid regrowing).
pub fn encode_into(out: &mut Vec<u8>, data: &[u8]) {
    let b64 = B64.encode_to_string(data);
    out.extend_from_slice(BEGIN.as_bytes());
    out.extend_from_slice(b"\n\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'=');
    out.extend_from_slice(B64.encode_to_string(&crc24(data).to_be_bytes()[1..]).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(END.as_bytes());
    out.push(b'\n');
}

/// The lines of `text`, split at `\n` exactly as `text.split(|&b| b == b'\n')` splits it,
/// but a line of armor's own length (64 characters, then LF or CRLF) is found by a look at
/// its end and a word-wise `contains`, not byte by byte: the bytewise split was two thirds of
/// a de-armoring (profile of benches/layer.rs, issue 18).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    const ARMOR_LINE: usize = 64;
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        let short = |n: usize| r.get(n) == Some(&b'\n') && !r[..n].contains(&b'\n');
        let end = if short(ARMOR_LINE) {
            Some(ARMOR_LINE)
        } else if short(ARMOR_LINE + 1) {
            Some(ARMOR_LINE + 1)
        } else {
            r.iter().position(|&b| b == b'\n')
        };
        Some(match end {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                rest = None;
                r
            }
        })
    })
}

/// Finds the first armored message in `text` and returns its binary content.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, ArmorError> {
    match decode_canonical(text) {
        Some(data) => Ok(data),
        None => decode_lines(text),
    }
}

/// Length of a full armor line, end of line not counted.
const LINE: usize = 64;

/// `decode` for exactly what `encode` writes (LF or CRLF line ends), as every mix writes it:
/// the data lines are cut at their known length instead of searched for line ends (a search
/// per line was a third of a de-armoring, issue 18). Anything else, including a wrong
/// checksum, gives `None` and is left to `decode_lines`, so `decode` answers as if only that
/// existed: a line of another length, or any byte out of place, puts a byte that is not
/// base64 into the joined data or breaks the fixed tail, and the decoding here fails.
fn decode_canonical(text: &[u8]) -> Option<Vec<u8>> {
    let eol: &[u8] = if text.get(BEGIN.len()) == Some(&b'\r') { b"\r\n" } else { b"\n" };
    let mut r = text.strip_prefix(BEGIN.as_bytes())?.strip_prefix(eol)?.strip_prefix(eol)?;
    let mut joined = Vec::with_capacity(r.len());
    // A line end within the 64 bytes: the shorter last line. The count compiles to a few
    // vector compares, where `contains` was a call to memchr per line.
    let no_lf = |l: &[u8]| l.iter().fold(0u8, |n, &b| n | u8::from(b == b'\n')) == 0;
    while r.len() > LINE + eol.len() && &r[LINE..LINE + eol.len()] == eol && no_lf(&r[..LINE]) {
        joined.extend_from_slice(&r[..LINE]);
        r = &r[LINE + eol.len()..];
    }
    // The last, shorter data line (none when the data is a multiple of 48 bytes).
    if r.first() != Some(&b'=') {
        let n = r.iter().position(|&b| b == b'\n')? + 1;
        joined.extend_from_slice(r[..n].strip_suffix(eol)?);
        r = &r[n..];
    }
    let crc = r.strip_prefix(b"=")?.get(..4)?;
    let end = r[5..].strip_prefix(eol)?.strip_prefix(END.as_bytes())?;
    if !(end.is_empty() || end.starts_with(eol)) {
        return None;
    }
    let data = B64.decode_to_vec(&joined).ok()?;
    let crc = B64.decode_to_vec(crc).ok()?;
    (crc.len() == 3 && u32::from_be_bytes([0, crc[0], crc[1], crc[2]]) == crc24(&data)).then_some(data)
}

/// `decode` line by line: any line ends, armor headers, whitespace around lines, GnuPG's
/// labels, no checksum.
fn decode_lines(text: &[u8]) -> Result<Vec<u8>, ArmorError> {
    let mut lines = lines(text).map(|l| l.trim_ascii());
    let label = lines
        .by_ref()
        .find_map(|l| {
            let label = l.strip_prefix(b"-----BEGIN PGP ")?.strip_suffix(b"-----")?;
            LABELS.iter().find(|x| x.as_bytes() == label)
        })
        .ok_or(ArmorError::NoArmor)?;
    let end = format!("-----END PGP {label}-----");
    // Armor headers ("Key: value") run to the first blank line.
    let mut body_lines = Vec::new();
    let mut in_headers = true;
    let mut checksum = None;
    let mut ended = false;
    for line in lines {
        if line == end.as_bytes() {
            ended = true;
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
                continue;
            }
            if line.windows(2).any(|w| w == b": ") {
                continue;
            }
            // No blank line after BEGIN: the body started right away.
            in_headers = false;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(crc) = line.strip_prefix(b"=") {
            checksum = Some(crc.to_vec());
            continue;
        }
        if checksum.is_some() {
            // Body data after the checksum line.
            return Err(ArmorError::BadChecksumLine);
        }
        body_lines.push(line);
    }
    if !ended {
        return Err(ArmorError::Unterminated);
    }
    let joined: Vec<u8> = body_lines.concat();
    let data = B64.decode_to_vec(&joined).map_err(|_| ArmorError::Base64)?;
    if let Some(crc) = checksum {
        let crc = B64.decode_to_vec(&crc).map_err(|_| ArmorError::BadChecksumLine)?;
        if crc.len() != 3 {
            return Err(ArmorError::BadChecksumLine);
        }
        let want = u32::from_be_bytes([0, crc[0], crc[1], crc[2]]);
        if want != crc24(&data) {
            return Err(ArmorError::ChecksumMismatch);
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), crlf: bool) {
            let mut text = encode(&data);
            if crlf { text = text.replace('\n', "\r\n"); }
            prop_assert_eq!(decode(text.as_bytes()).unwrap(), data);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut text = format!("{BEGIN}\n\n").into_bytes();
            text.extend_from_slice(&bytes);
            let _ = decode(&text);
        }
    }

    proptest! {
        #[test]
        fn table_crc_equals_bitwise(data in proptest::collection::vec(any::<u8>(), 0..300), skip in 0usize..9) {
            let data = &data[skip.min(data.len())..];
            let mut crc: u32 = 0xB7_04CE;
            for &b in data {
                crc ^= (b as u32) << 16;
                for _ in 0..8 {
                    crc <<= 1;
                    if crc & 0x100_0000 != 0 { crc ^= 0x186_4CFB; }
                }
            }
            prop_assert_eq!(crc24(data), crc & 0xFF_FFFF);
        }

        /// The folding path (long inputs) against the table, every tail length.
        #[test]
        fn folded_crc_equals_table(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(crc24(&data), crc24_table(&data, crc::CRC_24_OPENPGP.init));
        }
    }

    proptest! {
        #[test]
        fn lines_split_like_split(parts in proptest::collection::vec((0usize..70, any::<bool>(), any::<bool>()), 0..12), tail in 0usize..70) {
            let mut text = Vec::new();
            for (n, cr, lf) in parts {
                text.extend(std::iter::repeat_n(b'a', n));
                if cr { text.push(b'\r'); }
                if lf { text.push(b'\n'); }
            }
            text.extend(std::iter::repeat_n(b'b', tail));
            let ours: Vec<&[u8]> = lines(&text).collect();
            let std: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            prop_assert_eq!(ours, std);
        }
    }

    proptest! {
        /// The canonical reader answers as the line reader or leaves the text to it, whatever
        /// an adversary changes in a well-formed armor: bytes flipped to line ends, `=`,
        /// `-`, whitespace or any value, bytes cut out or put in.
        #[test]
        fn canonical_agrees_with_lines(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            crlf: bool,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 0..4),
        ) {
            let mut text = encode(&data).into_bytes();
            if crlf {
                text = String::from_utf8(text).unwrap().replace('\n', "\r\n").into_bytes();
            }
            let pick = [b'\n', b'\r', b'=', b'-', b' ', b'A'];
            for (at, op, v) in edits {
                let i = at.index(text.len());
                match op {
                    0 => text[i] = pick[v as usize % pick.len()],
                    1 => text[i] = v,
                    2 => { text.remove(i); }
                    _ => text.insert(i, pick[v as usize % pick.len()]),
                }
            }
            if let Some(fast) = decode_canonical(&text) {
                prop_assert_eq!(Ok(fast), decode_lines(&text));
            }
        }

        /// Every armor `encode` writes takes the canonical path.
        #[test]
        fn encoded_armor_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..2000), crlf: bool, trailer: bool) {
            let mut text = encode(&data);
            if crlf { text = text.replace('\n', "\r\n"); }
            if trailer { text.push_str("\n-- \nsignature\n"); }
            prop_assert_eq!(decode_canonical(text.as_bytes()), Some(data));
        }
    }

    #[test]
    fn crc24_of_known_input() {
        // The CRC of "123456789" under RFC 4880's parameters.
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"hello"), Err(ArmorError::NoArmor));
        assert_eq!(decode(format!("{BEGIN}\n\nAAAA\n").as_bytes()), Err(ArmorError::Unterminated));
        assert_eq!(decode(format!("{BEGIN}\n\nA*AA\n{END}\n").as_bytes()), Err(ArmorError::Base64));
        let good = encode(b"some bytes to protect");
        let bad_crc = good.replace(&good[good.find("\n=").unwrap() + 1..good.find("\n=").unwrap() + 6], "=AAAA");
        assert_eq!(decode(bad_crc.as_bytes()), Err(ArmorError::ChecksumMismatch));
        // A changed body character is caught by the checksum.
        let mut flipped = good.into_bytes();
        let i = BEGIN.len() + 3;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        assert!(decode(&flipped).is_err());
    }

    /// GnuPG's `--store --armor`/`--enarmor` label and armor headers are read; a key block
    /// is not a message, and the END line must match the BEGIN line's label.
    #[test]
    fn gnupg_labels_and_armor_headers() {
        let data = b"a layer".to_vec();
        let ours = encode(&data);
        let file = ours.replace("PGP MESSAGE", "PGP ARMORED FILE").replacen(
            "\n\n",
            "\nComment: Use \"gpg --dearmor\" for unpacking\nVersion: GnuPG v2\n\n",
            1,
        );
        assert_eq!(decode(file.as_bytes()).unwrap(), data);
        let key = ours.replace("PGP MESSAGE", "PGP PUBLIC KEY BLOCK");
        assert_eq!(decode(key.as_bytes()), Err(ArmorError::NoArmor));
        let mixed = ours.replacen("BEGIN PGP MESSAGE", "BEGIN PGP ARMORED FILE", 1);
        assert!(decode(mixed.as_bytes()).is_err(), "END must match BEGIN");
    }

    #[test]
    fn encoded_len_is_exact() {
        for n in [0, 1, 2, 3, 47, 48, 49, 30720] {
            assert_eq!(encode(&vec![0u8; n]).len(), encoded_len(n), "n = {n}");
        }
    }

    #[test]
    fn no_version_header_and_line_length() {
        let text = encode(&[0u8; 1000]);
        assert!(!text.contains("Version"));
        assert!(text.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }
}
