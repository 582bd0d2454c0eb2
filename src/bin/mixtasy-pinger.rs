//! mixtasy-pinger: measures which mixes work and publishes it. See mixtasy-pinger(8).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mixtasy::cli;
use mixtasy::pinger::home::PingerHome;
use mixtasy::pinger::{round, store};
use sequoia_openpgp::serialize::SerializeInto;

#[derive(Parser)]
#[command(
    name = "mixtasy-pinger",
    version,
    about = "Mixtasy pinger: pings every mix, publishes reliability and latency"
)]
struct Args {
    /// Pinger home (default: $MIXTASY_PINGER_HOME, else $XDG_STATE_HOME/mixtasy-pinger, else ~/.local/state/mixtasy-pinger).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Act as if the time were this many seconds after the epoch (testing).
    #[arg(long, global = true, hide = true, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Run one round: take returned pings, send due pings, publish (what the timer runs).
    #[arg(long)]
    round: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a pinger home: settings, the pinger key, the ping secret.
    Init {
        /// The pinger's own address, local@FQDN (pings return to it).
        #[arg(long)]
        address: String,
    },
    /// Print the pinger's public key (what clients trust with `directory trust-pinger`).
    Key,
    /// The mixes pinged.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// The table of every mix pinged: modes, median latency, reliability, 12-day histories;
    /// then the counters.
    Status,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Check mix keys against D8 and store the good ones (files, or stdin).
    Import { files: Vec<PathBuf> },
    /// Discover every mix on a keyserver (default: the `keyserver` setting).
    Fetch {
        #[arg(long)]
        keyserver: Option<String>,
    },
    /// List the mixes.
    List,
}

fn main() -> ExitCode {
    mixtasy::util::tuning::private_umask();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mixtasy-pinger: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let home = PingerHome::new(mixtasy::node::config::pinger_home(args.home)?);
    let now = cli::now(args.now);
    if args.round {
        if args.command.is_some() {
            anyhow::bail!("--round takes no command");
        }
        match round::run(&home, now)? {
            Some(sum) => println!("{}", sum.line()),
            None => println!("pinger round: another round is running; nothing done"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.command {
        None => anyhow::bail!("give --round or a command (see --help)"),
        Some(Command::Init { address }) => {
            let cert = home.init(&address, now)?;
            println!("pinger home {} made; key {}", home.dir.display(), cert.fingerprint());
        }
        Some(Command::Key) => {
            use std::io::Write;
            std::io::stdout().write_all(&home.cert()?.armored().to_vec()?)?;
        }
        Some(Command::Directory { command }) => {
            let config = home.config()?;
            match command {
                DirectoryCommand::Import { files } => cli::directory_import(&home.directory(), &files, now, None)?,
                DirectoryCommand::List => cli::directory_list(&home.directory(), now)?,
                DirectoryCommand::Fetch { keyserver } => {
                    let url = keyserver
                        .or(config.keyserver)
                        .ok_or_else(|| anyhow::anyhow!("no keyserver: give --keyserver or set `keyserver`"))?;
                    cli::directory_fetch(&home.directory(), &url, &[], now, None)?
                }
            }
        }
        Some(Command::Status) => {
            home.config()?;
            let state = store::open(&home.state_path())?;
            let mixes = round::known(&home.directory(), now)?;
            let (rows, broken) = round::figures(&state, &mixes, now)?;
            print!("{}", mixtasy::pinger::publish::table(&rows));
            for (a, b) in broken {
                println!("broken chain: {} then {}", a.address.fqdn(), b.address.fqdn());
            }
            for (name, value) in state.counters()? {
                println!("{name} {value}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
