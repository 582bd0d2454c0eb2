//! Reading the nym's mail: every article of the shared group (over NNTP, or a Maildir the
//! group is copied into), so that nobody watching learns which ones are ours; those whose
//! Subject is an hSub of our passphrase are opened (the optional symmetric layer, then the
//! layer to the nym key, which must carry the server's signature) and written into the
//! user's Maildir. An article is marked seen only after its mail is durable there: a crash
//! gives at worst a duplicate, never a loss.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;

use crate::mixes::keys;
use crate::nymclient::profile::{Profile, Settings};
use crate::nymserv::config::News;
use crate::nymserv::hsub;
use crate::util::fsutil;

/// Largest article read; the server's own limit on mail is far below.
const MAX_ARTICLE: usize = 64 * 1024 * 1024;

/// What one fetch did; no subjects, ids or sizes (they would link us to our articles).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Articles read from the group.
    pub read: usize,
    /// Of those, new mail written into the Maildir.
    pub stored: usize,
    /// Ours by hSub, but not opened: not for our key, or not signed by the server (forged
    /// or damaged). Left alone.
    pub refused: usize,
}

/// Every article of the source, oldest first where the source knows an order.
pub fn articles(source: &News) -> Result<Vec<Vec<u8>>> {
    match source {
        News::Maildir(root) => {
            let mut names = Vec::new();
            for sub in ["cur", "new"] {
                names.extend(fsutil::entries(&root.join(sub))?);
            }
            names.sort();
            names.iter().map(|p| std::fs::read(p).with_context(|| p.display().to_string())).collect()
        }
        News::Nntp { addr, group } => nntp_articles(addr, group),
    }
}

/// RFC 3977 reader: MODE READER, GROUP, then ARTICLE for every number the group holds.
fn nntp_articles(addr: &str, group: &str) -> Result<Vec<Vec<u8>>> {
    let sock = addr.parse().context("the news server: HOST:PORT")?;
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(30)).context("connecting to the news server")?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let mut line = String::new();
    let mut status = |r: &mut BufReader<TcpStream>| -> Result<String> {
        line.clear();
        r.read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    };
    let greeting = status(&mut r)?;
    if !greeting.starts_with("200") && !greeting.starts_with("201") {
        bail!("the news server greeted with {:?}", greeting.chars().take(80).collect::<String>());
    }
    w.write_all(b"MODE READER\r\n")?;
    status(&mut r)?; // 200/201, or 5xx from a server that is a reader already
    w.write_all(format!("GROUP {group}\r\n").as_bytes())?;
    let g = status(&mut r)?;
    let f: Vec<&str> = g.split_whitespace().collect();
    if f.first() != Some(&"211") || f.len() < 4 {
        bail!("the news server answered GROUP with {:?}", g.chars().take(80).collect::<String>());
    }
    let (count, low, high): (u64, u64, u64) = (f[1].parse()?, f[2].parse()?, f[3].parse()?);
    let mut out = Vec::new();
    if count > 0 {
        for n in low..=high {
            w.write_all(format!("ARTICLE {n}\r\n").as_bytes())?;
            let a = status(&mut r)?;
            if !a.starts_with("220") {
                continue; // 423: cancelled or expired since GROUP
            }
            out.push(multiline(&mut r)?);
        }
    }
    let _ = w.write_all(b"QUIT\r\n");
    Ok(out)
}

/// A dot-terminated, dot-stuffed block, with LF line ends.
fn multiline(r: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l)? == 0 {
            bail!("the news server closed the connection inside an article");
        }
        if l.ends_with(b"\r\n") {
            l.truncate(l.len() - 2);
            l.push(b'\n');
        }
        if l == b".\n" {
            return Ok(out);
        }
        out.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
        if out.len() > MAX_ARTICLE {
            bail!("an article of the group is larger than {MAX_ARTICLE} bytes");
        }
    }
}

fn header(article: &[u8], name: &str) -> Option<String> {
    let (h, _) = mailparse::parse_headers(article).ok()?;
    use mailparse::MailHeaderMap;
    h.get_first_value(name)
}

