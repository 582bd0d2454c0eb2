//! Handing mail to the MTA: `sendmail -i -f <mix> -- <rcpts>`, or for labs and the demo a
//! Maildir per recipient.
//!
//! Our own runner, not lettre's: lettre cannot time out a hung sendmail, treats every
//! failure alike and fails on a non-UTF-8 stderr. Here any failure (non-zero exit, missing
//! program, timeout) means "keep it for the next round", which is all a mix needs. The
//! child's output is discarded: it names addresses, and nothing that does may be logged.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::address::MixAddress;
use crate::config::{Config, TransportKind};
use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("sendmail could not be started")]
    Spawn,
    #[error("sendmail exited with status {0}")]
    Status(i32),
    #[error("sendmail was killed by a signal")]
    Signal,
    #[error("sendmail did not finish in time and was killed")]
    Timeout,
    #[error("delivery into the Maildir failed")]
    Maildir,
    #[error("recipient address is not usable")]
    BadRecipient,
}

pub enum Transport {
    Sendmail { program: PathBuf, timeout: Duration },
    Maildir { root: PathBuf },
}

impl Transport {
    pub fn from_config(c: &Config) -> Self {
        match &c.transport {
            TransportKind::Sendmail => Transport::Sendmail { program: c.sendmail.clone(), timeout: c.sendmail_timeout },
            TransportKind::Maildir(root) => Transport::Maildir { root: root.clone() },
        }
    }

    /// Sends one mail to `rcpts`, envelope sender `from` (a mix's own address; `None` for a
    /// sender, whose MTA knows its user). Ok only when every recipient's copy was accepted.
    pub fn send(&self, from: Option<&MixAddress>, rcpts: &[String], mail: &[u8]) -> Result<(), TransportError> {
        if rcpts.is_empty() || rcpts.iter().any(|r| !crate::address::plausible(r)) {
            return Err(TransportError::BadRecipient);
        }
        match self {
            Transport::Sendmail { program, timeout } => sendmail(program, *timeout, from, rcpts, mail),
            Transport::Maildir { root } => {
                for r in rcpts {
                    let dir = root.join(r.to_ascii_lowercase());
                    let md = maildir::Maildir::from(dir.clone());
                    md.create_dirs().map_err(|_| TransportError::Maildir)?;
                    md.store_new(mail).map_err(|_| TransportError::Maildir)?;
                    fsutil::sync_dir(&dir.join("new")).map_err(|_| TransportError::Maildir)?;
                }
                Ok(())
            }
        }
    }
}

/// The first non-empty line of a child's stderr, with every word that holds an `@` (an
/// address) replaced by `<address>` and cut to 160 characters: enough to tell a
/// `postdrop: ... Permission denied` from a full disk, nothing that names a correspondent.
pub fn first_line_scrubbed(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) else { return String::new() };
    let words: Vec<&str> = line.split_whitespace().map(|w| if w.contains('@') { "<address>" } else { w }).collect();
    words.join(" ").chars().take(160).collect()
}

fn sendmail(program: &PathBuf, timeout: Duration, from: Option<&MixAddress>, rcpts: &[String], mail: &[u8]) -> Result<(), TransportError> {
    let mut cmd = Command::new(program);
    cmd.arg("-i");
    if let Some(from) = from {
        cmd.arg("-f").arg(from.as_str());
    }
    let mut child = cmd
        .arg("--")
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| TransportError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = mail.to_vec();
    // Written on a thread: a sendmail that stops reading must not block us past the timeout.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                return Err(TransportError::Timeout);
            }
        }
    };
    let _ = writer.join();
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(TransportError::Status(c)),
        None => Err(TransportError::Signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("fake-sendmail");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p
    }

    #[test]
    fn sendmail_outcomes() {
        let t = tempfile::tempdir().unwrap();
        let from = MixAddress::for_fqdn("a.test").unwrap();
        let rcpt = vec!["bob@b.test".to_string()];
        let out = t.path().join("got");
        let ok = Transport::Sendmail { program: script(t.path(), &format!("echo \"$@\" > {}; cat >> {}", out.display(), out.display())), timeout: Duration::from_secs(10) };
        ok.send(Some(&from), &rcpt, b"mail body").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "-i -f mixtasy@a.test -- bob@b.test\nmail body");
        let tempfail = Transport::Sendmail { program: script(t.path(), "cat >/dev/null; exit 75"), timeout: Duration::from_secs(10) };
        assert_eq!(tempfail.send(Some(&from), &rcpt, b"x"), Err(TransportError::Status(75)));
        let hang = Transport::Sendmail { program: script(t.path(), "sleep 30"), timeout: Duration::from_millis(300) };
        assert_eq!(hang.send(Some(&from), &rcpt, &vec![b'x'; 1 << 20]), Err(TransportError::Timeout));
        let missing = Transport::Sendmail { program: t.path().join("nope"), timeout: Duration::from_secs(1) };
        assert_eq!(missing.send(Some(&from), &rcpt, b"x"), Err(TransportError::Spawn));
        assert_eq!(ok.send(Some(&from), &["-oQ/tmp@x.test".into()], b"x"), Err(TransportError::BadRecipient));
        assert_eq!(ok.send(Some(&from), &["../../etc@x.test".into()], b"x"), Err(TransportError::BadRecipient));
    }

    #[test]
    fn maildir_delivery() {
        let t = tempfile::tempdir().unwrap();
        let from = MixAddress::for_fqdn("a.test").unwrap();
        let tr = Transport::Maildir { root: t.path().to_path_buf() };
        tr.send(Some(&from), &["Bob@b.test".into(), "carol@b.test".into()], b"hello").unwrap();
        for r in ["bob@b.test", "carol@b.test"] {
            let files: Vec<_> = std::fs::read_dir(t.path().join(r).join("new")).unwrap().collect();
            assert_eq!(files.len(), 1);
        }
    }
}
