//! Revealed messages: the final mix message (D2) and the intermediate mix message (D3).
//!
//! What a mix sees after one decryption is `Verification line + headers + CRLF + body`.
//! Headers are parsed strictly (one `Name: value` per CRLF line, no folding, known names
//! only) and must lie inside the verified window, so nothing a mix acts on can be tagged.

use std::borrow::Cow;

use rand::RngCore;

use crate::format::packet;
use crate::format::sizes::INNER;
use crate::format::verification;
use crate::mixes::address::MixAddress;

const REMAILER_TYPE: &str = "Mixtasy v1";
/// Literal header of a final mix message: new format, five-octet length, 'b', no name, date 0.
const LITERAL_HEADER_LEN: usize = 6 + 6;
/// The private-use packet (tag 63, length 0) the prototype puts before the inner padding.
const MARKER: [u8; 2] = [0xff, 0x00];

/// The payload type of a final mix message (Mixtasy-Type, with Part for multipart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Singlepart,
    /// Part `part` of `total`, both 1-based.
    Multipart {
        part: u32,
        total: u32,
    },
    Dummy,
}

/// A final mix message, as revealed to the exit.
#[derive(Debug, PartialEq, Eq)]
pub struct Final<'a> {
    pub id: String,
    pub kind: Kind,
    /// The literal's data: borrowed for a definite length, joined for GnuPG's partial
    /// lengths.
    pub payload: Cow<'a, [u8]>,
}

/// An intermediate mix message, as revealed to a middle mix.
#[derive(Debug, PartialEq, Eq)]
pub struct Intermediate<'a> {
    pub from: MixAddress,
    pub to: MixAddress,
    /// The next layer, followed by whatever decrypted padding came along.
    pub body: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Revealed<'a> {
    Intermediate(Intermediate<'a>),
    Final(Final<'a>),
}

/// Why a revealed message (with a good Verification line) is not a valid mix message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("mix message header block does not end inside the verified window")]
    HeaderUnterminated,
    #[error("mix message header line is malformed")]
    HeaderSyntax,
    #[error("mix message has an unknown or repeated header field")]
    HeaderUnknown,
    #[error("mix message has a wrong Remailer-Type")]
    RemailerType,
    #[error("mix message has a bad {0} field")]
    Field(&'static str),
    #[error("mix message lacks the {0} field")]
    Missing(&'static str),
    #[error("final mix message payload is not a literal that ends inside the window")]
    Payload,
}

/// A header block's fields (name, value) and what follows the blank line.
type HeaderBlock<'a> = (Vec<(&'a str, &'a str)>, &'a [u8]);

fn header_block(msg: &[u8]) -> Result<HeaderBlock<'_>, MessageError> {
    let window = &msg[..msg.len().min(INNER)];
    let end = window.windows(4).position(|w| w == b"\r\n\r\n").ok_or(MessageError::HeaderUnterminated)?;
    let block = std::str::from_utf8(&msg[..end]).map_err(|_| MessageError::HeaderSyntax)?;
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for line in block.split("\r\n") {
        let (name, value) = line.split_once(": ").ok_or(MessageError::HeaderSyntax)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(MessageError::HeaderSyntax);
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(MessageError::HeaderSyntax);
        }
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(MessageError::HeaderUnknown);
        }
        fields.push((name, value));
    }
    Ok((fields, &msg[end + 4..]))
}

fn field<'a>(fields: &[(&str, &'a str)], name: &'static str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Mixtasy-ID syntax: `<left@right>`, printable ASCII, no spaces (RFC 5322 msg-id, simplified).
fn valid_id(id: &str) -> bool {
    id.len() <= 250
        && id.starts_with('<')
        && id.ends_with('>')
        && id.bytes().all(|b| b.is_ascii_graphic())
        && id[1..id.len() - 1].split_once('@').is_some_and(|(l, r)| {
            !l.is_empty() && !r.is_empty() && !r.contains('@') && !l.contains(['<', '>']) && !r.contains(['<', '>'])
        })
}

