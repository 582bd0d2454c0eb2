//! Handing mail to the MTA: `sendmail -i -f <mix> -- <rcpts>`, or for labs and the demo a
//! Maildir per recipient.
//!
//! Our own runner, not lettre's: lettre cannot time out a hung sendmail, treats every
//! failure alike and fails on a non-UTF-8 stderr. Here any failure (non-zero exit, missing
//! program, timeout) means "keep it for the next round", which is all a mix needs. The
//! child's stdout is discarded; of its stderr only the first line is kept, with every
//! address taken out, as the reason a round reports (`Meter`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::fsutil;

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
    #[error("the round's time for a failing sendmail is used up")]
    OverTime,
}

impl TransportError {
    /// The counter a failure of this kind raises (documented in mixtasyd(8)).
    pub fn counter(&self) -> &'static str {
        match self {
            TransportError::Spawn => "transport.spawn",
            TransportError::Status(_) => "transport.exit-status",
            TransportError::Signal => "transport.signal",
            TransportError::Timeout => "transport.timeout",
            TransportError::Maildir => "transport.maildir",
            TransportError::BadRecipient => "transport.bad-recipient",
            TransportError::OverTime => "transport.over-time",
        }
    }

    /// A small number for the kind, kept in the state's meta table (which holds integers) so
    /// that `status` can name the last round's failure.
    pub fn code(&self) -> i64 {
        match self {
            TransportError::Timeout => 1,
            TransportError::Status(_) => 2,
            TransportError::Signal => 3,
            TransportError::Spawn => 4,
            TransportError::OverTime => 5,
            TransportError::Maildir => 6,
            TransportError::BadRecipient => 7,
        }
    }

    /// The kind's name for a `code`, for `status`.
    pub fn name_of_code(code: i64) -> &'static str {
        match code {
            1 => "sendmail timed out",
            2 => "sendmail exited with an error",
            3 => "sendmail was killed",
            4 => "sendmail could not be started",
            5 => "the round's time for a failing sendmail was used up",
            6 => "Maildir delivery failed",
            _ => "a recipient was not usable",
        }
    }
}

/// What one round's sends cost and why they failed. A round is one process and sends from
/// one thread, so the meter is process-wide: `start_round` arms it, every send checks and
/// feeds it, `end_round` reads and disarms it. Without `start_round` (the sender's tool)
/// nothing is capped. The cap bounds the time a round spends in sendmails that fail (a hung
/// or refusing MTA): once used up, the rest of the round's mail stays queued at once, so the
/// round ends well inside the unit's timeout whatever the MTA does.
struct Meter {
    limit: Option<Duration>,
    spent: Duration,
    failures: BTreeMap<&'static str, u64>,
    /// The first failure of the round: its kind and its reason in words.
    first: Option<(TransportError, String)>,
}

static METER: Mutex<Meter> =
    Mutex::new(Meter { limit: None, spent: Duration::ZERO, failures: BTreeMap::new(), first: None });

fn meter() -> std::sync::MutexGuard<'static, Meter> {
    METER.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `end_round` reports.
#[derive(Debug, Default, Clone)]
pub struct RoundFailures {
    /// Counter name and count, for every kind that happened.
    pub counts: Vec<(&'static str, u64)>,
    /// The first failure's kind and reason (no addresses).
    pub first: Option<(TransportError, String)>,
}

impl RoundFailures {
    /// For the round's line: empty when nothing failed, else `N (kind n, ...; first: why)`.
    pub fn line(&self) -> String {
        let total: u64 = self.counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return "0".into();
        }
        let kinds: Vec<String> =
            self.counts.iter().map(|(k, n)| format!("{} {n}", k.trim_start_matches("transport."))).collect();
        let first = self.first.as_ref().map_or(String::new(), |(_, why)| format!("; first: {why}"));
        format!("{total} ({}{first})", kinds.join(", "))
    }
}

