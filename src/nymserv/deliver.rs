//! Mail for a nym, and mail out: what a delivery becomes in the outbox, and how the outbox
//! empties.
//!
//! Everything for a nym (inbound mail, confirmations, answers) is sealed to its key and
//! signed by the server (`pgp::seal`), given an hSub, and then either posted to the shared
//! group (`news` rows) or, for `mixtasy:ADDRESS`, wrapped for the network at once
//! (`sender::create`) and queued as wire messages for their first mixes (`smtp` rows), so
//! that a send repeated after a crash is the same wire message, which the first mix's
//! replay cache drops. `smtp` rows also carry the mail nyms send (send@) and block
//! confirmations; every one leaves with the envelope sender `bounces@DOMAIN`
//! (`blocking::bounce_address`), whose bounces the server destroys.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use rand::{CryptoRng, Rng};
use rusqlite::Connection;
use sequoia_openpgp::Cert;

use crate::format::message::hex;
use crate::mixes::directory::Mix;
use crate::nymserv::config::{Config, News};
use crate::nymserv::request::Delivery;
use crate::nymserv::{hsub, pgp, store};
use crate::sender::create;
use crate::util::clock;

/// What sealing needs to know of a nym.
pub struct Target<'a> {
    pub cert: &'a Cert,
    pub hsub: &'a str,
    pub symmetric: &'a str,
    pub delivery: &'a Delivery,
}

/// Queues `content` (an RFC 5322 mail) for the nym `to`, in the caller's transaction.
// Each argument is a different thing the delivery needs; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn to_nym(
    conn: &Connection,
    cfg: &Config,
    server: &Cert,
    mixes: &[Mix],
    to: &Target<'_>,
    content: &[u8],
    now: SystemTime,
    rng: &mut (impl Rng + CryptoRng),
) -> Result<()> {
    let sym = Some(to.symmetric).filter(|s| !s.is_empty());
    let armored = pgp::seal(to.cert, server, content, sym, now)?;
    let subject = hsub::make(Some(to.hsub), rng);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    match to.delivery {
        Delivery::Newsgroup => {
            let mut a = format!(
                "From: Nobody <nobody@{d}>\r\nNewsgroups: {g}\r\nSubject: {subject}\r\nMessage-ID: <{id}@{d}>\r\nDate: {date}\r\n\r\n",
                d = cfg.domain,
                g = cfg.news.group(),
                id = hex(&id),
                date = clock::rfc5322(now),
            )
            .into_bytes();
            a.extend_from_slice(&crlf(&armored));
            store::queue(conn, "news", "", &a)
        }
        Delivery::Mixtasy(address) => {
            let mut original = format!("To: {address}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").into_bytes();
            original.extend_from_slice(&crlf(&armored));
            let opts = create::Options { hops: cfg.hops, max_size: cfg.max_size * 2 + 65536, ..Default::default() };
            for w in create::create(&original, mixes, &opts, now, rng).context("wrapping a delivery for the network")? {
                store::queue(conn, "smtp", w.to.as_str(), &w.mail)?;
            }
            Ok(())
        }
    }
}

/// `text` with CRLF line ends.
fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' && (i == 0 || text[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Posts one article: NNTP POST (RFC 3977), or a file in the lab's Maildir.
pub fn post(news: &News, article: &[u8]) -> Result<()> {
    match news {
        News::Maildir(root) => {
            let md = maildir::Maildir::from(root.clone());
            md.create_dirs().context("creating the news Maildir")?;
            md.store_new(article).context("storing an article")?;
            crate::util::fsutil::sync_dir(&root.join("new"))
        }
        News::Nntp { addr, .. } => nntp_post(addr, article),
    }
}

fn nntp_post(addr: &str, article: &[u8]) -> Result<()> {
    let sock = addr.parse().context("`news`: HOST:PORT")?;
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(30)).context("connecting to the news server")?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let mut line = String::new();
    let mut expect = |r: &mut BufReader<TcpStream>, codes: &[&str]| -> Result<()> {
        line.clear();
        r.read_line(&mut line)?;
        if !codes.iter().any(|c| line.starts_with(c)) {
            bail!("the news server answered {:?}", line.trim_end().chars().take(80).collect::<String>());
        }
        Ok(())
    };
    expect(&mut r, &["200"])?;
    w.write_all(b"POST\r\n")?;
    expect(&mut r, &["340"])?;
    let mut body = Vec::with_capacity(article.len() + 64);
    for l in crlf(article).split_inclusive(|&b| b == b'\n') {
        if l.starts_with(b".") {
            body.push(b'.');
        }
        body.extend_from_slice(l);
    }
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    w.write_all(&body)?;
    expect(&mut r, &["240"])?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}

/// Sends every outbox row; a row leaves only once its channel accepted it. Returns
/// (sent, failed); failures stay for the next run.
pub fn flush(state: &mut crate::batch::state::State, cfg: &Config) -> Result<(u64, u64)> {
    let transport = cfg.transport();
    let bounces = crate::nymserv::blocking::bounce_address(cfg);
    let (mut sent, mut failed) = (0, 0);
    for q in store::outbox(state.conn())? {
        let ok = match q.channel.as_str() {
            "news" => post(&cfg.news, &q.mail).is_ok(),
            "smtp" => transport.send(Some(&bounces), std::slice::from_ref(&q.rcpt), &q.mail).is_ok(),
            _ => false,
        };
        if ok {
            state.remove_counted(
                crate::batch::state::Queue::Outbox,
                q.id,
                &[(if q.channel == "news" { "out.news" } else { "out.smtp" }, 1)],
            )?;
            sent += 1;
        } else {
            state.bump(if q.channel == "news" { "out.news-failed" } else { "out.smtp-failed" }, 1)?;
            failed += 1;
        }
    }
    Ok((sent, failed))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn crlf_line_ends_once() {
        assert_eq!(super::crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    /// The client side of RFC 3977 POST against a scripted server on loopback (INN itself:
    /// tests/nymclient.rs): greeting, POST, the article dot-stuffed and
    /// ended by a lone dot, and a refusal reported as an error.
    #[test]
    fn nntp_post_dot_stuffs_and_reports_refusals() {
        for (answer, ok) in [("240 article received", true), ("441 posting failed", false)] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let server = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                w.write_all(b"200 ready\r\n").unwrap();
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert_eq!(line, "POST\r\n");
                w.write_all(b"340 send it\r\n").unwrap();
                let mut article = Vec::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    article.push(l);
                }
                w.write_all(format!("{answer}\r\n").as_bytes()).unwrap();
                article
            });
            let got = super::nntp_post(&addr, b"Subject: x\n\n.hidden\nplain\n");
            let article = server.join().unwrap();
            assert_eq!(article, vec!["Subject: x\r\n", "\r\n", "..hidden\r\n", "plain\r\n"]);
            assert_eq!(got.is_ok(), ok, "{answer}: {got:?}");
        }
    }
}