/// Parses what follows a checked Verification line.
pub fn parse(msg: &[u8]) -> Result<Revealed<'_>, MessageError> {
    let (fields, body) = header_block(msg)?;
    if field(&fields, "Remailer-Type") != Some(REMAILER_TYPE) {
        return Err(MessageError::RemailerType);
    }
    let known: &[&str] = if field(&fields, "Mixtasy-Type").is_some() {
        &["Remailer-Type", "Mixtasy-ID", "Mixtasy-Type", "Part"]
    } else {
        &["Remailer-Type", "From", "To"]
    };
    if fields.iter().any(|(n, _)| !known.contains(n)) {
        return Err(MessageError::HeaderUnknown);
    }
    let Some(ty) = field(&fields, "Mixtasy-Type") else {
        let from = field(&fields, "From").ok_or(MessageError::Missing("From"))?;
        let to = field(&fields, "To").ok_or(MessageError::Missing("To"))?;
        let from = MixAddress::parse(from).map_err(|_| MessageError::Field("From"))?;
        let to = MixAddress::parse(to).map_err(|_| MessageError::Field("To"))?;
        return Ok(Revealed::Intermediate(Intermediate { from, to, body }));
    };
    let id = field(&fields, "Mixtasy-ID").ok_or(MessageError::Missing("Mixtasy-ID"))?;
    if !valid_id(id) {
        return Err(MessageError::Field("Mixtasy-ID"));
    }
    let part = field(&fields, "Part");
    let kind = match (ty, part) {
        ("singlepart", None) => Kind::Singlepart,
        ("dummy", None) => Kind::Dummy,
        ("multipart", Some(p)) => {
            let (i, n) = p.split_once('/').ok_or(MessageError::Field("Part"))?;
            let digits =
                |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
            if !digits(i) || !digits(n) {
                return Err(MessageError::Field("Part"));
            }
            let (part, total): (u32, u32) = (i.parse().unwrap(), n.parse().unwrap());
            if part > total {
                return Err(MessageError::Field("Part"));
            }
            Kind::Multipart { part, total }
        }
        ("multipart", None) => return Err(MessageError::Missing("Part")),
        (_, Some(_)) | (_, None) => return Err(MessageError::Field("Mixtasy-Type")),
    };
    let payload = if kind == Kind::Dummy { Cow::Borrowed(&[][..]) } else { literal_payload(msg, body)? };
    Ok(Revealed::Final(Final { id: id.to_string(), kind, payload }))
}

/// Cuts the literal out by its stated length (D2): any RFC 4880 4.2 length form, partial
/// lengths (GnuPG's framing of a literal from a pipe) included, as long as the whole packet
/// ends inside the verified window. An indeterminate length runs past the window: refused.
fn literal_payload<'a>(msg: &'a [u8], body: &'a [u8]) -> Result<Cow<'a, [u8]>, MessageError> {
    let offset = msg.len() - body.len();
    let (h, _) = packet::parse_header(body).map_err(|_| MessageError::Payload)?;
    if h.tag != 11 || h.len == packet::BodyLen::Indeterminate {
        return Err(MessageError::Payload);
    }
    let p = packet::read_packet(body).map_err(|_| MessageError::Payload)?;
    if offset + (body.len() - p.rest.len()) > INNER {
        return Err(MessageError::Payload);
    }
    // format, file name length, file name, four-byte date, then the data.
    let name_len = *p.body.get(1).ok_or(MessageError::Payload)? as usize;
    let data_start = 2 + name_len + 4;
    if p.body.len() < data_start {
        return Err(MessageError::Payload);
    }
    Ok(match p.body {
        Cow::Borrowed(lit) => Cow::Borrowed(&lit[data_start..]),
        Cow::Owned(mut lit) => {
            lit.drain(..data_start);
            Cow::Owned(lit)
        }
    })
}

