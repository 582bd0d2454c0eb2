//! End-to-end encryption of an original for its recipient (thesis 6.2.1): PGP/MIME
//! (RFC 3156), done by the sender before wrapping, so the exit sees only the header.
//!
//! The original's own MIME entity (its Content-* fields and body) is encrypted whole, so
//! attachments and charsets survive; the outer header keeps the other fields (To, Cc,
//! Subject, …) and becomes `multipart/encrypted`. The Subject stays in clear: the caller
//! warns (RFC 3156 has no place for it; thesis 6.2.1 asks for no sensitive header).

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use openpgp::cert::CertParser;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::Cert;
use rand::RngCore;
use sequoia_openpgp as openpgp;

use crate::format::headers::{self, name_of};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the recipient key file holds no OpenPGP certificate")]
    NoCert,
    #[error("a recipient certificate has no encryption key valid now")]
    NoEncryptionKey,
}

/// Reads the recipients' certificates (armored or binary, one or more) from key file bytes.
pub fn read_certs(bytes: &[u8]) -> Result<Vec<Cert>> {
    let certs: Vec<Cert> = CertParser::from_bytes(bytes)
        .context("reading the recipient key file")?
        .collect::<openpgp::Result<_>>()
        .context("reading the recipient key file")?;
    if certs.is_empty() {
        return Err(KeyError::NoCert.into());
    }
    Ok(certs)
}

/// Whether the original has a non-empty Subject (left in clear by `encrypt`).
pub fn has_subject(original: &[u8]) -> bool {
    headers::split(original).is_ok_and(|s| {
        s.fields.iter().any(|f| {
            name_of(f) == "subject"
                && f.splitn(2, |&b| b == b':').nth(1).is_some_and(|v| v.iter().any(|b| !b.is_ascii_whitespace()))
        })
    })
}

/// The original as a PGP/MIME message encrypted to every certificate in `certs`.
pub fn encrypt(original: &[u8], certs: &[Cert], now: SystemTime) -> Result<Vec<u8>> {
    let s = headers::split(original)?;
    let eol = s.eol;
    let is_content = |f: &[u8]| name_of(f).starts_with("content-");
    // The inner entity: the original's Content-* fields and its body.
    let mut entity = Vec::with_capacity(original.len());
    for f in s.fields.iter().filter(|f| is_content(f)) {
        entity.extend_from_slice(f);
    }
    entity.extend_from_slice(eol);
    entity.extend_from_slice(s.body);

    let policy = StandardPolicy::new();
    let mut recipients = Vec::new();
    for c in certs {
        let keys: Vec<_> = c
            .keys()
            .with_policy(&policy, now)
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .for_storage_encryption()
            .collect();
        let keys: Vec<_> = if keys.is_empty() {
            c.keys().with_policy(&policy, now).supported().alive().revoked(false).for_transport_encryption().collect()
        } else {
            keys
        };
        if keys.is_empty() {
            return Err(KeyError::NoEncryptionKey.into());
        }
        recipients.extend(keys);
    }
    let mut armored = Vec::new();
    {
        let sink = Message::new(&mut armored);
        let sink = Armorer::new(sink).build()?;
        let sink = Encryptor::for_recipients(sink, recipients).build()?;
        let mut w = LiteralWriter::new(sink).build()?;
        w.write_all(&entity)?;
        w.finalize()?;
    }

    let boundary = format!("mixtasy-pgp-{:016x}", rand::rng().next_u64());
    let mut out = Vec::with_capacity(armored.len() + 1024);
    for f in s.fields.iter().filter(|f| !is_content(f) && name_of(f) != "mime-version") {
        out.extend_from_slice(f);
    }
    let lines: [&str; 16] = [
        "MIME-Version: 1.0",
        &format!("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{boundary}\""),
        "",
        "This is an OpenPGP/MIME encrypted message (RFC 3156).",
        &format!("--{boundary}"),
        "Content-Type: application/pgp-encrypted",
        "Content-Description: PGP/MIME version identification",
        "",
        "Version: 1",
        "",
        &format!("--{boundary}"),
        "Content-Type: application/octet-stream; name=\"encrypted.asc\"",
        "Content-Description: OpenPGP encrypted message",
        "Content-Disposition: inline; filename=\"encrypted.asc\"",
        "",
        "",
    ];
    for l in &lines[..15] {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(eol);
    }
    // The armor in the original's line ends; its blank line after the headers is kept.
    let text = armored.strip_suffix(b"\n").unwrap_or(&armored);
    for l in text.split(|&b| b == b'\n') {
        out.extend_from_slice(l.strip_suffix(b"\r").unwrap_or(l));
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("--{boundary}--").as_bytes());
    out.extend_from_slice(eol);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::crypto::SessionKey;
    use openpgp::packet::{PKESK, SKESK};
    use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper};
    use openpgp::types::SymmetricAlgorithm;
    use openpgp::KeyHandle;

    struct Helper(Cert);
    impl VerificationHelper for Helper {
        fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
            Ok(())
        }
    }
    impl DecryptionHelper for Helper {
        fn decrypt(
            &mut self,
            pkesks: &[PKESK],
            _: &[SKESK],
            sym: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
        ) -> openpgp::Result<Option<Cert>> {
            if crate::mixes::keys::open_with_cert(&self.0, None, pkesks, sym, decrypt) {
                return Ok(None);
            }
            Err(anyhow::anyhow!("no key"))
        }
    }

    #[test]
    fn only_the_header_stays_in_clear() {
        let (cert, _) = CertBuilder::general_purpose(Some("Bob <bob@x.test>")).generate().unwrap();
        let orig = b"To: bob@x.test\r\nSubject: hello\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe secret body\r\n";
        assert!(has_subject(orig));
        assert!(!has_subject(b"To: bob@x.test\r\nSubject:  \r\n\r\nx"));
        let out = encrypt(orig, &[cert.clone().strip_secret_key_material()], SystemTime::now()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("secret body") && !text.contains("charset=utf-8"), "{text}");
        assert!(
            text.starts_with(
                "To: bob@x.test\r\nSubject: hello\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted;"
            ),
            "{text}"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "one line end throughout");
        assert!(
            text.contains("-----BEGIN PGP MESSAGE-----\r\n\r\n"),
            "GnuPG needs the blank line after the armor headers"
        );
        let start = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
        let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
        let policy = StandardPolicy::new();
        let mut d = DecryptorBuilder::from_bytes(&text.as_bytes()[start..end])
            .unwrap()
            .with_policy(&policy, None, Helper(cert))
            .unwrap();
        let mut plain = Vec::new();
        std::io::copy(&mut d, &mut plain).unwrap();
        assert_eq!(plain, b"Content-Type: text/plain; charset=utf-8\r\n\r\nthe secret body\r\n");
        assert!(read_certs(b"not a key").is_err());
    }
}
