//! mixtasy-nymd: the Mixtasy nym server. See mixtasy-nymd(8).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mixtasy::cli;
use mixtasy::nymserv::home::NymHome;
use sequoia_openpgp::serialize::SerializeInto;

#[derive(Parser)]
#[command(
    name = "mixtasy-nymd",
    version,
    about = "Mixtasy nym server: pseudonymous addresses over the Mixtasy network"
)]
struct Args {
    /// Server home (default: $MIXTASY_NYMD_HOME, else ~/.local/state/mixtasy-nymd).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Act as if the time were this many seconds after the epoch (testing).
    #[arg(long, global = true, hide = true, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// Run once: take the Maildir, expire idle nyms, send the outbox (what the timer runs).
    #[arg(long)]
    run: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a server home for a nym domain: config file and server key.
    Init {
        #[arg(long)]
        domain: String,
    },
    /// Print the server's public key (to publish, and for users to encrypt to).
    Key {
        /// Publish it to this keyserver (HKP) instead of printing it.
        #[arg(long, value_name = "URL")]
        publish: Option<String>,
    },
    /// Store mix keys (files, or stdin) for `mixtasy:` deliveries through the network.
    DirectoryImport { files: Vec<PathBuf> },
    /// Counters and sizes (counts only; no nym is named).
    Status,
    /// The blocklist of send@: addresses no nym's mail reaches (stored as salted hashes).
    Block {
        #[command(subcommand)]
        command: BlockCommand,
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

/// Exit status for a usage or setup error.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    mixtasy::util::tuning::private_umask();
    match run(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mixtasy-nymd: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn home_dir(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(h) = arg.or_else(|| std::env::var_os("MIXTASY_NYMD_HOME").map(PathBuf::from)) {
        return Ok(h);
    }
    let home = std::env::var_os("HOME").context("no --home and no $HOME")?;
    Ok(PathBuf::from(home).join(".local/state/mixtasy-nymd"))
}

fn run(args: Args) -> Result<ExitCode> {
    let home = NymHome::new(home_dir(args.home)?);
    let now = cli::now(args.now);
    if args.run {
        match mixtasy::nymserv::run::run(&home, now)? {
            None => println!("mixtasy-nymd: another run holds this home; nothing to do"),
            Some(s) => println!(
                "mixtasy-nymd: run: took {}, sent {}, deferred {}, expired {}",
                s.taken, s.sent, s.failed, s.expired
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.command {
        None => anyhow::bail!("nothing to do: give --run or a command (see --help)"),
        Some(Command::Init { domain }) => {
            let cert = home.init(&domain, now)?;
            println!("mixtasy-nymd: home {} for {domain}, server key {}", home.dir.display(), cert.fingerprint());
        }
        Some(Command::Key { publish }) => {
            let armored = String::from_utf8(home.cert()?.armored().to_vec()?)?;
            match publish {
                Some(url) => mixtasy::mixes::keyserver::Keyserver::new(&url, std::time::Duration::from_secs(30))?
                    .publish(&armored)?,
                None => print!("{armored}"),
            }
        }
        Some(Command::DirectoryImport { files }) => cli::directory_import(&home.directory(), &files, now, None)?,
        Some(Command::Status) => {
            home.config()?;
            let st = home.state()?;
            let nyms: i64 = st.conn().query_row("SELECT count(*) FROM nyms WHERE active = 1", [], |r| r.get(0))?;
            let waiting: i64 = st.conn().query_row("SELECT count(*) FROM nyms WHERE active = 0", [], |r| r.get(0))?;
            let outbox: i64 = st.conn().query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
            println!("nyms {nyms}\nunconfirmed {waiting}\noutbox {outbox}");
            for (name, value) in st.counters()? {
                println!("{name} {value}");
            }
        }
        Some(Command::Block { command }) => {
            use mixtasy::abuse::block;
            let delimiter = home.config()?.subaddress_delimiter;
            let st = home.state()?;
            let c = st.conn();
            // The address is the operator's own input; it is echoed to them and stored nowhere.
            let said = match command {
                BlockCommand::Add { address } => {
                    if block::add(c, &block::operator_address(&address)?, &delimiter)? {
                        "blocked"
                    } else {
                        "already blocked"
                    }
                }
                BlockCommand::Remove { address } => {
                    if block::remove(c, &block::operator_address(&address)?, &delimiter)? {
                        "unblocked"
                    } else {
                        "was not blocked"
                    }
                }
                BlockCommand::Check { address } => {
                    if block::is_blocked(c, &block::operator_address(&address)?, &delimiter)? {
                        "blocked"
                    } else {
                        "not blocked"
                    }
                }
            };
            println!("{said}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
