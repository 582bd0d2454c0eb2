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

pub fn mixtasy_pinger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mixtasy-pinger"))
}

/// The longest any one command of a test may run. A command that hangs (CI has no terminal
/// and no standard input) is killed and fails its test with its name, rather than holding
/// the whole run until CI's own limit ends it without a word.
const COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(900);

/// Runs `cmd` with `stdin`, returns its output without judging it.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let out = match finished.recv_timeout(COMMAND_LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{cmd:?} ran for over {COMMAND_LIMIT:?} and was killed");
        }
    };
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
    succeeded(&desc, run(cmd, stdin))
}

/// Asserts that the run of the command described by `desc` succeeded.
fn succeeded(desc: &str, out: Output) -> Output {
    assert!(out.status.success(), "expected success\n{}", describe(&Command::new(desc), &out));
    out
}

/// A temporary world of node homes and one sender home, all acting at one fixed time.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub now: u64,
    pub nodes: Vec<String>,
    /// With `capture_logs`, what the binaries printed in `round`, `round_later`, `status`,
    /// `create` and `peel` (its stderr; its stdout is the mail), and whatever a test adds
    /// with `record` or `ok_logged`; `None` otherwise.
    pub log: std::sync::Mutex<Option<Vec<Logged>>>,
}

/// One invocation's output, as an operator's log would hold it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// What ran: the command line's arguments after the binary.
    pub what: String,
    /// The node it ran for, if any (`status` may name its own address).
    pub node: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Net {
    pub fn new(now: u64) -> Self {
        Net { dir: tempfile::tempdir().unwrap(), now, nodes: Vec::new(), log: std::sync::Mutex::new(None) }
    }

    /// From now on, keeps what the helpers' invocations print (see `log`).
    pub fn capture_logs(&self) {
        self.log.lock().unwrap().get_or_insert_with(Vec::new);
    }

    /// Everything the captured invocations wrote on stderr, in order.
    pub fn captured_stderr(&self) -> String {
        let log = self.log.lock().unwrap();
        log.as_ref()
            .expect("capture_logs first")
            .iter()
            .map(|l| String::from_utf8_lossy(&l.stderr).into_owned())
            .collect()
    }

    /// Adds one invocation's output to the captured logs, if capturing.
    pub fn record(&self, what: String, node: Option<&str>, out: &Output) {
        if let Some(log) = self.log.lock().unwrap().as_mut() {
            log.push(Logged {
                what,
                node: node.map(str::to_string),
                stdout: out.stdout.clone(),
                stderr: out.stderr.clone(),
            });
        }
    }

    /// Runs `cmd` for `node` and asserts it succeeded, like `ok`; records its output if
    /// capturing.
    pub fn ok_logged(&self, cmd: Command, node: Option<&str>, stdin: &[u8]) -> Output {
        let desc = format!("{cmd:?}");
        let what = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let out = run(cmd, stdin);
        self.record(what, node, &out);
        succeeded(&desc, out)
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
        self.ok_logged(c, None, original);
        let mut files: Vec<PathBuf> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Peels `mail` at `fqdn`: Ok(stdout, stderr) or Err(stderr) with the drop line.
    pub fn peel(&self, fqdn: &str, mail: &[u8]) -> Result<(Vec<u8>, String), String> {
        let mut c = self.node_cmd(fqdn);
        c.arg("peel");
        let what = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let out = run(c, mail);
        // Its stdout is the peeled mail, not a log: only stderr is recorded.
        self.record(what, Some(fqdn), &Output { stdout: Vec::new(), ..out.clone() });
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

/// `mail` with its binary body replaced by `body` (fresh armor and CRC-24), as an attacker
/// on the wire would send it.
pub fn rewrap(mail: &[u8], body: &[u8]) -> Vec<u8> {
    let inc = mixtasy::format::wire::parse(mail).unwrap();
    let to = mixtasy::mixes::address::MixAddress::parse(&inc.to[0]).unwrap();
    mixtasy::format::wire::build(None, &to, body)
}

/// The binary body of a wire message.
pub fn wire_body(mail: &[u8]) -> Vec<u8> {
    mixtasy::format::armor::decode(mail).expect("wire body is armored")
}

impl Net {
    /// Sets `key = value` (value as TOML text) in a node's mixtasyd.toml.
    pub fn configure(&self, fqdn: &str, key: &str, value: &str) {
        configure_file(&self.home(fqdn).join("mixtasyd.toml"), key, value);
    }

    /// Where the `maildir:` transport of a lab network delivers: one Maildir per address.
    pub fn mail_root(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The Maildir of one address in the lab network.
    pub fn mailbox(&self, address: &str) -> PathBuf {
        self.mail_root().join(address)
    }

    /// A node wired into the lab network: it reads `mail/mixtasy@FQDN`, delivers through
    /// `maildir:mail`, and fires its whole pool every round; dummies off unless set again.
    pub fn add_lab_node(&mut self, fqdn: &str, modes: &str) {
        self.add_node(fqdn, modes);
        let inbox = self.mailbox(&format!("mixtasy@{fqdn}"));
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(inbox.join(sub)).unwrap();
        }
        self.configure(fqdn, "maildir", &format!("{:?}", inbox.display().to_string()));
        self.configure(fqdn, "transport", &format!("{:?}", format!("maildir:{}", self.mail_root().display())));
        self.configure(fqdn, "min_pool", "0");
        self.configure(fqdn, "threshold", "1");
        self.configure(fqdn, "rate", "1.0");
        self.configure(fqdn, "dummy_time_p", "0.0");
        self.configure(fqdn, "dummy_flush_p", "0.0");
        self.configure(fqdn, "dummy_starved_p", "0.0");
        self.configure(fqdn, "dummy_arrival_p", "0.0");
    }

    /// Gives every node every node's public key (for dummies).
    pub fn introduce_nodes(&self) {
        let mut keys = Vec::new();
        for n in &self.nodes {
            keys.extend(self.export(n, false));
        }
        for n in &self.nodes {
            let mut c = self.node_cmd(n);
            c.args(["directory", "import"]);
            ok(c, &keys);
        }
    }

    /// Drops a wire mail into the Maildir of the mix it is addressed to.
    pub fn inject(&self, mail: &[u8]) {
        let to = wire_to(mail);
        let dir = self.mailbox(&format!("mixtasy@{to}")).join("new");
        let name = format!("inject.{}.{}", std::process::id(), rand::random::<u64>());
        std::fs::write(dir.join(name), mail).unwrap();
    }

    /// Runs one round at a node; returns its stdout line.
    pub fn round(&self, fqdn: &str) -> String {
        let mut c = self.node_cmd(fqdn);
        c.arg("--round");
        String::from_utf8(self.ok_logged(c, Some(fqdn), b"").stdout).unwrap()
    }

    /// A node's counters and sizes from `status --json`.
    pub fn status(&self, fqdn: &str) -> Status {
        let mut c = self.node_cmd(fqdn);
        c.args(["status", "--json"]);
        Status(String::from_utf8(self.ok_logged(c, Some(fqdn), b"").stdout).unwrap())
    }

    /// Files delivered into an address's Maildir (new/).
    pub fn delivered(&self, address: &str) -> Vec<Vec<u8>> {
        let dir = self.mailbox(address).join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }
}

/// `status --json` output with small accessors (no JSON crate in the tests).
pub struct Status(pub String);

impl Status {
    /// A top-level number, or a counter (missing counters are 0).
    pub fn get(&self, key: &str) -> i64 {
        let needle = format!("\"{key}\":");
        match self.0.find(&needle) {
            Some(i) => {
                let rest = &self.0[i + needle.len()..];
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
                rest[..end].parse().unwrap_or(0)
            }
            None => 0,
        }
    }

    /// The sum of every counter whose name starts with `prefix` (totals, not today's).
    pub fn sum(&self, prefix: &str) -> i64 {
        let counters = &self.0[self.0.find("\"counters\":{").expect("counters") + 12..];
        counters[..counters.find('}').expect("counters close")]
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .filter(|(k, _)| k.trim_matches('"').starts_with(prefix))
            .map(|(_, v)| v.trim().parse::<i64>().unwrap_or(0))
            .sum()
    }

    /// The `today` object (its `date`, `since` and counters), to read with `get`.
    pub fn today(&self) -> Status {
        Status(self.0[self.0.find("\"today\":{").expect("today in status") + 8..].to_string())
    }
}

impl Net {
    /// A node as the directory sees it (its public key checked against D8), at `self.now`.
    pub fn mix(&self, fqdn: &str) -> mixtasy::mixes::directory::Mix {
        use sequoia_openpgp::parse::Parse;
        let cert = sequoia_openpgp::Cert::from_bytes(&self.export(fqdn, false)).unwrap();
        mixtasy::mixes::directory::check(&cert, self.time()).unwrap()
    }

    pub fn time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.now)
    }

    /// A wire mail carrying `payload` as a final message of `kind`, along `path` (a list of
    /// node names), built with the library: for paths `mixtasy create` refuses to make.
    pub fn wrap_final(&self, kind: mixtasy::format::message::Kind, payload: &[u8], path: &[&str]) -> Vec<u8> {
        let mixes: Vec<mixtasy::mixes::directory::Mix> = path.iter().map(|f| self.mix(f)).collect();
        self.wrap_final_over(kind, payload, &mixes)
    }

    /// `wrap_final` along mixes already looked up with `mix` (which runs the binary), for
    /// tests that make many messages.
    pub fn wrap_final_over(
        &self,
        kind: mixtasy::format::message::Kind,
        payload: &[u8],
        mixes: &[mixtasy::mixes::directory::Mix],
    ) -> Vec<u8> {
        let refs: Vec<&mixtasy::mixes::directory::Mix> = mixes.iter().collect();
        let mut rng = rand::rng();
        let fin =
            mixtasy::format::message::build_final(&mixtasy::format::message::new_id(&mut rng), kind, payload, &mut rng);
        mixtasy::sender::create::wrap(fin, &refs, None, self.time(), &mut rng).unwrap().mail
    }

    /// An original of any size as the wire mails of its parts (one if it fits a final
    /// message, `create::split` otherwise), along `path`, built with the library.
    pub fn wrap_original(&self, original: &[u8], path: &[&str]) -> Vec<Vec<u8>> {
        let mixes: Vec<mixtasy::mixes::directory::Mix> = path.iter().map(|f| self.mix(f)).collect();
        let refs: Vec<&mixtasy::mixes::directory::Mix> = mixes.iter().collect();
        let mut rng = rand::rng();
        let id = mixtasy::format::message::new_id(&mut rng);
        mixtasy::sender::create::split(original, &id)
            .into_iter()
            .map(|(kind, payload)| {
                mixtasy::sender::create::wrap(
                    mixtasy::format::message::build_final(&id, kind, payload, &mut rng),
                    &refs,
                    None,
                    self.time(),
                    &mut rng,
                )
                .unwrap()
                .mail
            })
            .collect()
    }

    /// One round at a node as if it ran `secs` seconds after `self.now`.
    pub fn round_later(&self, fqdn: &str, secs: u64) -> String {
        let mut c = mixtasyd();
        c.arg("--home").arg(self.home(fqdn)).args(["--now", &(self.now + secs).to_string(), "--round"]);
        String::from_utf8(self.ok_logged(c, Some(fqdn), b"").stdout).unwrap()
    }
}

/// A throwaway GnuPG home (0700), GnuPG being the independent peer of these tests. Dropping
/// it kills its agent and dirmngr.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    /// Fails the test (does not skip it) when gpg is missing: scripts/install-deps installs it.
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        match Command::new("gpg").arg("--version").stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => {}
            _ => panic!("GnuPG (`gpg`) is not usable: these tests need it as the interoperability peer; run scripts/install-deps --test"),
        }
        let home = tempfile::tempdir().expect("temporary GNUPGHOME");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    /// `gpg --batch --quiet --homedir <home>`.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--batch").arg("--quiet").arg("--homedir").arg(self.home.path());
        c
    }

    /// Imports an armored key (public or secret).
    pub fn import(&self, key: &[u8]) {
        let mut c = self.cmd();
        c.arg("--import");
        ok(c, key);
    }

    /// Runs gpg with `args` and `stdin`, asserting exit status 0.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        ok(c, stdin)
    }

    /// Stops one of the home's daemons (`dirmngr` remembers a dead keyserver), or `all`.
    pub fn kill(&self, what: &str) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", what])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        self.kill("all");
    }
}

