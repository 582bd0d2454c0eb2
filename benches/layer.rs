//! Cost of one Mixtasy layer: peeling in process, creating, and GnuPG as the yardstick.
//!
//! Run with `cargo bench --bench layer` (release profile) or `scripts/bench`. Everything runs
//! in one process, so the ratios printed at the end compare figures taken on the same machine
//! under the same load. The machine may be noisy: the absolute figures are only indications,
//! and nothing here asserts a timing. Set `MIXTASY_BENCH_QUICK=1` for a short smoke run.
//!
//! On a CPU with SHA extensions the benchmark then runs itself a second time with them masked
//! for OpenSSL (`OPENSSL_ia32cap`, our SHA-1) and Nettle (`NETTLE_FAT_OVERRIDE`, Sequoia's
//! backend), so both figures come from one command: the peel target of issue 18 is for a CPU
//! without them. Each run names the SHA-1 code it ran.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mixtasy::format::armor;
use mixtasy::format::cfb;
use mixtasy::format::layer;
use mixtasy::format::message;
use mixtasy::format::sizes::{INNER, OUTER};
use mixtasy::format::verification;
use mixtasy::format::wire;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::{self, Mix};
use mixtasy::mixes::keys::{self, KeyRing};
use mixtasy::mixes::modes::Modes;
use mixtasy::mixes::session;
use mixtasy::node::peel::{self, Node, Outcome, Peeled};
use mixtasy::sender::create::{self, Options};
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp::Cert;

/// Targets (issue 18): a whole peel at most 120 µs and GnuPG at least 30 times slower; a
/// seal at most 150 µs.
const PEEL_TARGET_US: f64 = 120.0;
const GPG_RATIO_TARGET: f64 = 30.0;
const SEAL_TARGET_US: f64 = 150.0;

/// Iteration counts (scaled down by `MIXTASY_BENCH_QUICK`).
struct Plan {
    warmup: usize,
    peel: usize,
    parts: usize,
    create: usize,
    seal: usize,
    gpg: usize,
}

impl Plan {
    fn new() -> Self {
        if std::env::var_os("MIXTASY_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0") {
            Plan { warmup: 20, peel: 200, parts: 100, create: 30, seal: 100, gpg: 10 }
        } else {
            Plan { warmup: 200, peel: 2000, parts: 1000, create: 300, seal: 1000, gpg: 50 }
        }
    }
}

/// Order statistics of one measurement, in microseconds.
#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    mean: f64,
    min: f64,
    p90: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(|a, b| a.total_cmp(b));
        let n = us.len();
        let median = if n % 2 == 1 { us[n / 2] } else { (us[n / 2 - 1] + us[n / 2]) / 2.0 };
        let p90 = us[((n - 1) as f64 * 0.9).round() as usize];
        Stats { n, median, mean: us.iter().sum::<f64>() / n as f64, min: us[0], p90 }
    }

    /// The same figures divided by `k` (per layer of a k-hop create).
    fn per(self, k: f64) -> Stats {
        Stats { n: self.n, median: self.median / k, mean: self.mean / k, min: self.min / k, p90: self.p90 / k }
    }
}

/// Times `f` `n` times after `warmup` untimed runs.
fn time<T>(warmup: usize, n: usize, mut f: impl FnMut() -> T) -> Stats {
    for _ in 0..warmup {
        black_box(f());
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        black_box(f());
        samples.push(t.elapsed());
    }
    Stats::of(&samples)
}

struct Table {
    rows: Vec<(String, Stats)>,
}

impl Table {
    fn add(&mut self, name: impl Into<String>, s: Stats) -> Stats {
        self.rows.push((name.into(), s));
        s
    }

    fn print(&self) {
        let w = self.rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(10).max(10);
        println!("{:<w$} {:>6} {:>10} {:>10} {:>10} {:>10}", "µs per operation", "n", "median", "mean", "min", "p90");
        for (name, s) in &self.rows {
            println!("{:<w$} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}", name, s.n, s.median, s.mean, s.min, s.p90);
        }
    }
}

