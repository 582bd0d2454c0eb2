//! OpenPGP packet framing (RFC 4880 §4.2): headers in every length form, nothing else.
//!
//! Mixtasy writes old-format headers for the layer (PKESK with a two-octet length, SED and
//! literal with indeterminate length, D4) and a new-format five-octet length for the final
//! literal (D2). It must *read* whatever GnuPG emits as well: old-format definite packets from
//! a file, new-format partial bodies from stdin. Packet bodies are left to their own modules.

use std::borrow::Cow;

/// Why a byte string is not a packet. Every variant names the field that was bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("truncated packet: input ends inside the {0}")]
    Truncated(&'static str),
    #[error("malformed packet: bad {0}")]
    Malformed(&'static str),
}

/// The length a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// Exactly this many bytes follow.
    Definite(u32),
    /// A chunk of `2^k` bytes follows, then another length (new format only).
    Partial(u32),
    /// The body runs to the end of the input (old format only).
    Indeterminate,
}

/// A parsed packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    pub new_format: bool,
    pub len: BodyLen,
}

/// One packet cut out of its input: the tag, the body with partial chunks joined, and
/// the bytes that follow it.
#[derive(Debug)]
pub struct Packet<'a> {
    pub tag: u8,
    pub body: Cow<'a, [u8]>,
    pub rest: &'a [u8],
}

fn take<'a>(input: &'a [u8], n: usize, what: &'static str) -> Result<(&'a [u8], &'a [u8]), FramingError> {
    if input.len() < n {
        return Err(FramingError::Truncated(what));
    }
    Ok(input.split_at(n))
}

/// Reads a new-format length (RFC 4880 §4.2.2); `first` is its first octet.
fn new_len(first: u8, input: &[u8]) -> Result<(BodyLen, &[u8]), FramingError> {
    Ok(match first {
        0..=191 => (BodyLen::Definite(first as u32), input),
        192..=223 => {
            let (b, rest) = take(input, 1, "two-octet length")?;
            (BodyLen::Definite((((first as u32) - 192) << 8) + b[0] as u32 + 192), rest)
        }
        224..=254 => (BodyLen::Partial(1 << (first & 0x1f)), input),
        255 => {
            let (b, rest) = take(input, 4, "five-octet length")?;
            (BodyLen::Definite(u32::from_be_bytes([b[0], b[1], b[2], b[3]])), rest)
        }
    })
}

/// Parses one header and returns it with the input that follows it.
pub fn parse_header(input: &[u8]) -> Result<(Header, &[u8]), FramingError> {
    let (ctb, rest) = take(input, 1, "packet tag")?;
    let ctb = ctb[0];
    if ctb & 0x80 == 0 {
        return Err(FramingError::Malformed("packet tag (bit 7 clear)"));
    }
    if ctb & 0x40 != 0 {
        let tag = ctb & 0x3f;
        let (l, rest) = take(rest, 1, "length")?;
        let (len, rest) = new_len(l[0], rest)?;
        return Ok((Header { tag, new_format: true, len }, rest));
    }
    let tag = (ctb >> 2) & 0x0f;
    let (len, rest) = match ctb & 0x03 {
        0 => {
            let (b, rest) = take(rest, 1, "one-octet length")?;
            (BodyLen::Definite(b[0] as u32), rest)
        }
        1 => {
            let (b, rest) = take(rest, 2, "two-octet length")?;
            (BodyLen::Definite(u16::from_be_bytes([b[0], b[1]]) as u32), rest)
        }
        2 => {
            let (b, rest) = take(rest, 4, "four-octet length")?;
            (BodyLen::Definite(u32::from_be_bytes([b[0], b[1], b[2], b[3]])), rest)
        }
        _ => (BodyLen::Indeterminate, rest),
    };
    Ok((Header { tag, new_format: false, len }, rest))
}