/// Every spool file is counted once: `intake.taken` is the sum of the intake outcomes
/// (mixtasyd(8), COUNTERS). The drop counters listed here count later events instead.
pub fn assert_counters_add_up(st: &Status) {
    const LATER: [&str; 13] = [
        "drop.recipients",
        "drop.recipients-gave-up",
        "drop.exit-queue-full",
        "drop.parts-over-cap",
        "drop.recipients-refused",
        "drop.exit-header-too-large",
        "drop.parts-expired",
        "drop.exit-no-recipient",
        "drop.exit-gave-up",
        "drop.recipients-blocked",
        "drop.recipients-quota",
        "drop.exit-blocked",
        "drop.exit-quota",
    ];
    let outcomes =
        st.sum("intake.") - st.get("intake.taken") + st.sum("drop.") - LATER.iter().map(|k| st.get(k)).sum::<i64>();
    assert_eq!(st.get("intake.taken"), outcomes, "counters do not add up: {}", st.0);
}

/// The original body of a delivered text/plain mail: everything before the exit's footer,
/// which must be there (mixtasyd(8), Destination blocking).
pub fn strip_footer(body: &[u8]) -> &[u8] {
    const START: &[u8] = b"-- \nThis mail came through the Mixtasy anonymous remailer\n";
    let at = body.windows(START.len()).rposition(|w| w == START).unwrap_or_else(|| {
        panic!("no footer in the delivered body: {}", String::from_utf8_lossy(&body[body.len().saturating_sub(400)..]))
    });
    assert!(String::from_utf8_lossy(&body[at..]).contains("destination-block"), "the footer says how to block");
    &body[..at]
}

