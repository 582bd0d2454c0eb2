//! Mix mail on the SMTP wire (D5): three headers and an armored body of exactly `OUTER`
//! binary bytes. Parsing is for what the MTA delivered: it may have added `Received:`,
//! `Return-Path:` and the like, and stored CRLF as LF.

use crate::format::armor;
use crate::mixes::address::MixAddress;

pub const REMAILER_TYPE: &str = "Mixtasy v1";

/// Builds the mail one mix (or the sender, `from = None`: its MTA adds its own From) hands
/// to sendmail. Nothing else goes in: no Date, no Message-ID, no software name.
pub fn build(from: Option<&MixAddress>, to: &MixAddress, body: &[u8]) -> Vec<u8> {
    let headers = match from {
        Some(from) => format!("From: {from}\nTo: {to}\nRemailer-Type: {REMAILER_TYPE}\n\n"),
        None => format!("To: {to}\nRemailer-Type: {REMAILER_TYPE}\n\n"),
    };
    let mut mail = Vec::with_capacity(headers.len() + armor::encoded_len(body.len()));
    mail.extend_from_slice(headers.as_bytes());
    armor::encode_into(&mut mail, body);
    mail
}

/// What the mix reads off a delivered mail before decrypting anything.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The Remailer-Type value, if the header is there.
    pub remailer_type: Option<String>,
    /// Every address in To: headers.
    pub to: Vec<String>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mail header is unparseable")]
pub struct HeaderError;

pub fn parse(mail: &[u8]) -> Result<Incoming<'_>, HeaderError> {
    let (headers, offset) = mailparse::parse_headers(mail).map_err(|_| HeaderError)?;
    use mailparse::MailHeaderMap;
    let remailer_type = headers.get_first_value("Remailer-Type").map(|v| v.trim().to_string());
    let to = headers.get_all_headers("To").into_iter().flat_map(crate::mixes::address::header_addresses).collect();
    Ok(Incoming { remailer_type, to, body: &mail[offset.min(mail.len())..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let from = MixAddress::for_fqdn("a.test").unwrap();
        let to = MixAddress::for_fqdn("b.test").unwrap();
        let mail = build(Some(&from), &to, &[1, 2, 3]);
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.starts_with(
            "From: mixtasy@a.test\nTo: mixtasy@b.test\nRemailer-Type: Mixtasy v1\n\n-----BEGIN PGP MESSAGE-----\n"
        ));
        let delivered = format!("Return-Path: <x@y>\r\nReceived: from somewhere\r\n{}", text.replace('\n', "\r\n"));
        let inc = parse(delivered.as_bytes()).unwrap();
        assert_eq!(inc.remailer_type.as_deref(), Some(REMAILER_TYPE));
        assert_eq!(inc.to, ["mixtasy@b.test"]);
        assert_eq!(armor::decode(inc.body).unwrap(), [1, 2, 3]);
    }
}