/// Parses one whole packet. Partial bodies are joined into one owned buffer; definite and
/// indeterminate bodies borrow from the input.
pub fn read_packet(input: &[u8]) -> Result<Packet<'_>, FramingError> {
    let (header, rest) = parse_header(input)?;
    match header.len {
        BodyLen::Definite(n) => {
            let (body, rest) = take(rest, n as usize, "packet body")?;
            Ok(Packet { tag: header.tag, body: Cow::Borrowed(body), rest })
        }
        BodyLen::Indeterminate => Ok(Packet { tag: header.tag, body: Cow::Borrowed(rest), rest: &[] }),
        BodyLen::Partial(first) => {
            let mut body = Vec::new();
            let mut chunk = first;
            let mut rest = rest;
            loop {
                let (part, after) = take(rest, chunk as usize, "partial body chunk")?;
                body.extend_from_slice(part);
                let (l, after) = take(after, 1, "partial body length")?;
                let (len, after) = new_len(l[0], after)?;
                rest = after;
                match len {
                    BodyLen::Partial(n) => chunk = n,
                    BodyLen::Definite(n) => {
                        let (last, after) = take(rest, n as usize, "last partial body chunk")?;
                        body.extend_from_slice(last);
                        return Ok(Packet { tag: header.tag, body: Cow::Owned(body), rest: after });
                    }
                    BodyLen::Indeterminate => unreachable!("new-format lengths are never indeterminate"),
                }
            }
        }
    }
}

