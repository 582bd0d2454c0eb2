//! mixtasyd: the Mixtasy mix node. See mixtasyd(8).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mixtasy::cli;
use mixtasy::format::message::Kind;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::modes::Modes;
use mixtasy::node::config;
use mixtasy::node::home::NodeHome;
use mixtasy::node::peel::{self, Peeled};
use sequoia_openpgp::serialize::SerializeInto;

#[derive(Parser)]
#[command(name = "mixtasyd", version, about = "Mixtasy mix node: peels one layer of anonymous mail and mixes it")]
struct Args {
    /// Node home (default: $MIXTASYD_HOME, else $XDG_STATE_HOME/mixtasyd, else ~/.local/state/mixtasyd).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Act as if the time were this many seconds after the epoch (testing).
    #[arg(long, global = true, hide = true, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Run one round: take the Maildir, peel, fire the pool, deliver (what the timer runs).
    #[arg(long)]
    round: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node home: config file and mix key (D8).
    Init {
        /// The mix address, mixtasy@FQDN.
        #[arg(long, required_unless_present = "key", conflicts_with = "key")]
        address: Option<String>,
        /// Modes, comma separated: middleman, exitpublic, exitprivate. Start as a middleman:
        /// an exit answers for the mail it delivers (see doc/operator.md).
        #[arg(long, default_value = "middleman", conflicts_with = "key")]
        modes: String,
        /// Accept an address whose host part is not a fully qualified domain name (`vm`,
        /// `localhost`): only for a lab whose hosts name each other that way.
        #[arg(long, conflicts_with = "key")]
        allow_unqualified: bool,
        /// Name in the key's user id.
        #[arg(long, default_value = "Mixtasy mix", conflicts_with = "key")]
        name: String,
        /// Restore an existing mix key (from `key export --secret`) instead of making one;
        /// address and modes are read from its user id.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Export the mix key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The directory of other mixes' keys (used for dummies).
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// The exit's blocklist: addresses that get no anonymous mail (stored as salted hashes).
    Block {
        #[command(subcommand)]
        command: BlockCommand,
    },
    /// Peel one mix message from stdin: print the next wire message, or the original for an exit.
    Peel,
    /// Check the node's set-up without changing anything: settings, key against config,
    /// owners and modes of the home, the address in DNS, sendmail, the keyserver. One line a
    /// finding; exit status 0 all well, 1 warnings, 2 failures.
    Check {
        /// Skip what reaches out: DNS, sendmail and the keyserver.
        #[arg(long, conflicts_with = "send_probe")]
        offline: bool,
        /// Also send one mail to the mix address through the node's transport and wait (up
        /// to 2 minutes) until the MTA puts it into the Maildir; it is removed there.
        #[arg(long)]
        send_probe: bool,
    },
    /// Simulate the node's pool and dummies: anonymity-set entropy, delays and dummy
    /// overhead beside Mixmaster's and Mixminion's; sweeps as SVG; the blending attack.
    /// Uses the home's settings when it has a mixtasyd.toml, else the defaults.
    Simulate {
        /// Mean arrivals a round (Poisson).
        #[arg(long, default_value_t = 10.0, value_name = "N")]
        arrivals: f64,
        /// Replay a trace instead: one count of arrivals a round per line.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["arrivals", "recorded"])]
        trace: Option<PathBuf>,
        /// Replay the arrivals this node recorded in its last days of rounds.
        #[arg(long, conflicts_with = "arrivals")]
        recorded: bool,
        /// The timer's interval t.
        #[arg(long, default_value = "15m")]
        interval: String,
        /// Change a setting for the simulation: min_pool, threshold, rate, dummy_time_p,
        /// dummy_flush_p, dummy_arrival_p, dummy_starved_p (repeatable).
        #[arg(long = "set", value_name = "PARAM=VALUE")]
        set: Vec<String>,
        /// Run PARAM from a to b (steps: 10 by default) and draw entropy and delays.
        #[arg(long, value_name = "PARAM=a..b[/steps]")]
        sweep: Option<String>,
        /// Where the sweep's SVG goes (default: sweep-PARAM.svg).
        #[arg(long, value_name = "FILE", requires = "sweep")]
        plot: Option<PathBuf>,
        /// Also simulate the blending (n-1) attack, with and without the dummy policies.
        #[arg(long)]
        blending: bool,
        /// The blending attacker's messages a round (default: 2 (min_pool + threshold)).
        #[arg(long, value_name = "N", requires = "blending")]
        flood: Option<u64>,
        /// Rounds measured per setting (after a warm-up of a tenth, at least 200).
        #[arg(long, default_value_t = 20_000)]
        rounds: usize,
        /// Seed of the random draws, for a repeatable run.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Show pool, queues, replay cache, subkeys and counters (counts only).
    Status {
        /// As one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add a new subkey if the newest passed half its validity; destroy expired secrets.
    Rotate,
    /// Upload the public key to the configured keyserver now.
    Publish,
    /// Print the armored public key (or with --secret, the secret key, for backup).
    Export {
        #[arg(long)]
        secret: bool,
    },
    /// Replace the mix key by a new one that the old primary certifies (to change modes or
    /// name, or retire an old key); directories take it in the old one's place. Publishes it.
    Transition {
        /// Modes of the new key (default: the current ones).
        #[arg(long)]
        modes: Option<String>,
        /// Name in the new key's user id (default: the current one).
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke the mix key (compromised or lost) and make a new one: prints the revoked key
    /// on stdout and publishes it; directories never use it again and take another key.
    Revoke {
        /// Why, in the revocation (seen by everyone).
        #[arg(long, default_value = "key compromised")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Block an address now, with every subaddress, without a confirmation (for requests
    /// that came another way); `@domain` blocks a whole domain.
    Add { address: String },
    /// Unblock an address.
    Remove { address: String },
    /// Say whether an address is blocked.
    Check { address: String },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Check mix keys against D8 and store the good ones (files, or stdin).
    Import { files: Vec<PathBuf> },
    /// Discover every mix on a keyserver (default: the `keyserver` setting).
    Fetch {
        #[arg(long, value_name = "URL")]
        keyserver: Option<String>,
    },
    /// List the trusted pingers, then stored mixes with modes, subkey expiry and (with
    /// trusted pingers) median reliability and latency; then conflicts.
    List,
    /// Trust a pinger's key: dummies then avoid mixes its rankings put below the minimum,
    /// and its keyring stands in for a keyserver that refuses discovery as too large.
    TrustPinger {
        keyfile: PathBuf,
        /// Where the pinger publishes mlist2.txt, pubring.asc and pubring.asc.sig.
        #[arg(long, value_name = "BASE")]
        url: Option<String>,
    },
    /// End a conflict: make the key with this fingerprint (checked with the mix's operator)
    /// the one for its address.
    Choose { fingerprint: String },
}

/// Exit status when `peel` dropped the message.
const EXIT_DROPPED: u8 = 1;

fn main() -> ExitCode {
    mixtasy::util::tuning::tune_allocator();
    // Everything a node writes is private (the home is 0700, its files 0600), whichever
    // command creates it.
    mixtasy::util::tuning::private_umask();
    let args = Args::parse();
    // Named when a failure comes from the state database (`cli::report`).
    let state_db = config::node_home(args.home.clone()).ok().map(|dir| NodeHome::new(dir).state_path());
    cli::finish("mixtasyd", run(args), state_db.as_deref())
}

/// `--round`: one line of counts on success; a broken setup (EX_CONFIG) or a Maildir or
/// state that cannot be read or written (EX_IOERR) is one line and a sysexits code.
fn round(home: &NodeHome, now: std::time::SystemTime) -> Result<ExitCode> {
    home.resolved_config().and_then(|_| home.cert()).map_err(|e| cli::exit_with(cli::sysexits::CONFIG, e))?;
    match mixtasy::node::round::run(home, now).map_err(|e| cli::exit_with(cli::sysexits::IOERR, e))? {
        mixtasy::node::round::RoundResult::Busy => {
            println!("mixtasyd: another round is running on this home; nothing to do");
        }
        mixtasy::node::round::RoundResult::Done(s) => println!(
            "mixtasyd: round: took {}, pooled {}, exit queued {}, parts held {}, operator {}, dropped {}, dummies {}, sent {}, deferred {}, delivered {}, transport failures {}",
            s.taken, s.pooled, s.exit_queued, s.parts_held, s.operator, s.dropped, s.dummies, s.sent, s.deferred, s.delivered, s.transport.line()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

struct SimulateOpts {
    arrivals: f64,
    trace: Option<PathBuf>,
    recorded: bool,
    interval: String,
    set: Vec<String>,
    sweep: Option<String>,
    plot: Option<PathBuf>,
    blending: bool,
    flood: Option<u64>,
    rounds: usize,
    seed: Option<u64>,
}

/// `simulate`: the node's settings (or the defaults) and the traffic model in, the table,
/// the sweep's picture and the blending figures out (`node::simulate`).
fn simulate(home: &NodeHome, o: SimulateOpts) -> Result<()> {
    use mixtasy::node::simulate::{self as sim, Setting, Traffic};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed.unwrap_or_else(rand::random));
    let config = match home.config_path().exists() {
        true => home.config()?,
        false => config::parse("address = \"mixtasy@simulate.invalid\"\nmodes = \"middleman\"\n")?,
    };
    let interval = mixtasy::batch::settings::parse_duration(&o.interval).context("--interval")?.as_secs().max(1);
    let mut node = Setting::from_config("this node", &config, interval);
    for s in &o.set {
        let (k, v) = s.split_once('=').with_context(|| format!("--set {s}: give PARAM=VALUE"))?;
        node.set(k, v).context("--set")?;
    }
    let traffic = match (&o.trace, o.recorded) {
        (Some(f), _) => {
            Traffic::parse_trace(&std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
                .with_context(|| f.display().to_string())?
        }
        (None, true) => mixtasy::node::metrics::recorded_traffic(home)?,
        (None, false) => Traffic::Poisson(o.arrivals),
    };
    anyhow::ensure!(o.rounds > 0, "--rounds: at least 1");
    let warmup = sim::warmup(o.rounds);
    let rows: Vec<(Setting, sim::Report)> = [node.clone(), Setting::mixmaster(), Setting::mixminion_minimum()]
        .into_iter()
        .map(|s| {
            let r = sim::run(&s, &traffic, warmup, o.rounds, &mut rng);
            (s, r)
        })
        .collect();
    print!("{}", sim::table(&traffic, &rows));
    let validity = config.subkey_validity.as_secs_f64();
    for (s, r) in &rows {
        if let Some(p) = sim::subkey::reach_probability(&r.delays, 4, validity, s.interval as f64, 1_000_000, &mut rng)
        {
            println!(
                "{}: a 4-hop message reaches its exit before a subkey on its path expires: {:.3}%",
                s.name,
                p * 100.0
            );
        }
    }
    if let Some(spec) = &o.sweep {
        let (param, values) = sim::parse_sweep(spec).context("--sweep")?;
        let (reports, svg) = sim::sweep(&node, &param, &values, &traffic, o.rounds, &rows[1].1, &mut rng)?;
        let path = o.plot.clone().unwrap_or_else(|| PathBuf::from(format!("sweep-{param}.svg")));
        let path =
            if path.parent().is_some_and(|d| d.as_os_str().is_empty()) { PathBuf::from(".").join(path) } else { path };
        mixtasy::util::fsutil::write_atomic(&path, svg.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "\n{param:>14} {:>9} {:>8} {:>10} {:>10} {:>9}",
            "entropy", "outside", "mean delay", "95% delay", "dummies"
        );
        for (v, r) in values.iter().zip(&reports) {
            println!(
                "{v:>14} {:>9.2} {:>8.2} {:>10} {:>10} {:>8.0}%",
                r.entropy,
                r.entropy_outside,
                sim::minutes(r.delay_mean),
                sim::minutes(r.delay_p95),
                r.dummy_overhead * 100.0
            );
        }
        println!("plot: {}", path.display());
    }
    if o.blending {
        let flood = o.flood.unwrap_or(2 * (node.pool.min_pool + node.pool.threshold)).max(1);
        let trials = 200;
        println!("\nblending attack: {flood} attacker messages a round, {trials} trials, an attacker who knows when the pool holds only his mail");
        println!("{:<34} {:>8} {:>10} {:>11} {:>9}", "setting", "rounds", "messages", "candidates", "isolated");
        let bare = Setting {
            name: "this node without dummies".into(),
            dummy_time_p: 0.0,
            dummy_flush_p: 0.0,
            dummy_starved_p: 0.0,
            dummy_arrival_p: 0.0,
            ..node.clone()
        };
        for s in [&node, &bare, &Setting::mixmaster()] {
            let b = sim::blending::simulate(s, &traffic, flood, trials, 10_000, &mut rng);
            let given_up = if b.gave_up > 0.0 {
                format!(" ({:.0}% not done in 10000 rounds)", b.gave_up * 100.0)
            } else {
                String::new()
            };
            println!(
                "{:<34} {:>8.1} {:>10.0} {:>11.2} {:>8.0}%{given_up}",
                s.name,
                b.rounds,
                b.messages,
                b.candidates,
                b.isolated * 100.0
            );
        }
    }
    Ok(())
}

fn run(args: Args) -> Result<ExitCode> {
    let now = cli::now(args.now);
    let dir = config::node_home(args.home)?;
    if args.round {
        if args.command.is_some() {
            anyhow::bail!("--round takes no command");
        }
        let home = NodeHome::open(dir).map_err(|e| cli::exit_with(cli::sysexits::CONFIG, e))?;
        return round(&home, now);
    }
    let Some(command) = args.command else {
        anyhow::bail!("nothing to do: give --round or a command (see --help)");
    };
    // `init` makes a home (as the owner of the directory, if it exists); `check` reports on
    // a home of any owner and in any state; every other command needs a home of its own.
    let home = match &command {
        Command::Init { .. } => {
            let home = NodeHome::new(dir);
            home.check_owner()?;
            home
        }
        // `simulate` reads only the settings (the defaults without a home), unless
        // `--recorded` opens the state.
        Command::Check { .. } | Command::Simulate { recorded: false, .. } => NodeHome::new(dir),
        _ => NodeHome::open(dir)?,
    };
    match command {
        Command::Init { address, modes, name, key, allow_unqualified } => {
            let cert = match (key, address) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                    home.init_from_key(&bytes, now)?
                }
                (None, Some(address)) => {
                    let address = MixAddress::parse(&address).context("--address")?;
                    if !allow_unqualified && !mixtasy::node::check::qualified(address.fqdn()) {
                        anyhow::bail!(
                            "--address: {} is not a fully qualified domain name, so no other host can mail {address}; give the host's FQDN (hostname -f may print a short name), or --allow-unqualified for a lab",
                            address.fqdn()
                        );
                    }
                    let modes = Modes::parse(&modes).context("--modes")?;
                    home.init(&address, &modes, &name, now)?
                }
                _ => unreachable!("clap requires --address without --key"),
            };
            let config = home.config()?;
            println!(
                "created {} for {} ({}), key {}",
                home.dir.display(),
                config.address,
                config.modes,
                cert.fingerprint()
            );
        }
        Command::Simulate { arrivals, trace, recorded, interval, set, sweep, plot, blending, flood, rounds, seed } => {
            let opts =
                SimulateOpts { arrivals, trace, recorded, interval, set, sweep, plot, blending, flood, rounds, seed };
            simulate(&home, opts)?;
        }
        Command::Key { command: KeyCommand::Rotate } => {
            let _lock = mixtasy::batch::lock::try_lock(&home.dir)?
                .context("a round is running on this home; try again when it has finished")?;
            let mut state = mixtasy::batch::state::State::open(&home.state_path())?;
            mixtasy::node::daily::snapshot(&mut state, now)?;
            let (_, r) = home.rotate(now, &home.config()?, &mut state)?;
            println!(
                "rotate: {} subkey, {} expired secret(s) destroyed",
                if r.added { "added a" } else { "no new" },
                r.destroyed
            );
        }
        Command::Key { command: KeyCommand::Publish } => {
            let url = home.config()?.keyserver.context("no keyserver configured (setting `keyserver`)")?;
            let cert = home.cert()?;
            let armored = String::from_utf8(cert.armored().to_vec()?)?;
            mixtasy::mixes::keyserver::Keyserver::new(&url, std::time::Duration::from_secs(60))?.publish(&armored)?;
            let state = mixtasy::batch::state::State::open(&home.state_path())?;
            mixtasy::node::home::record_published(&state, now)?;
            println!("published {} to {url}", cert.fingerprint());
        }
        Command::Key { command: KeyCommand::Transition { modes, name } } => {
            let _lock = mixtasy::batch::lock::try_lock(&home.dir)?
                .context("a round is running on this home; try again when it has finished")?;
            let modes = modes.map(|m| Modes::parse(&m)).transpose().context("--modes")?;
            let (old, new) = home.transition(modes, name.as_deref(), now)?;
            println!("transition: new key {} certified by {}", new.fingerprint(), old.fingerprint());
            publish_now(&home, &[&new], now)?;
        }
        Command::Key { command: KeyCommand::Revoke { reason } } => {
            let _lock = mixtasy::batch::lock::try_lock(&home.dir)?
                .context("a round is running on this home; try again when it has finished")?;
            let (revoked, new) = home.revoke_and_replace(&reason, now)?;
            eprintln!("revoke: key {} revoked; new key {}", revoked.fingerprint(), new.fingerprint());
            std::io::stdout().write_all(&revoked.armored().to_vec()?)?;
            publish_now(&home, &[&revoked, &new], now)?;
        }
        Command::Key { command: KeyCommand::Export { secret } } => {
            let cert = home.cert()?;
            let armored = if secret { cert.as_tsk().armored().to_vec()? } else { cert.armored().to_vec()? };
            std::io::stdout().write_all(&armored)?;
        }
        Command::Directory { command } => {
            home.config()?;
            match command {
                DirectoryCommand::Import { files } => cli::directory_import(&home.directory(), &files, now, None)?,
                DirectoryCommand::List => {
                    cli::pingers_list(&home.pingers().list()?);
                    cli::directory_list(&home.directory(), now)?
                }
                DirectoryCommand::TrustPinger { keyfile, url } => {
                    cli::trust_pinger(&home.pingers(), &keyfile, url.as_deref(), now)?
                }
                DirectoryCommand::Choose { fingerprint } => {
                    cli::directory_choose(&home.directory(), &fingerprint, now)?
                }
                DirectoryCommand::Fetch { keyserver } => {
                    let url = keyserver
                        .or(home.config()?.keyserver)
                        .context("no keyserver: give --keyserver or set `keyserver`")?;
                    cli::directory_fetch(&home.directory(), &url, &home.pingers().list()?, now, None)?
                }
            }
        }
        Command::Block { command } => {
            let delimiter = home.config()?.subaddress_delimiter;
            let state = mixtasy::batch::state::State::open(&home.state_path())?;
            let conn = state.conn();
            // The address is the operator's own input; it is echoed to them and stored nowhere.
            match command {
                BlockCommand::Add { address } => {
                    let a = mixtasy::abuse::block::operator_address(&address)?;
                    println!(
                        "{}",
                        if mixtasy::abuse::block::add(conn, &a, &delimiter)? { "blocked" } else { "already blocked" }
                    );
                }
                BlockCommand::Remove { address } => {
                    let a = mixtasy::abuse::block::operator_address(&address)?;
                    println!(
                        "{}",
                        if mixtasy::abuse::block::remove(conn, &a, &delimiter)? {
                            "unblocked"
                        } else {
                            "was not blocked"
                        }
                    );
                }
                BlockCommand::Check { address } => {
                    let a = mixtasy::abuse::block::operator_address(&address)?;
                    println!(
                        "{}",
                        if mixtasy::abuse::block::is_blocked(conn, &a, &delimiter)? {
                            "blocked"
                        } else {
                            "not blocked"
                        }
                    );
                }
            }
        }
        Command::Check { offline, send_probe } => {
            let mut findings = mixtasy::node::check::run(&home, now, !offline);
            if send_probe && findings.iter().all(|f| f.what != "config" || f.level != mixtasy::node::check::Level::Fail)
            {
                let config = home.resolved_config()?;
                findings.push(mixtasy::node::check::send_probe(&config, std::time::Duration::from_secs(120)));
            }
            let mut out = std::io::stdout().lock();
            for f in &findings {
                writeln!(out, "{f}")?;
            }
            let worst = findings.iter().map(|f| f.level).max().unwrap_or(mixtasy::node::check::Level::Ok);
            return Ok(ExitCode::from(worst.exit_code()));
        }
        Command::Status { json } => {
            let s = mixtasy::node::status::collect(&home, now)?;
            writeln!(std::io::stdout(), "{}", if json { s.json() } else { s.text() }.trim_end())?;
        }
        Command::Peel => {
            let (_, node) = home.node()?;
            let mut mail = Vec::new();
            std::io::stdin().read_to_end(&mut mail).context("reading standard input")?;
            match peel::peel(&mail, &node, now, &mut rand::rng()) {
                Ok(outcome) => {
                    let mut out = std::io::stdout().lock();
                    match outcome.peeled {
                        Peeled::Forward { mail, .. } => out.write_all(&mail)?,
                        Peeled::Final { kind, payload, .. } => {
                            if let Kind::Multipart { part, total } = kind {
                                eprintln!("mixtasyd: multipart part {part}/{total}; `--round` reassembles the parts");
                            }
                            out.write_all(&payload)?;
                        }
                    }
                    out.flush()?;
                }
                Err(dropped) => {
                    eprintln!("mixtasyd: dropped: {dropped}");
                    return Ok(ExitCode::from(EXIT_DROPPED));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After a key change: publishes `certs` to the configured keyserver at once. The change is
/// made whatever happens here (running the command again would change the new key), so a
/// missing keyserver or a failed upload is a warning: the next round publishes the current
/// key (the change set `publish_pending`); a revoked key is on the command's stdout.
fn publish_now(home: &NodeHome, certs: &[&sequoia_openpgp::Cert], now: std::time::SystemTime) -> Result<()> {
    let Some(url) = home.config()?.keyserver else {
        eprintln!("mixtasyd: no keyserver configured: hand the key to senders with `key export`");
        return Ok(());
    };
    let upload = || -> Result<()> {
        let ks = mixtasy::mixes::keyserver::Keyserver::new(&url, std::time::Duration::from_secs(60))?;
        for cert in certs {
            ks.publish(&String::from_utf8(cert.armored().to_vec()?)?)?;
        }
        Ok(())
    };
    match upload() {
        Ok(()) => {
            let state = mixtasy::batch::state::State::open(&home.state_path())?;
            mixtasy::node::home::record_published(&state, now)?;
            eprintln!("mixtasyd: published to {url}");
        }
        Err(e) => eprintln!("mixtasyd: warning: not published ({e:#}); the next round publishes the new key, a revoked key must be uploaded by hand"),
    }
    Ok(())
}
