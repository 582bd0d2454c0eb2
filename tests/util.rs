//! Test helpers: node homes and a sender home made through the real binaries, run with
//! assertions that show the command, its output and the directory when they fail.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// 2026-11-21 12:00:00 UTC: inside the validity of the GnuPG fixture's subkeys.
pub const VECTOR_NOW: u64 = 1_795_262_400;

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn mixtasyd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mixtasyd"))
}

pub fn mixtasy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mixtasy"))
}

/// Runs `cmd` with `stdin`, returns its output without judging it.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(2000)]),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and asserts it succeeded.
pub fn ok(cmd: Command, stdin: &[u8]) -> Output {
    let desc = format!("{cmd:?}");
    let out = run(cmd, stdin);
    assert!(out.status.success(), "expected success\n{}", describe(&Command::new(desc), &out));
    out
}

/// A temporary world of node homes and one sender home, all acting at one fixed time.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub now: u64,
    pub nodes: Vec<String>,
}

impl Net {
    pub fn new(now: u64) -> Self {
        Net { dir: tempfile::tempdir().unwrap(), now, nodes: Vec::new() }
    }

    pub fn home(&self, fqdn: &str) -> PathBuf {
        self.dir.path().join("nodes").join(fqdn)
    }

    pub fn client_home(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// `mixtasyd` for one node, with `--home` and `--now` set.
    pub fn node_cmd(&self, fqdn: &str) -> Command {
        let mut c = mixtasyd();
        c.arg("--home").arg(self.home(fqdn)).arg("--now").arg(self.now.to_string());
        c
    }

    /// `mixtasy` for the sender, with `--home` and `--now` set.
    pub fn client_cmd(&self) -> Command {
        let mut c = mixtasy();
        c.arg("--home").arg(self.client_home()).arg("--now").arg(self.now.to_string());
        c
    }

    /// Creates a node home with a new key.
    pub fn add_node(&mut self, fqdn: &str, modes: &str) {
        let mut c = self.node_cmd(fqdn);
        c.args(["init", "--address", &format!("mixtasy@{fqdn}"), "--modes", modes]);
        ok(c, b"");
        self.nodes.push(fqdn.to_string());
    }

    /// Creates a node home from an existing secret key file.
    pub fn add_node_from_key(&mut self, fqdn: &str, key: &Path) {
        let mut c = self.node_cmd(fqdn);
        c.arg("init").arg("--key").arg(key);
        ok(c, b"");
        self.nodes.push(fqdn.to_string());
    }

    /// The armored public (or secret) key of a node.
    pub fn export(&self, fqdn: &str, secret: bool) -> Vec<u8> {
        let mut c = self.node_cmd(fqdn);
        c.args(["key", "export"]);
        if secret {
            c.arg("--secret");
        }
        ok(c, b"").stdout
    }

    /// Imports every node's public key into the sender's directory.
    pub fn publish_all_to_client(&self) {
        let mut keys = Vec::new();
        for n in &self.nodes {
            keys.extend(self.export(n, false));
        }
        let mut c = self.client_cmd();
        c.args(["directory", "import"]);
        ok(c, &keys);
    }

    /// Creates wire messages for `original`; returns them in file order.
    pub fn create(&self, original: &[u8], extra: &[&str]) -> Vec<Vec<u8>> {
        let out = tempfile::tempdir_in(self.dir.path()).unwrap();
        let mut c = self.client_cmd();
        c.arg("create").arg("--out").arg(out.path()).args(extra);
        ok(c, original);
        let mut files: Vec<PathBuf> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Peels `mail` at `fqdn`: Ok(stdout, stderr) or Err(stderr) with the drop line.
    pub fn peel(&self, fqdn: &str, mail: &[u8]) -> Result<(Vec<u8>, String), String> {
        let mut c = self.node_cmd(fqdn);
        c.arg("peel");
        let out = run(c, mail);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => Ok((out.stdout, stderr)),
            Some(1) => Err(stderr),
            _ => panic!("peel failed without a drop:\n{stderr}"),
        }
    }
}

/// The To: mix of a wire message.
pub fn wire_to(mail: &[u8]) -> String {
    let text = String::from_utf8_lossy(mail);
    text.lines()
        .find_map(|l| l.strip_prefix("To: "))
        .map(|a| a.trim().trim_start_matches("mixtasy@").to_string())
        .expect("wire message has a To: header")
}

/// The binary body of a wire message.
pub fn wire_body(mail: &[u8]) -> Vec<u8> {
    mixtasy::armor::decode(mail).expect("wire body is armored")
}