fn environment() {
    let nproc = std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "?".into());
    let build = if cfg!(debug_assertions) {
        "DEBUG build (debug_assertions on: figures are meaningless)"
    } else {
        "release build (debug_assertions off)"
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    println!("environment: nproc={nproc}; {build}; cpu: {cpu}; loadavg: {load}");
    // What decides the speed of SHA-1, AES, base64 and CRC here.
    let flags = cpu_flags();
    let shown: Vec<String> = ["sha_ni", "aes", "pclmulqdq", "avx2", "avx512f", "bmi2", "adx"]
        .iter()
        .map(|f| format!("{f}{}", if flags.iter().any(|x| x == f) { "" } else { ":NO" }))
        .collect();
    println!(
        "cpu flags: {} (sha_ni {})",
        shown.join(" "),
        if flags.iter().any(|x| x == "sha_ni") { "present: SHA-1 in hardware" } else { "absent: SHA-1 in software" }
    );
    let has_sha_ni = flags.iter().any(|x| x == "sha_ni");
    let openssl = match std::env::var(OPENSSL_CAP) {
        Ok(v) if v == OPENSSL_NO_SHA => format!("SHA extensions masked ({OPENSSL_CAP}={v})"),
        Ok(v) => format!("{OPENSSL_CAP}={v}"),
        Err(_) if has_sha_ni => "SHA extensions (sha_ni)".into(),
        Err(_) => "no SHA extensions: AVX2/SSSE3 or plain code".into(),
    };
    let forced =
        std::env::var("NETTLE_FAT_OVERRIDE").map(|v| format!(" (NETTLE_FAT_OVERRIDE={v})")).unwrap_or_default();
    println!(
        "SHA-1 (OpenSSL) in this run: {openssl}; Nettle (Sequoia's SHA-256 and AES): {}{forced}",
        nettle_sha_path()
    );
}

/// Set in the second run, the one without SHA extensions, so that it does not start a third.
const NO_SHA_NI_RUN: &str = "MIXTASY_BENCH_NO_SHA_NI";
/// OpenSSL's CPU capability mask, and its value that clears the SHA extensions (bit 29 of
/// CPUID leaf 7's EBX, the low half of the mask's second word; OpenSSL's `OPENSSL_ia32cap(3)`).
const OPENSSL_CAP: &str = "OPENSSL_ia32cap";
const OPENSSL_NO_SHA: &str = ":~0x20000000";
/// The argument of a start that only loads Nettle and exits (see `nettle_sha_path`).
const NETTLE_PATH_ARG: &str = "--nettle-path";

/// The CPU's flags as /proc/cpuinfo lists them.
fn cpu_flags() -> Vec<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
        .unwrap_or_default()
}

/// This CPU's features as Nettle 3.8's fat build names them, without `sha_ni`. Nettle
/// (Sequoia's backend) picks its code when it is loaded, from the CPU or, when
/// `NETTLE_FAT_OVERRIDE` is set, from that list instead: so a process started with it runs the
/// SHA-1 of a CPU without SHA extensions and everything else as here.
fn nettle_features_without_sha_ni() -> String {
    let flags = cpu_flags();
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut list = Vec::new();
    if info.contains("GenuineIntel") {
        list.push("vendor:intel");
    } else if info.contains("AuthenticAMD") {
        list.push("vendor:amd");
    }
    for (ours, nettle) in [("aes", "aesni"), ("pclmulqdq", "pclmul")] {
        if flags.iter().any(|f| f == ours) {
            list.push(nettle);
        }
    }
    list.join(",")
}

/// Which SHA code Nettle runs in this process's environment, in Nettle's own words: this
/// benchmark started again with `NETTLE_FAT_VERBOSE=1` and `--nettle-path`, which exits at
/// once, and the line of its report that names `sha_ni`.
fn nettle_sha_path() -> String {
    let out = std::env::current_exe().and_then(|exe| {
        Command::new(exe).arg(NETTLE_PATH_ARG).env("NETTLE_FAT_VERBOSE", "1").stdin(Stdio::null()).output()
    });
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("using sha_ni"))
            .map(|l| l.trim_start_matches("libnettle: ").trim_end_matches('.').to_string())
            .unwrap_or_else(|| "not reported (no fat Nettle?)".into()),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Runs this benchmark again with OpenSSL's and Nettle's SHA extensions turned off, its
/// output after this one's.
fn run_without_sha_ni() {
    let features = nettle_features_without_sha_ni();
    println!();
    println!("== the same benchmark again without SHA extensions: {OPENSSL_CAP}={OPENSSL_NO_SHA} NETTLE_FAT_OVERRIDE={features}");
    let status = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(OPENSSL_CAP, OPENSSL_NO_SHA)
            .env("NETTLE_FAT_OVERRIDE", &features)
            .env(NO_SHA_NI_RUN, "1")
            .stdin(Stdio::null())
            .status()
    });
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => println!("the run without SHA extensions failed: {s}"),
        Err(e) => println!("the run without SHA extensions did not start: {e}"),
    }
}