/// A loopback port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `sks` binary (Debian puts it in /usr/sbin, which a user's PATH may lack).
fn sks_binary() -> PathBuf {
    for p in std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default() {
        if p.join("sks").is_file() {
            return p.join("sks");
        }
    }
    let sbin = Path::new("/usr/sbin/sks");
    assert!(sbin.is_file(), "the SKS keyserver (`sks`) is not installed: these tests run Debian's sks on loopback; run scripts/install-deps --test");
    sbin.to_path_buf()
}

/// An SKS keyserver in a temporary fake root (`-basedir`), HKP on 127.0.0.1 at a free port,
/// no mail sync, no gossip. Dropping it kills it by PID and reaps it. A missing `sks` is a
/// failure, not a skip: `scripts/install-deps --test` installs it.
pub struct Sks {
    child: Option<std::process::Child>,
    root: tempfile::TempDir,
    pub url: String,
}

impl Sks {
    pub fn start() -> Sks {
        use std::time::Duration;
        let bin = sks_binary();
        let root = tempfile::tempdir().expect("temporary SKS root");
        let base = root.path();
        for d in ["etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks", "var/spool/sks"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let (hkp, recon) = (free_port(), free_port());
        std::fs::write(
            base.join("etc/sks/sksconf"),
            format!("hkp_address: 127.0.0.1\nhkp_port: {hkp}\nrecon_address: 127.0.0.1\nrecon_port: {recon}\ndisable_mailsync:\ndontgossip:\n"),
        )
        .unwrap();
        std::fs::write(base.join("etc/sks/membership"), "").unwrap();
        let mut build = Command::new(&bin);
        build.arg("build").arg("-basedir").arg(base);
        let desc = format!("{build:?}");
        let out = run(build, b"");
        assert!(out.status.success(), "`sks build` failed\n{}", describe(&Command::new(desc), &out));
        let log = std::fs::File::create(base.join("db.log")).unwrap();
        let child = Command::new(&bin)
            .arg("db")
            .arg("-basedir")
            .arg(base)
            .arg("-stdoutlog")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut sks = Sks { child: Some(child), root, url: format!("hkp://127.0.0.1:{hkp}") };
        // Ready when a lookup gets an answer (404: no keys yet). Bounded: 100 × 100 ms.
        let ks = mixtasy::mixes::keyserver::Keyserver::new(&sks.url, Duration::from_secs(2)).unwrap();
        for _ in 0..100 {
            if let Some(status) = sks.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sks db exited at start ({status}):\n{}", sks.log());
            }
            match ks.fetch_all() {
                Ok(None) => return sks,
                Ok(Some(_)) => panic!("a fresh SKS already has mix keys"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("sks db did not answer on {} within 10 s:\n{}", sks.url, sks.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("db.log")).unwrap_or_default()
    }

    pub fn keyserver(&self) -> mixtasy::mixes::keyserver::Keyserver {
        mixtasy::mixes::keyserver::Keyserver::new(&self.url, std::time::Duration::from_secs(10)).unwrap()
    }
}

impl Drop for Sks {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // SIGKILL cannot be ignored; reap it, bounded (50 × 100 ms).
            for _ in 0..50 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("sks db (pid {}) did not exit after SIGKILL", child.id());
        }
    }
}

/// Every file under `dir` (recursively) holding any `n`-byte run of `text`: what a reader
/// of the disk could still recover of it. Runs are looked up in a set, so the search is
/// linear in the files' size.
pub fn files_with_a_run_of(dir: &Path, text: &[u8], n: usize) -> Vec<String> {
    let runs: std::collections::HashSet<&[u8]> = text.windows(n).collect();
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(n).any(|w| runs.contains(w)) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

/// A JSON value, parsed strictly (RFC 8259: no trailing commas, no control characters in
/// strings, nothing after the value), so that a test can show `status --json` is JSON.
#[derive(Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let b = text.as_bytes();
        let mut i = 0;
        let v = json_value(b, &mut i)?;
        json_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("text after the value at byte {i}"));
        }
        Ok(v)
    }

    /// A member of an object (panics with the object when missing: a test failure).
    pub fn at(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no member {key:?} in {self:?}")),
            _ => panic!("{self:?} is not an object (looking for {key:?})"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Json::Num(n) if n.fract() == 0.0 => *n as i64,
            _ => panic!("{self:?} is not an integer"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("{self:?} is not a string"),
        }
    }

    /// An object's members.
    pub fn members(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(m) => m,
            _ => panic!("{self:?} is not an object"),
        }
    }
}