/// Arms the meter for a round: at most `limit` in failing sends.
pub fn start_round(limit: Duration) {
    *meter() = Meter { limit: Some(limit), spent: Duration::ZERO, failures: BTreeMap::new(), first: None };
}

/// Disarms the meter and returns the round's failures.
pub fn end_round() -> RoundFailures {
    let mut m = meter();
    let out = RoundFailures { counts: m.failures.iter().map(|(k, n)| (*k, *n)).collect(), first: m.first.take() };
    *m = Meter { limit: None, spent: Duration::ZERO, failures: BTreeMap::new(), first: None };
    out
}

fn record(e: &TransportError, why: String, took: Duration) {
    let mut m = meter();
    m.spent += took;
    *m.failures.entry(e.counter()).or_default() += 1;
    if m.first.is_none() {
        m.first = Some((e.clone(), why));
    }
}

/// How mail leaves: a setting of every program that sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportKind {
    Sendmail,
    /// Deliver into `ROOT/<recipient>/` Maildirs (a lab setting).
    Maildir(PathBuf),
}

impl TransportKind {
    /// `sendmail` or `maildir:ROOT`, as the settings of every program write it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sendmail" => Some(TransportKind::Sendmail),
            t => t.strip_prefix("maildir:").filter(|r| !r.is_empty()).map(|r| TransportKind::Maildir(PathBuf::from(r))),
        }
    }
}

pub enum Transport {
    Sendmail { program: PathBuf, timeout: Duration },
    Maildir { root: PathBuf },
}

impl Transport {
    /// The transport of `kind`; `sendmail` and `timeout` are used by the sendmail kind.
    pub fn new(kind: &TransportKind, sendmail: &Path, timeout: Duration) -> Self {
        match kind {
            TransportKind::Sendmail => Transport::Sendmail { program: sendmail.to_path_buf(), timeout },
            TransportKind::Maildir(root) => Transport::Maildir { root: root.clone() },
        }
    }

    /// Sends one mail to `rcpts`, envelope sender `from` (a mix's own address, the nym
    /// server's bounce address: always our own, made from a validated domain; `None` for a
    /// sender, whose MTA knows its user). Ok only when every recipient's copy was accepted.
    pub fn send(&self, from: Option<&str>, rcpts: &[String], mail: &[u8]) -> Result<(), TransportError> {
        if rcpts.is_empty() || rcpts.iter().any(|r| !crate::mixes::address::plausible(r)) {
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

/// One sendmail, metered: refused at once when the round's time for failures is used up,
/// its timeout cut to what is left of it, its failure recorded with the reason.
fn sendmail(
    program: &PathBuf,
    timeout: Duration,
    from: Option<&str>,
    rcpts: &[String],
    mail: &[u8],
) -> Result<(), TransportError> {
    let left = {
        let m = meter();
        m.limit.map(|l| l.saturating_sub(m.spent))
    };
    if left == Some(Duration::ZERO) {
        let e = TransportError::OverTime;
        record(&e, e.to_string(), Duration::ZERO);
        return Err(e);
    }
    let started = Instant::now();
    match run_sendmail(program, left.map_or(timeout, |l| l.min(timeout)), from, rcpts, mail) {
        Ok(()) => Ok(()),
        Err((e, stderr)) => {
            let line = first_line_scrubbed(&stderr);
            let why = if line.is_empty() { e.to_string() } else { format!("{e}: {line}") };
            record(&e, why, started.elapsed());
            Err(e)
        }
    }
}

/// Runs sendmail once; on failure also returns what it wrote on stderr.
fn run_sendmail(
    program: &PathBuf,
    timeout: Duration,
    from: Option<&str>,
    rcpts: &[String],
    mail: &[u8],
) -> Result<(), (TransportError, Vec<u8>)> {
    let mut cmd = Command::new(program);
    cmd.arg("-i");
    if let Some(from) = from {
        cmd.arg("-f").arg(from);
    }
    let mut child = cmd
        .arg("--")
        .args(rcpts)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (TransportError::Spawn, e.to_string().into_bytes()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Read on a thread too (a full pipe would block the child), and bounded.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut stderr, 64 << 10), &mut buf);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        buf
    });
    let data = mail.to_vec();
    // Written on a thread: a sendmail that stops reading must not block us past the timeout.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let Some(status) = wait_or_kill(&mut child, timeout, Duration::from_millis(5)) else {
        // A grandchild (postdrop) may still hold the pipes: joining the writer or the
        // reader could wait as long as it lives, past the timeout and the round's limit.
        // Both threads are left to end with the pipes (or the process).
        drop((writer, reader));
        return Err((TransportError::Timeout, Vec::new()));
    };
    let _ = writer.join();
    let stderr = || reader.join().unwrap_or_default();
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err((TransportError::Status(c), stderr())),
        None => Err((TransportError::Signal, stderr())),
    }
}

