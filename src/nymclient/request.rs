//! What the client sends the server: a config@ request (create, confirm, modify, delete) or
//! a send@ mail, each as plain OpenPGP signed by the nym and encrypted to the server, in a
//! mail addressed to `config@DOMAIN` or `send@DOMAIN`. The mail then goes through the
//! Mixtasy network like any other original, so the server never learns where it came from.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::serialize::MarshalInto;
use openpgp::types::Features;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::nymserv::request::Delivery;

/// The settings lines of a create or modify request (the syntax of `nymserv::request`).
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub hsub: Option<String>,
    pub symmetric: Option<String>,
    pub delivery: Option<Delivery>,
    pub acksend: Option<bool>,
}

impl Changes {
    fn lines(&self) -> String {
        let mut out = String::new();
        if let Some(h) = &self.hsub {
            out.push_str(&format!("hsub: {h}\n"));
        }
        if let Some(s) = &self.symmetric {
            out.push_str(&format!("symmetric: {s}\n"));
        }
        if let Some(d) = &self.delivery {
            out.push_str(&format!("delivery: {}\n", d.as_setting()));
        }
        if let Some(a) = self.acksend {
            out.push_str(&format!("acksend: {}\n", if a { "yes" } else { "no" }));
        }
        out
    }
}

/// A value must fit on its line, as the server reads it.
fn check_value(what: &str, v: &str) -> Result<()> {
    if v.contains(['\n', '\r']) || v.trim() != v || v.chars().count() > 64 {
        anyhow::bail!("{what} must be one line of at most 64 characters without leading or trailing blanks");
    }
    Ok(())
}

/// The text of a create: the nym's public key, then its settings.
pub fn create_text(key: &Cert, changes: &Changes) -> Result<Vec<u8>> {
    let mut out = key.armored().to_vec()?;
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(modify_text(changes)?.as_bytes());
    Ok(out)
}

/// The text of a modify.
pub fn modify_text(changes: &Changes) -> Result<String> {
    for (what, v) in [("--hsub", &changes.hsub), ("--symmetric", &changes.symmetric)] {
        if let Some(v) = v {
            check_value(what, v)?;
        }
    }
    Ok(changes.lines())
}

/// The text of a confirmation.
pub fn confirm_text(code: &str) -> Result<String> {
    let code = code.trim();
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) || code.len() > 64 {
        anyhow::bail!("{code:?} is not a confirmation code (letters and digits, as the server's answer shows it)");
    }
    Ok(format!("confirm: {code}\n"))
}

/// `text` signed by the nym key and encrypted to the server's key, armored.
pub fn seal(nym: &Cert, server: &Cert, text: &[u8], now: SystemTime) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    // SEIPDv1 with v3 PKESKs, as GnuPG writes it: what the server reads.
    let recipients: Vec<Recipient> = server
        .keys()
        .with_policy(&policy, now)
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .map(|ka| Recipient::new(Features::empty().set_seipdv1(), ka.key().key_handle(), ka.key()))
        .collect();
    if recipients.is_empty() {
        return Err(anyhow!("the server key has no usable encryption key (expired? fetch its current key)"));
    }
    let signer = crate::nymserv::pgp::signing_key(nym, now)
        .context("the nym key has no usable signing key")?
        .into_keypair()
        .context("the nym's signing key is protected by a password (remove it with gpg --edit-key … passwd)")?;
    let mut out = Vec::new();
    let m = Message::new(&mut out);
    let m = Armorer::new(m).kind(openpgp::armor::Kind::Message).build()?;
    let m = Encryptor::for_recipients(m, recipients).build()?;
    let m = Signer::new(m, signer)?.creation_time(now).build()?;
    let mut w = LiteralWriter::new(m).build()?;
    w.write_all(text)?;
    w.finalize()?;
    Ok(out)
}

/// The mail that carries a sealed request to `local@domain` (config or send).
pub fn mail(local: &str, domain: &str, sealed: &[u8]) -> Vec<u8> {
    let mut out =
        format!("To: {local}@{domain}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n").into_bytes();
    out.extend_from_slice(sealed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_texts_parse_as_the_server_reads_them() {
        let (key, _) = openpgp::cert::CertBuilder::general_purpose(Some("alice@nym.test")).generate().unwrap();
        let ch = Changes {
            hsub: Some("pw pw".into()),
            symmetric: None,
            delivery: Some(Delivery::Newsgroup),
            acksend: Some(false),
        };
        let r = crate::nymserv::request::parse(&create_text(&key, &ch).unwrap()).unwrap();
        assert_eq!(r.key.unwrap().fingerprint(), key.fingerprint());
        assert_eq!((r.hsub.as_deref(), r.delivery, r.acksend), (Some("pw pw"), Some(Delivery::Newsgroup), Some(false)));
        assert_eq!(
            crate::nymserv::request::parse(confirm_text(" 0f3a ").unwrap().as_bytes()).unwrap().confirm.as_deref(),
            Some("0f3a")
        );
        // A passphrase that would smuggle a second line (say, a delivery) is refused.
        let evil = Changes { hsub: Some("x\ndelivery: mixtasy:victim@x.test".into()), ..Default::default() };
        assert!(modify_text(&evil).is_err());
        assert!(confirm_text("abc\ndelete: yes").is_err());
    }
}