fn json_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b" \t\n\r".contains(&b[*i]) {
        *i += 1;
    }
}

fn json_value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    json_ws(b, i);
    let lit = |i: &mut usize, word: &str, v: Json| {
        if b[*i..].starts_with(word.as_bytes()) {
            *i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {i}"))
        }
    };
    match b.get(*i) {
        None => Err("unexpected end".into()),
        Some(b'n') => lit(i, "null", Json::Null),
        Some(b't') => lit(i, "true", Json::Bool(true)),
        Some(b'f') => lit(i, "false", Json::Bool(false)),
        Some(b'"') => json_string(b, i).map(Json::Str),
        Some(b'[') => {
            *i += 1;
            let mut v = Vec::new();
            json_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(v));
            }
            loop {
                v.push(json_value(b, i)?);
                json_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(v));
                    }
                    _ => return Err(format!("expected , or ] at byte {i}")),
                }
            }
        }
        Some(b'{') => {
            *i += 1;
            let mut m = Vec::new();
            json_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                json_ws(b, i);
                if b.get(*i) != Some(&b'"') {
                    return Err(format!("expected a member name at byte {i}"));
                }
                let k = json_string(b, i)?;
                json_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("expected : at byte {i}"));
                }
                *i += 1;
                if m.iter().any(|(n, _)| *n == k) {
                    return Err(format!("member {k:?} twice"));
                }
                m.push((k, json_value(b, i)?));
                json_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("expected , or }} at byte {i}")),
                }
            }
        }
        Some(_) => {
            let start = *i;
            let digits = |i: &mut usize| {
                let s = *i;
                while *i < b.len() && b[*i].is_ascii_digit() {
                    *i += 1;
                }
                *i > s
            };
            if b.get(*i) == Some(&b'-') {
                *i += 1;
            }
            let int_start = *i;
            if !digits(i) || (b[int_start] == b'0' && *i - int_start > 1) {
                return Err(format!("bad number at byte {start}"));
            }
            if b.get(*i) == Some(&b'.') {
                *i += 1;
                if !digits(i) {
                    return Err(format!("bad fraction at byte {start}"));
                }
            }
            if matches!(b.get(*i), Some(b'e' | b'E')) {
                *i += 1;
                if matches!(b.get(*i), Some(b'+' | b'-')) {
                    *i += 1;
                }
                if !digits(i) {
                    return Err(format!("bad exponent at byte {start}"));
                }
            }
            let text = std::str::from_utf8(&b[start..*i]).unwrap();
            text.parse().map(Json::Num).map_err(|e| format!("{text}: {e}"))
        }
    }
}