/// Waits for `child` up to `timeout`, polling every `poll`; past it the child is killed
/// and reaped, and `None` says so. One place for the sendmail handover and `check`'s probe.
pub fn wait_or_kill(
    child: &mut std::process::Child,
    timeout: Duration,
    poll: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(poll),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
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
        let from = "mixtasy@a.test";
        let rcpt = vec!["bob@b.test".to_string()];
        let out = t.path().join("got");
        let ok = Transport::Sendmail {
            program: script(t.path(), &format!("echo \"$@\" > {}; cat >> {}", out.display(), out.display())),
            timeout: Duration::from_secs(10),
        };
        ok.send(Some(from), &rcpt, b"mail body").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "-i -f mixtasy@a.test -- bob@b.test\nmail body");
        let tempfail = Transport::Sendmail {
            program: script(t.path(), "cat >/dev/null; exit 75"),
            timeout: Duration::from_secs(10),
        };
        assert_eq!(tempfail.send(Some(from), &rcpt, b"x"), Err(TransportError::Status(75)));
        let hang = Transport::Sendmail { program: script(t.path(), "sleep 30"), timeout: Duration::from_millis(300) };
        assert_eq!(hang.send(Some(from), &rcpt, &vec![b'x'; 1 << 20]), Err(TransportError::Timeout));
        let missing = Transport::Sendmail { program: t.path().join("nope"), timeout: Duration::from_secs(1) };
        assert_eq!(missing.send(Some(from), &rcpt, b"x"), Err(TransportError::Spawn));
        assert_eq!(ok.send(Some(from), &["-oQ/tmp@x.test".into()], b"x"), Err(TransportError::BadRecipient));
        assert_eq!(ok.send(Some(from), &["../../etc@x.test".into()], b"x"), Err(TransportError::BadRecipient));
    }

    #[test]
    fn stderr_reason_names_nobody() {
        let err = b"\n  postdrop: warning: unable to look up public/pickup for <alice@example.org>: Permission denied\nsecond line bob@x.test\n";
        assert_eq!(
            first_line_scrubbed(err),
            "postdrop: warning: unable to look up public/pickup for <address> Permission denied"
        );
        assert_eq!(first_line_scrubbed(b""), "");
        assert_eq!(first_line_scrubbed(&[b'x'; 500]).len(), 160);
    }

    #[test]
    fn maildir_delivery() {
        let t = tempfile::tempdir().unwrap();
        let from = "mixtasy@a.test";
        let tr = Transport::Maildir { root: t.path().to_path_buf() };
        tr.send(Some(from), &["Bob@b.test".into(), "carol@b.test".into()], b"hello").unwrap();
        for r in ["bob@b.test", "carol@b.test"] {
            let files: Vec<_> = std::fs::read_dir(t.path().join(r).join("new")).unwrap().collect();
            assert_eq!(files.len(), 1);
        }
    }
}