/// A throwaway GnuPG home holding one mix's secret key; its agent is killed on drop.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn with_secret_key(cert: &Cert) -> Result<GpgHome, String> {
        let dir = tempfile::Builder::new().prefix("mixtasy-bench-gpg").tempdir().map_err(|e| e.to_string())?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let home = GpgHome { dir };
        let tsk = cert.as_tsk().armored().to_vec().map_err(|e| e.to_string())?;
        let key_file = home.dir.path().join("mix-secret.asc");
        std::fs::write(&key_file, tsk).map_err(|e| e.to_string())?;
        let out = home.gpg().args(["--import"]).arg(&key_file).output().map_err(|e| format!("running gpg: {e}"))?;
        if !out.status.success() {
            return Err(format!("gpg --import failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(home)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--batch").arg("--quiet").arg("--homedir").arg(self.path());
        c.stdin(Stdio::null());
        c
    }

    /// One decryption of `file` by a freshly spawned gpg; returns its stdout.
    fn decrypt(&self, file: &Path) -> Result<Vec<u8>, String> {
        let out = self
            .gpg()
            .args(["--ignore-mdc-error", "-d"])
            .arg(file)
            .output()
            .map_err(|e| format!("running gpg: {e}"))?;
        if !out.status.success() {
            return Err(format!("gpg -d exited {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(out.stdout)
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn gpg_available() -> bool {
    Command::new("gpg").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Times GnuPG peeling the layer `body` (the mix's secret key imported into a fresh home).
/// Returns the decrypt figures and, for scale, the cost of spawning `gpg --version`.
fn bench_gpg(cert: &Cert, body: &[u8], expected: &[u8], plan: &Plan) -> Result<(Stats, Stats), String> {
    let home = GpgHome::with_secret_key(cert)?;
    let file: PathBuf = home.path().join("layer.pgp");
    std::fs::write(&file, body).map_err(|e| e.to_string())?;
    // The first run starts the agent; its output must be the revealed message.
    let first = home.decrypt(&file)?;
    if !first.starts_with(expected) {
        return Err("gpg's plaintext differs from layer::open's".into());
    }
    let mut failures = 0;
    let dec = time(2, plan.gpg, || {
        if home.decrypt(&file).is_err() {
            failures += 1;
        }
    });
    if failures > 0 {
        return Err(format!("{failures} of {} gpg decryptions failed", plan.gpg));
    }
    let spawn =
        time(2, plan.gpg.min(20), || home.gpg().arg("--version").stdout(Stdio::null()).status().map(|s| s.success()));
    Ok((dec, spawn))
    // `home` drops here: the agent is killed and the directory removed.
}

fn main() {
    if std::env::args().any(|a| a == NETTLE_PATH_ARG) {
        return; // Loading Nettle was the job: see `nettle_sha_path`.
    }
    // The same allocator tuning the binaries do, so the figures are theirs.
    mixtasy::util::tuning::tune_allocator();
    let plan = Plan::new();
    let t_start = Instant::now();
    println!("Mixtasy layer benchmark (one process; compare ratios, not absolute times)");
    environment();

    // ---- Setup: four cv25519 mixes, all middleman + exitpublic.
    let now = SystemTime::now() - Duration::from_secs(60);
    let modes = Modes::parse("middleman,exitpublic").unwrap();
    let mut certs = Vec::new();
    let mut mixes: Vec<Mix> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["alpha", "bravo", "charlie", "delta"] {
        let address = MixAddress::for_fqdn(&format!("{name}.bench.test")).unwrap();
        let cert = keys::generate(name, &modes, &address, now, keys::SUBKEY_VALIDITY).expect("generating a mix key");
        let ring = KeyRing::from_cert(&cert, Duration::from_secs(3600)).expect("key ring");
        mixes.push(directory::check(&cert, now).expect("generated key passes D8"));
        nodes.push(Node { address, modes, ring });
        certs.push(cert);
    }
    let mut rng = rand::rng();
    let original = b"From: alice@sender.test\r\nTo: bob@rcpt.test\r\nSubject: bench\r\n\r\nHello Bob, this is a small singlepart original.\r\n".to_vec();
    let opts = Options { hops: 4, ..Options::default() };

    // A realistic intermediate layer: the first hop of a 4-hop message.
    let wire_msgs = create::create(&original, &mixes, &opts, now, &mut rng).expect("create");
    assert_eq!(wire_msgs.len(), 1, "a small original is one singlepart message");
    let first = &wire_msgs[0];
    let hop = nodes.iter().position(|n| n.address == first.to).expect("first hop is one of ours");
    let (node, cert) = (&nodes[hop], &certs[hop]);
    let mail = first.mail.clone();
    let body = armor::decode(wire::parse(&mail).expect("wire parse").body).expect("armor");
    assert_eq!(body.len(), OUTER);
    let opened = layer::open(&body, &node.ring, now).expect("layer opens");
    match peel::peel(&mail, node, now, &mut rng).expect("peel") {
        Outcome { peeled: Peeled::Forward { .. }, .. } => {}
        _ => panic!("the first hop of a 4-hop message must forward"),
    }
    println!(
        "setup: 4 cv25519 mixes, 4-hop message, peeling hop 1 at {} (mail {} bytes, binary body {} bytes); setup took {:.1} s",
        node.address,
        mail.len(),
        body.len(),
        t_start.elapsed().as_secs_f64()
    );
    println!();

    let mut table = Table { rows: Vec::new() };

    // ---- Peel per layer: open (crypto only) and the whole peel, interleaved so both see
    // the same machine state.
    let (open_s, peel_s) = {
        for _ in 0..plan.warmup {
            black_box(layer::open(&body, &node.ring, now).unwrap());
            black_box(peel::peel(&mail, node, now, &mut rng).unwrap());
        }
        let (mut o, mut p) = (Vec::with_capacity(plan.peel), Vec::with_capacity(plan.peel));
        for _ in 0..plan.peel {
            let t = Instant::now();
            black_box(layer::open(black_box(&body), &node.ring, now).unwrap());
            o.push(t.elapsed());
            let t = Instant::now();
            black_box(peel::peel(black_box(&mail), node, now, &mut rng).unwrap());
            p.push(t.elapsed());
        }
        (Stats::of(&o), Stats::of(&p))
    };
    let peel_s = table.add("peel::peel, whole mail (per layer)", peel_s);
    let open_s = table.add("  layer::open (PKESK + CFB + literal)", open_s);

    // Where the rest of a peel goes: each step of peel::peel on its own.
    let rest = &opened.content;
    let (_, after_line) = verification::check(rest).unwrap();
    let inter_body = match message::parse(after_line).unwrap() {
        message::Revealed::Intermediate(i) => i.body,
        _ => unreachable!(),
    };
    let mut next = inter_body.to_vec();
    layer::pad_random(&mut next, OUTER, &mut rng);
    let armored = armor::encode(&body);
    table.add("  wire::parse (mail headers)", time(plan.warmup, plan.parts, || wire::parse(&mail).unwrap().body.len()));
    table.add(
        "  armor::decode (30 KiB, with CRC-24)",
        time(plan.warmup, plan.parts, || armor::decode(armored.as_bytes()).unwrap()),
    );
    table.add(
        "  verification::check (SHA-1 of 20 KiB)",
        time(plan.warmup, plan.parts, || verification::check(rest).unwrap().0),
    );
    table.add(
        "  message::parse",
        time(plan.warmup, plan.parts, || matches!(message::parse(after_line), Ok(message::Revealed::Intermediate(_)))),
    );
    table.add(
        "  re-pad: to_vec + pad_random to OUTER",
        time(plan.warmup, plan.parts, || {
            let mut v = inter_body.to_vec();
            layer::pad_random(&mut v, OUTER, &mut rng);
            v
        }),
    );
    table.add(
        "  wire::build (armor::encode, with CRC-24)",
        time(plan.warmup, plan.parts, || wire::build(Some(&node.address), &node.address, &next)),
    );
    table.add("    armor::crc24 of 30 KiB alone", time(plan.warmup, plan.parts, || armor::crc24(black_box(&body))));
    let sk = [7u8; 32];
    let mut ct = Vec::new();
    cfb::Cipher::new(9, &sk).unwrap().encrypt(&[1; 16], &next, &mut ct);
    table.add(
        "    cfb decrypt of 30 KiB alone",
        time(plan.warmup, plan.parts, || cfb::Cipher::new(9, &sk).unwrap().decrypt(&ct).unwrap()),
    );
    let sed_body = &body[98..];
    assert_eq!(body[97], 0xa7, "the tag 9 body starts at 98");
    let tag_s = table.add(
        "    cfb::distinct_inputs (tag check, ~1920 blocks)",
        time(plan.warmup, plan.parts, || cfb::distinct_inputs(black_box(sed_body)).is_ok()),
    );
    let sub_pub = mixes[hop].newest_valid_subkey(now).unwrap().clone();
    let pkesk = session::pkesk_for(&sub_pub, SymmetricAlgorithm::AES256, &sk, &mut rng).unwrap();
    let secret = node.ring.valid(now).find(|k| k.keyid == sub_pub.keyid()).expect("the subkey's secret");
    table.add(
        "    session key unwrap (X25519 + KDF + AES key unwrap)",
        time(plan.warmup, plan.parts, || secret.decrypt(black_box(&pkesk)).unwrap()),
    );

    // ---- Create per layer.
    let create_s =
        time(plan.warmup.min(30), plan.create, || create::create(&original, &mixes, &opts, now, &mut rng).unwrap());
    let create_layer = table.add("create::create 4 hops, / 4 (per layer)", create_s.per(4.0));
    let revealed = {
        let mut v = vec![0u8; OUTER - 200];
        rand::RngCore::fill_bytes(&mut rng, &mut v);
        v
    };
    let sub = mixes[hop].newest_valid_subkey(now).unwrap().clone();
    let seal_s = table.add(
        format!("  layer::seal of {} KB revealed", revealed.len() / 1000),
        time(plan.warmup, plan.seal, || layer::seal(&revealed, &sub, None, &mut rng).unwrap()),
    );
    table.add(
        "    session key wrap (2 X25519 + KDF + AES key wrap)",
        time(plan.warmup, plan.parts, || session::pkesk_for(&sub, SymmetricAlgorithm::AES256, &sk, &mut rng).unwrap()),
    );
    table.add(
        "    cfb encrypt of 30 KB alone (serial CFB)",
        time(plan.warmup, plan.parts, || {
            let mut out = Vec::with_capacity(OUTER);
            cfb::Cipher::new(9, &sk).unwrap().encrypt(&[1; 16], &revealed, &mut out);
            out
        }),
    );
    table.add(
        "  message::build_intermediate (SHA-1 20 KiB)",
        time(plan.warmup, plan.parts, || message::build_intermediate(&node.address, &node.address, &next)),
    );
    table.add(
        "  message::build_final",
        time(plan.warmup, plan.parts, || {
            message::build_final(
                "<0123456789abcdef0123456789abcdef@mixtasy>",
                message::Kind::Singlepart,
                &original,
                &mut rng,
            )
        }),
    );

    // ---- GnuPG per layer.
    let gpg = if gpg_available() {
        let expected = &opened.content[..INNER.min(opened.content.len())];
        match bench_gpg(cert, &body, expected, &plan) {
            Ok((dec, spawn)) => {
                table.add("gpg -d, spawned (per layer)", dec);
                table.add("  gpg --version, spawned (process cost)", spawn);
                Some(dec)
            }
            Err(e) => {
                println!("gpg comparison skipped: {e}");
                None
            }
        }
    } else {
        println!("gpg comparison skipped: gpg is not installed");
        None
    };

    table.print();
    println!();
    // The peel target is for a CPU without SHA extensions: on one with them, the second run
    // below gives the figure it is about.
    let sha_ni_used = std::env::var_os(OPENSSL_CAP).is_none() && cpu_flags().iter().any(|f| f == "sha_ni");
    let peel_verdict = match (peel_s.median <= PEEL_TARGET_US, sha_ni_used) {
        (true, false) => "met",
        (false, false) => "NOT met",
        (true, true) => "met here, with sha_ni",
        (false, true) => "NOT met, even with sha_ni",
    };
    match gpg {
        Some(g) => {
            let ratio = g.median / peel_s.median;
            let ratio_verdict = if ratio >= GPG_RATIO_TARGET { "met" } else { "NOT met" };
            println!(
                "peel: {:.1} µs/layer (target <= {PEEL_TARGET_US:.0} µs, {peel_verdict}); gpg: {:.0} µs/layer; gpg/peel = {:.1} (target >= {GPG_RATIO_TARGET:.0}, {ratio_verdict})",
                peel_s.median, g.median, ratio
            );
        }
        None => println!(
            "peel: {:.1} µs/layer (target <= {PEEL_TARGET_US:.0} µs, {peel_verdict}); gpg: skipped",
            peel_s.median
        ),
    }
    println!(
        "tag check: {:.2} µs/layer, {:.1}% of a peel (medians, same run)",
        tag_s.median,
        100.0 * tag_s.median / peel_s.median
    );
    let seal_verdict = if seal_s.median <= SEAL_TARGET_US { "met" } else { "NOT met" };
    println!(
        "open is {:.0}% of a peel; create: {:.1} µs/layer (seal alone {:.1} µs, target <= {SEAL_TARGET_US:.0} µs, {seal_verdict}); medians; total bench time {:.1} s",
        100.0 * open_s.median / peel_s.median,
        create_layer.median,
        seal_s.median,
        t_start.elapsed().as_secs_f64()
    );
    if std::env::var_os(NO_SHA_NI_RUN).is_none() && sha_ni_used {
        run_without_sha_ni();
    }
}
