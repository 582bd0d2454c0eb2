//! The Verification line (thesis 6.4.1, D6 step 4): the anti-tagging hash.
//!
//! Every revealed message starts with `Verification: ` + 40 lowercase hex digits + CRLF,
//! the SHA-1 of the next `INNER` bytes. The check is byte-exact on purpose: the field name
//! is not covered by the hash, so any interpretation or repair would be a place to tag.

use crate::format::sizes::INNER;
use crate::util::sha1;

const NAME: &[u8] = b"Verification: ";
/// Length of the whole line, CRLF included.
pub const LINE_LEN: usize = NAME.len() + 40 + 2;

/// The 20-byte SHA-1 a Verification line states; also the replay cache key.
pub type Hash = [u8; sha1::LEN];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    #[error("revealed message does not start with an exact Verification line")]
    BadLine,
    #[error("revealed message is shorter than the verified window")]
    Short,
    #[error("Verification hash does not match")]
    Mismatch,
}

/// SHA-1 of a window.
pub fn digest(window: &[u8]) -> Hash {
    sha1::digest(window)
}

/// Writes the Verification line for `window` (the `INNER` bytes that follow it).
pub fn write_line(out: &mut Vec<u8>, window: &[u8]) {
    debug_assert_eq!(window.len(), INNER);
    out.extend_from_slice(NAME);
    for b in digest(window) {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // upper case is refused: "exact case"
    }
}

/// Checks a revealed message; returns the stated hash and everything after the line.
pub fn check(revealed: &[u8]) -> Result<(Hash, &[u8]), VerificationError> {
    if revealed.len() < LINE_LEN || !revealed.starts_with(NAME) || &revealed[LINE_LEN - 2..LINE_LEN] != b"\r\n" {
        return Err(VerificationError::BadLine);
    }
    let hex = &revealed[NAME.len()..NAME.len() + 40];
    let mut stated = [0u8; 20];
    for (i, pair) in hex.chunks(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(VerificationError::BadLine)?;
        let lo = hex_val(pair[1]).ok_or(VerificationError::BadLine)?;
        stated[i] = hi << 4 | lo;
    }
    let rest = &revealed[LINE_LEN..];
    if rest.len() < INNER {
        return Err(VerificationError::Short);
    }
    if digest(&rest[..INNER]) != stated {
        return Err(VerificationError::Mismatch);
    }
    Ok((stated, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let window: Vec<u8> = (0..INNER).map(|i| (i * 7 % 251) as u8).collect();
        let mut m = Vec::new();
        write_line(&mut m, &window);
        m.extend_from_slice(&window);
        m.extend_from_slice(b"unverified tail");
        m
    }

    #[test]
    fn good_line_passes() {
        let m = sample();
        let (h, rest) = check(&m).unwrap();
        assert_eq!(h, digest(&m[LINE_LEN..LINE_LEN + INNER]));
        assert!(rest.ends_with(b"unverified tail"));
    }

    #[test]
    fn strictness() {
        let m = sample();
        // Upper-case hex, other field case, extra space, LF only, folded line: all refused.
        let mut upper = m.clone();
        upper[NAME.len()..NAME.len() + 40].make_ascii_uppercase();
        if upper != m {
            assert_eq!(check(&upper).unwrap_err(), VerificationError::BadLine);
        }
        let mut case = m.clone();
        case[0] = b'v';
        assert_eq!(check(&case).unwrap_err(), VerificationError::BadLine);
        let mut spaced = b"Verification:  ".to_vec();
        spaced.extend_from_slice(&m[NAME.len()..]);
        assert_eq!(check(&spaced).unwrap_err(), VerificationError::BadLine);
        let mut lf = m.clone();
        lf.remove(LINE_LEN - 2);
        assert_eq!(check(&lf).unwrap_err(), VerificationError::BadLine);
        assert_eq!(check(&m[..LINE_LEN + 100]).unwrap_err(), VerificationError::Short);
        let mut flipped = m.clone();
        flipped[LINE_LEN + INNER - 1] ^= 1;
        assert_eq!(check(&flipped).unwrap_err(), VerificationError::Mismatch);
        // The tail after the window is not covered.
        let mut tail = m.clone();
        let n = tail.len();
        tail[n - 1] ^= 1;
        assert!(check(&tail).is_ok());
    }
}