/// A fresh Mixtasy-ID: 32 random lowercase hex digits (D2).
pub fn new_id(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    format!("<{}@mixtasy>", hex(&b))
}

/// Lowercase hex digits of `bytes`: ids, nonces.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

fn final_headers(id: &str, kind: Kind) -> String {
    let (ty, part) = match kind {
        Kind::Singlepart => ("singlepart", String::new()),
        Kind::Dummy => ("dummy", String::new()),
        Kind::Multipart { part, total } => ("multipart", format!("Part: {part}/{total}\r\n")),
    };
    format!("Remailer-Type: {REMAILER_TYPE}\r\nMixtasy-ID: {id}\r\nMixtasy-Type: {ty}\r\n{part}\r\n")
}

/// How many payload bytes one final mix message with these headers carries.
pub fn capacity(id: &str, kind: Kind) -> usize {
    INNER - final_headers(id, kind).len() - LITERAL_HEADER_LEN - MARKER.len()
}

/// Builds a final mix message: Verification line and exactly `INNER` bytes after it. A
/// dummy's literal is random bytes of random length; the rest is random padding.
pub fn build_final(id: &str, kind: Kind, payload: &[u8], rng: &mut impl RngCore) -> Vec<u8> {
    let cap = capacity(id, kind);
    let dummy_payload;
    let payload = if kind == Kind::Dummy {
        let mut d = vec![0u8; (rng.next_u32() as usize) % (cap + 1)];
        rng.fill_bytes(&mut d);
        dummy_payload = d;
        &dummy_payload[..]
    } else {
        payload
    };
    assert!(payload.len() <= cap, "payload larger than the capacity of a final mix message");
    let mut window = Vec::with_capacity(INNER);
    window.extend_from_slice(final_headers(id, kind).as_bytes());
    packet::write_new_header_five(&mut window, 11, (6 + payload.len()) as u32);
    window.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
    window.extend_from_slice(payload);
    window.extend_from_slice(&MARKER);
    let filled = window.len();
    window.resize(INNER, 0);
    rng.fill_bytes(&mut window[filled..]);
    let mut out = Vec::with_capacity(verification::LINE_LEN + INNER);
    verification::write_line(&mut out, &window);
    out.extend_from_slice(&window);
    out
}