fn json_string(b: &[u8], i: &mut usize) -> Result<String, String> {
    *i += 1;
    let mut out = Vec::new();
    loop {
        match b.get(*i) {
            None => return Err("unterminated string".into()),
            Some(b'"') => {
                *i += 1;
                return String::from_utf8(out).map_err(|e| e.to_string());
            }
            Some(c) if *c < 0x20 => return Err(format!("control character in a string at byte {i}")),
            Some(b'\\') => {
                let e = *b.get(*i + 1).ok_or("unterminated escape")?;
                *i += 2;
                let c = match e {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hex =
                            b.get(*i..*i + 4).and_then(|h| std::str::from_utf8(h).ok()).ok_or("short \\u escape")?;
                        *i += 4;
                        char::from_u32(u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?).unwrap_or('\u{fffd}')
                    }
                    _ => return Err(format!("bad escape at byte {i}")),
                };
                out.extend(c.to_string().as_bytes());
            }
            Some(c) => {
                out.push(*c);
                *i += 1;
            }
        }
    }
}

/// The oracle refuses what is not JSON, or a test using it could not fail.
#[test]
fn json_oracle_refuses_what_is_not_json() {
    let good = Json::parse("{\"a\":[1,-2.5e3,true,null,\"x\\\"\\u00e9\"],\"b\":{}}\n").unwrap();
    assert_eq!(
        good.at("a"),
        &Json::Arr(vec![Json::Num(1.0), Json::Num(-2500.0), Json::Bool(true), Json::Null, Json::Str("x\"é".into())])
    );
    for bad in [
        "{\"a\":1,}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1}}",
        "[1 2]",
        "{\"a\":\"\n\"}",
        "{\"a\":1,\"a\":2}",
        "",
    ] {
        assert!(Json::parse(bad).is_err(), "{bad:?} was taken for JSON");
    }
}