/// Writes an old-format header. `None` is the indeterminate length (D4); a definite length
/// uses the two-octet form when it fits, as GnuPG does for a PKESK, else four octets.
pub fn write_old_header(out: &mut Vec<u8>, tag: u8, len: Option<u32>) {
    debug_assert!(tag < 16, "old-format tags are four bits");
    let ctb = 0x80 | (tag << 2);
    match len {
        None => out.push(ctb | 3),
        Some(n) if n <= 0xffff => {
            out.push(ctb | 1);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Some(n) => {
            out.push(ctb | 2);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Writes a new-format header with the five-octet length form (D2 uses it for the final
/// literal: a fixed header size keeps the capacity of a final mix message constant).
pub fn write_new_header_five(out: &mut Vec<u8>, tag: u8, len: u32) {
    out.push(0xc0 | tag);
    out.push(0xff);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Writes a new-format packet in the shortest definite length form.
pub fn write_new_packet(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(0xc0 | tag);
    let n = body.len();
    if n < 192 {
        out.push(n as u8);
    } else if n < 8384 {
        let v = n - 192;
        out.push(((v >> 8) + 192) as u8);
        out.push((v & 0xff) as u8);
    } else {
        out.push(0xff);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(body);
}

/// Writes a new-format packet with partial body lengths of `2^chunk_log2` bytes, the
/// framing GnuPG uses for data from a pipe. Used by tests to produce that form.
pub fn write_new_partial(out: &mut Vec<u8>, tag: u8, body: &[u8], chunk_log2: u8) {
    assert!((9..=30).contains(&chunk_log2), "RFC 4880: partial chunks are 512 bytes to 1 GiB");
    out.push(0xc0 | tag);
    let chunk = 1usize << chunk_log2;
    let mut rest = body;
    while rest.len() >= chunk {
        out.push(224 + chunk_log2);
        out.extend_from_slice(&rest[..chunk]);
        rest = &rest[chunk..];
    }
    // The last chunk must be a definite length; write it through the shortest form.
    let mut tail = Vec::new();
    write_new_packet(&mut tail, 0, rest);
    out.extend_from_slice(&tail[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn old_definite_round_trip(tag in 1u8..16, body in proptest::collection::vec(any::<u8>(), 0..70000), trailer in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = Vec::new();
            write_old_header(&mut out, tag, Some(body.len() as u32));
            out.extend_from_slice(&body);
            out.extend_from_slice(&trailer);
            let p = read_packet(&out).unwrap();
            prop_assert_eq!(p.tag, tag);
            prop_assert_eq!(&p.body[..], &body[..]);
            prop_assert_eq!(p.rest, &trailer[..]);
        }

        #[test]
        fn old_indeterminate_swallows_rest(tag in 1u8..16, body in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut out = Vec::new();
            write_old_header(&mut out, tag, None);
            out.extend_from_slice(&body);
            let p = read_packet(&out).unwrap();
            prop_assert_eq!(p.tag, tag);
            prop_assert_eq!(&p.body[..], &body[..]);
            prop_assert!(p.rest.is_empty());
        }

        #[test]
        fn new_definite_round_trip(tag in 1u8..64, body in proptest::collection::vec(any::<u8>(), 0..20000), trailer in proptest::collection::vec(any::<u8>(), 0..8)) {
            for five in [false, true] {
                let mut out = Vec::new();
                if five {
                    write_new_header_five(&mut out, tag, body.len() as u32);
                    out.extend_from_slice(&body);
                } else {
                    write_new_packet(&mut out, tag, &body);
                }
                out.extend_from_slice(&trailer);
                let p = read_packet(&out).unwrap();
                prop_assert_eq!(p.tag, tag);
                prop_assert_eq!(&p.body[..], &body[..]);
                prop_assert_eq!(p.rest, &trailer[..]);
            }
        }

        #[test]
        fn new_partial_round_trip(tag in 1u8..64, body in proptest::collection::vec(any::<u8>(), 0..5000), log2 in 9u8..12, trailer in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = Vec::new();
            write_new_partial(&mut out, tag, &body, log2);
            out.extend_from_slice(&trailer);
            let p = read_packet(&out).unwrap();
            prop_assert_eq!(p.tag, tag);
            prop_assert_eq!(&p.body[..], &body[..]);
            prop_assert_eq!(p.rest, &trailer[..]);
        }

        #[test]
        fn any_prefix_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_packet(&bytes);
        }
    }

    #[test]
    fn boundary_lengths_of_new_format() {
        for n in [0usize, 191, 192, 8383, 8384, 70000] {
            let body = vec![7u8; n];
            let mut out = Vec::new();
            write_new_packet(&mut out, 11, &body);
            let expected_header = if n < 192 {
                2
            } else if n < 8384 {
                3
            } else {
                6
            };
            assert_eq!(out.len(), n + expected_header, "length {n}");
            assert_eq!(read_packet(&out).unwrap().body.len(), n);
        }
    }

    #[test]
    fn truncations_are_named() {
        let mut out = Vec::new();
        write_old_header(&mut out, 1, Some(94));
        out.extend_from_slice(&[0u8; 10]);
        assert_eq!(read_packet(&out).unwrap_err(), FramingError::Truncated("packet body"));
        assert_eq!(read_packet(&[]).unwrap_err(), FramingError::Truncated("packet tag"));
        assert_eq!(read_packet(&[0x41]).unwrap_err(), FramingError::Malformed("packet tag (bit 7 clear)"));
        assert_eq!(read_packet(&[0xcb, 0xff, 0, 0]).unwrap_err(), FramingError::Truncated("five-octet length"));
        // A partial chunk announced but the input ends.
        assert_eq!(read_packet(&[0xc9, 0xe9, 1, 2]).unwrap_err(), FramingError::Truncated("partial body chunk"));
    }

    #[test]
    fn gnupg_pkesk_header_form() {
        // The test vector's PKESK: old format, tag 1, two-octet length 94 (85 00 5e).
        let mut out = Vec::new();
        write_old_header(&mut out, 1, Some(94));
        assert_eq!(out, [0x85, 0x00, 0x5e]);
        let mut out = Vec::new();
        write_old_header(&mut out, 9, None);
        assert_eq!(out, [0xa7]);
        let mut out = Vec::new();
        write_old_header(&mut out, 11, None);
        assert_eq!(out, [0xaf]);
    }
}