/// Builds an intermediate mix message around the next layer. The next layer is always
/// longer than the window (it holds a whole revealed message), so the hash covers the
/// headers and the start of the layer, as the thesis says.
pub fn build_intermediate(from: &MixAddress, to: &MixAddress, next_layer: &[u8]) -> Vec<u8> {
    let mut rest = format!("Remailer-Type: {REMAILER_TYPE}\r\nFrom: {from}\r\nTo: {to}\r\n\r\n").into_bytes();
    rest.extend_from_slice(next_layer);
    assert!(rest.len() >= INNER, "a layer is always longer than the verified window");
    let mut out = Vec::with_capacity(verification::LINE_LEN + rest.len());
    verification::write_line(&mut out, &rest[..INNER]);
    out.extend_from_slice(&rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> rand::rngs::StdRng {
        rand::SeedableRng::seed_from_u64(7)
    }

    #[test]
    fn final_round_trip_every_kind() {
        let mut r = rng();
        let id = new_id(&mut r);
        for kind in [Kind::Singlepart, Kind::Multipart { part: 2, total: 3 }, Kind::Dummy] {
            let payload = b"To: bob@rcpt.test\r\n\r\nhello\r\n";
            let m = build_final(&id, kind, payload, &mut r);
            assert_eq!(m.len() - verification::LINE_LEN, INNER);
            let (_, rest) = verification::check(&m).unwrap();
            let Revealed::Final(f) = parse(rest).unwrap() else { panic!() };
            assert_eq!(f.kind, kind);
            assert_eq!(f.id, id);
            if kind != Kind::Dummy {
                assert_eq!(f.payload, &payload[..]);
            }
        }
    }

    /// GnuPG frames a literal from a pipe with partial lengths (`gpg --store`: `cb e9 …`);
    /// D2 accepts any length form whose packet ends inside the window.
    #[test]
    fn partial_length_literal_inside_the_window_is_read_and_past_it_refused() {
        let id = "<0123456789abcdef0123456789abcdef@mixtasy>";
        let payload: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let framed = |payload: &[u8]| {
            let mut m = final_headers(id, Kind::Singlepart).into_bytes();
            let mut lit = vec![b'b', 0, 0, 0, 0, 0];
            lit.extend_from_slice(payload);
            packet::write_new_partial(&mut m, 11, &lit, 9);
            m
        };
        let mut m = framed(&payload);
        m.resize(INNER, 0);
        let Revealed::Final(f) = parse(&m).unwrap() else { panic!("final") };
        assert_eq!(f.payload, payload);
        // The same framing running past INNER.
        let big = vec![b'z'; INNER];
        let mut m = framed(&big);
        m.truncate(INNER);
        assert_eq!(parse(&m).unwrap_err(), MessageError::Payload);
    }

    #[test]
    fn payload_of_exactly_capacity_fits() {
        let mut r = rng();
        let id = new_id(&mut r);
        let cap = capacity(&id, Kind::Singlepart);
        let payload = vec![b'x'; cap];
        let m = build_final(&id, Kind::Singlepart, &payload, &mut r);
        assert_eq!(m.len() - verification::LINE_LEN, INNER);
        let Revealed::Final(f) = parse(&m[verification::LINE_LEN..]).unwrap() else { panic!() };
        assert_eq!(f.payload.len(), cap);
    }

    #[test]
    fn intermediate_round_trip() {
        let from = MixAddress::parse("mixtasy@a.test").unwrap();
        let to = MixAddress::parse("mixtasy@b.test").unwrap();
        let layer = vec![0xa5u8; INNER + 500];
        let m = build_intermediate(&from, &to, &layer);
        let (_, rest) = verification::check(&m).unwrap();
        let Revealed::Intermediate(i) = parse(rest).unwrap() else { panic!() };
        assert_eq!((i.from, i.to, i.body), (from, to, &layer[..]));
    }

    #[test]
    fn strict_headers() {
        let bad: &[&[u8]] = &[
            b"Remailer-Type: Mixtasy v2\r\nFrom: mixtasy@a.test\r\nTo: mixtasy@b.test\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nFrom: mixtasy@a.test\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nFrom: mixtasy@a.test\r\nTo: bob@b.test\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nFrom: mixtasy@a.test\r\nTo: mixtasy@b.test\r\nX-Extra: 1\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nFrom: mixtasy@a.test\r\n To: mixtasy@b.test\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nFrom: mixtasy@a.test\nTo: mixtasy@b.test\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nMixtasy-ID: <a@b>\r\nMixtasy-Type: multipart\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nMixtasy-ID: <a@b>\r\nMixtasy-Type: multipart\r\nPart: 3/2\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nMixtasy-ID: <a@b>\r\nMixtasy-Type: other\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nMixtasy-ID: nobrackets\r\nMixtasy-Type: dummy\r\n\r\n",
            b"Remailer-Type: Mixtasy v1\r\nMixtasy-ID: <a@b>\r\nMixtasy-Type: singlepart\r\n\r\n\xcb\xff\x00\x01\x00\x00b\x00",
        ];
        for b in bad {
            let mut m = b.to_vec();
            m.resize(INNER, 0);
            assert!(parse(&m).is_err(), "{}", String::from_utf8_lossy(b));
        }
        // Headers that end only after the window are refused.
        let mut late = vec![b'X'; INNER];
        late.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&late).unwrap_err(), MessageError::HeaderUnterminated);
    }
}