/// Sets `key = value` (value as TOML text) in the mixtasyd.toml at `path`, keeping the
/// file (its owner and mode) and every other line.
pub fn configure_file(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} = ")) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no setting {key} in {}", path.display());
    std::fs::write(path, out.join("\n") + "\n").unwrap();
}

/// A sendmail for the sender that delivers into the lab network as the `maildir:`
/// transport does: the last argument is the mix address, the mail goes to its Maildir.
pub fn lab_sendmail(net: &Net) -> PathBuf {
    lab_sendmail_in(net.dir.path(), &net.mail_root())
}

/// `lab_sendmail` for any lab: the script is `DIR/lab-sendmail`, it delivers into
/// `mail_root/<recipient>/` and appends its arguments (`-f` and all) to
/// `DIR/lab-sendmail.log`.
pub fn lab_sendmail_in(dir: &Path, mail_root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("lab-sendmail");
    let body = format!(
        "#!/bin/sh\nfor a; do rcpt=$a; done\nd={root}/$rcpt\nmkdir -p $d/tmp $d/new $d/cur\n\
         f=sent.$$.$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')\ncat > $d/tmp/$f && mv $d/tmp/$f $d/new/$f\necho \"$@\" >> {log}\n",
        root = mail_root.display(),
        log = dir.join("lab-sendmail.log").display()
    );
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Debian's INN (`innd`, with `nnrpd` for readers) on a free loopback port, in a temporary
/// root of its own (`INNCONF` points every path there), with one local group,
/// `alt.anonymous.messages`, that every loopback client may read and post to. The system
/// INN is neither used nor touched. innd runs as user `news` (started as root, it drops to
/// it), so the tests that use it need root, as CI has. Dropping it kills innd by PID.
pub struct Inn {
    child: Option<std::process::Child>,
    root: tempfile::TempDir,
    pub port: u16,
}

/// The group `Inn` carries.
pub const INN_GROUP: &str = "alt.anonymous.messages";

impl Inn {
    pub fn start() -> Inn {
        use std::os::unix::fs::PermissionsExt;
        use std::time::Duration;
        let innd = Path::new("/usr/lib/news/bin/innd");
        assert!(
            innd.is_file(),
            "INN (`inn2`) is not installed: these tests run Debian's innd on loopback; run scripts/install-deps --test"
        );
        let root = tempfile::tempdir().expect("temporary INN root");
        let r = root.path();
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in [
            "etc",
            "db",
            "run",
            "log",
            "tmp",
            "http",
            "spool/articles",
            "spool/overview",
            "spool/incoming",
            "spool/outgoing",
            "spool/archive",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let port = free_port();
        let p = |d: &str| r.join(d).display().to_string();
        let conf = format!(
            "domain: lab.test\nfromhost: lab.test\nserver: 127.0.0.1\npathhost: news.lab.test\npathnews: /usr/lib/news\n\
             patharchive: {}\npatharticles: {}\npathdb: {}\npathetc: {}\npathhttp: {}\npathincoming: {}\npathlog: {}\n\
             pathoutgoing: {}\npathoverview: {}\npathrun: {}\npathspool: {}\npathtmp: {}\n\
             ovmethod: tradindexed\nhismethod: hisv6\nport: {port}\nbindaddress: 127.0.0.1\n\
             pgpverify: false\nmaxartsize: 4000000\n\
             localmaxartsize: 4000000\nenableoverview: true\nwireformat: true\nnoreader: false\n\
             mta: \"/bin/true %s\"\nmailcmd: /bin/true\ncheckincludedtext: false\nartcutoff: 0\n",
            p("spool/archive"), p("spool/articles"), p("db"), p("etc"), p("http"), p("spool/incoming"), p("log"),
            p("spool/outgoing"), p("spool/overview"), p("run"), p("spool"), p("tmp"),
        );
        let files: [(&str, &str); 7] = [
            ("etc/inn.conf", &conf),
            ("etc/storage.conf", "method tradspool {\n    newsgroups: *\n    class: 0\n}\n"),
            // Every loopback client is a reader (nnrpd), which may post: it hands the article
            // to innd over the local socket (no `nnrpdposthost`); no feeding peers.
            ("etc/readers.conf", "auth \"local\" {\n    hosts: \"127.0.0.1\"\n    default: \"<local>\"\n}\naccess \"local\" {\n    users: \"<local>\"\n    newsgroups: \"*\"\n    access: RPA\n}\n"),
            ("etc/incoming.conf", ""),
            ("etc/newsfeeds", "ME:*::\n"),
            ("etc/expire.ctl", "/remember/:1\n*:A:never:never:never\n"),
            ("db/active", "alt.anonymous.messages 0000000000 0000000001 y\ncontrol 0000000000 0000000001 n\ncontrol.cancel 0000000000 0000000001 n\njunk 0000000000 0000000001 n\n"),
        ];
        for (f, text) in files {
            std::fs::write(r.join(f), text).unwrap();
        }
        for f in ["db/active.times", "db/newsgroups", "db/history"] {
            std::fs::write(r.join(f), "").unwrap();
        }
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("news:news").arg(r);
        ok(chown, b"");
        let mut dbz = Command::new("su");
        dbz.args(["news", "-s", "/bin/sh", "-c", "/usr/lib/news/bin/makedbz -i -o"])
            .current_dir(r.join("db"))
            .env("INNCONF", r.join("etc/inn.conf"));
        ok(dbz, b"");
        let log = std::fs::File::create(r.join("innd.out")).unwrap();
        let child = Command::new(innd)
            .arg("-f")
            .env("INNCONF", r.join("etc/inn.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting innd: {e}"));
        let mut inn = Inn { child: Some(child), root, port };
        // Ready when a reader gets nnrpd's greeting. Bounded: 100 × 100 ms.
        for _ in 0..100 {
            if let Some(status) = inn.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("innd exited at start ({status}): {}", inn.log());
            }
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line);
                if line.starts_with("200") {
                    return inn;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("innd did not answer on 127.0.0.1:{port} within 10 s: {}", inn.log());
    }

    /// `nntp://127.0.0.1:PORT/GROUP`, as `mixtasy-nymd`'s `news` and `mixtasy nym fetch --from` read it.
    pub fn url(&self) -> String {
        format!("nntp://127.0.0.1:{}/{INN_GROUP}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("innd.out")).unwrap_or_default()
    }
}

impl Drop for Inn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            for _ in 0..50 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("innd (pid {}) did not exit after SIGKILL", child.id());
        }
    }
}