/// Fetches from `source` into the Maildir `into` (created if missing).
pub fn fetch(profile: &Profile, key: &Cert, source: &News, into: &Path, now: SystemTime) -> Result<Summary> {
    let settings = profile.settings()?;
    if settings.hsub.is_empty() {
        bail!(
            "the nym has no hsub passphrase: set one with `mixtasy nym modify --hsub`, its mail cannot be told apart"
        );
    }
    let server = profile.server()?;
    let seen_path = profile.seen_path();
    let mut seen: BTreeSet<String> =
        std::fs::read_to_string(&seen_path).unwrap_or_default().lines().map(String::from).collect();
    let md = maildir::Maildir::from(into.to_path_buf());
    md.create_dirs().with_context(|| format!("creating the Maildir {}", into.display()))?;
    let mut sum = Summary::default();
    for a in articles(source)? {
        sum.read += 1;
        let Some(subject) = header(&a, "Subject") else { continue };
        if !settings.hsub.iter().any(|p| hsub::matches(&subject, p)) {
            continue;
        }
        let id = header(&a, "Message-ID").unwrap_or_default().trim().to_string();
        if !id.is_empty() && seen.contains(&id) {
            continue;
        }
        let body = mailparse::parse_mail(&a).ok().and_then(|m| m.get_body_raw().ok()).unwrap_or_default();
        let mail = match open(&body, key, &server, &settings, now) {
            Ok(m) => m,
            Err(_) => {
                sum.refused += 1;
                continue;
            }
        };
        md.store_new(&mail).context("storing a mail in the Maildir")?;
        crate::util::fsutil::sync_dir(&into.join("new"))?;
        sum.stored += 1;
        if !id.is_empty() {
            seen.insert(id);
            let text: String = seen.iter().map(|s| format!("{s}\n")).collect();
            crate::util::fsutil::write_atomic(&seen_path, text.as_bytes(), 0o600)?;
        }
    }
    Ok(sum)
}

/// An article's body opened: the symmetric layer if the nym has one (any passphrase it
/// ever set, or none), then the layer to the nym key, whose content must carry a good
/// signature by the server.
pub fn open(body: &[u8], key: &Cert, server: &Cert, settings: &Settings, now: SystemTime) -> Result<Vec<u8>> {
    let inner = if settings.symmetric.is_empty() {
        body.to_vec()
    } else {
        let passwords = settings.symmetric.iter().map(|p| p.as_str().into()).collect();
        match decrypt(body, Helper { key, server: None, passwords, signed: false }, now) {
            Ok(inner) => inner,
            Err(_) => body.to_vec(), // sealed before a symmetric layer was asked for
        }
    };
    decrypt(&inner, Helper { key, server: Some(server), passwords: Vec::new(), signed: false }, now)
}

fn decrypt(msg: &[u8], helper: Helper<'_>, now: SystemTime) -> Result<Vec<u8>> {
    let policy = StandardPolicy::new();
    let mut d =
        DecryptorBuilder::from_bytes(msg)?.with_policy(&policy, Some(now + crate::nymserv::pgp::MAX_AHEAD), helper)?;
    let mut out = Vec::new();
    (&mut d).take(MAX_ARTICLE as u64 + 1).read_to_end(&mut out)?;
    if out.len() > MAX_ARTICLE {
        bail!("too large");
    }
    // A signature is checked as the stream ends; the helper says whether one was good.
    let h = d.helper_ref();
    if h.server.is_some() && !h.signed {
        bail!("not signed by the nym server");
    }
    Ok(out)
}

struct Helper<'a> {
    key: &'a Cert,
    /// The signer to require (the inner layer), or none (the symmetric layer).
    server: Option<&'a Cert>,
    /// The symmetric layer's passphrases to try; empty for the inner layer.
    passwords: Vec<Password>,
    signed: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.server.into_iter().cloned().collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                self.signed |= results.iter().any(|r| r.is_ok());
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        if !self.passwords.is_empty() {
            for (s, p) in skesks.iter().flat_map(|s| self.passwords.iter().map(move |p| (s, p))) {
                if let Ok((algo, sk)) = s.decrypt(p) {
                    if decrypt(algo, &sk) {
                        return Ok(None);
                    }
                }
            }
            return Err(anyhow!("the symmetric passphrase does not open the article"));
        }
        // The server names no recipient (a wildcard): try every encryption key we hold.
        if keys::open_with_cert(self.key, None, pkesks, sym_algo, decrypt) {
            return Ok(None);
        }
        Err(anyhow!("not encrypted to the nym key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_undoes_dot_stuffing_and_stops_at_the_lone_dot() {
        let mut r = std::io::Cursor::new(b"Subject: x\r\n\r\n..hidden\r\nplain\r\n.\r\nnext\r\n".to_vec());
        assert_eq!(multiline(&mut r).unwrap(), b"Subject: x\n\n.hidden\nplain\n");
        let mut cut = std::io::Cursor::new(b"Subject: x\r\n".to_vec());
        assert!(multiline(&mut cut).is_err(), "a connection closed mid-article is an error, not a short mail");
    }
}
