//! mixtasy: the sender's tool. Builds layered Mixtasy messages from a directory of mix keys.
//! See mixtasy(1).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mixtasy::address::MixAddress;
use mixtasy::cli;
use mixtasy::config;
use mixtasy::create::{self, Options};
use mixtasy::directory::Directory;
use mixtasy::fsutil;
use mixtasy::transport::Transport;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "mixtasy", version, about = "Mixtasy sender: wrap an email in mix layers")]
struct Args {
    /// Client home (default: $MIXTASY_HOME, else $XDG_DATA_HOME/mixtasy, else ~/.local/share/mixtasy).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Act as if the time were this many seconds after the epoch (testing).
    #[arg(long, global = true, hide = true, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The directory of mix keys paths are chosen from.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Read an original message on stdin; write one wire message per file into OUTDIR.
    Create {
        #[command(flatten)]
        path: PathArgs,
        /// Where to write the wire messages (created if missing).
        #[arg(long, value_name = "OUTDIR")]
        out: PathBuf,
    },
    /// Read an original message on stdin, wrap it as `create` does and hand every wire
    /// message to sendmail, addressed to its first mix.
    Send {
        #[command(flatten)]
        path: PathArgs,
        /// The MTA's sendmail program.
        #[arg(long, value_name = "PROGRAM", default_value = "/usr/sbin/sendmail")]
        sendmail: PathBuf,
        /// Seconds a sendmail may take before it is killed and counted as failed.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        sendmail_timeout: u64,
    },
}

/// How paths are chosen; shared by `create` and `send`.
#[derive(clap::Args)]
struct PathArgs {
    /// A mix to put first on every path (your provider's).
    #[arg(long, value_name = "FQDN")]
    first_mix: Option<String>,
    /// Mixes per path (at least 4).
    #[arg(long, default_value_t = mixtasy::path::MIN_HOPS)]
    hops: usize,
    /// Largest original accepted, in bytes.
    #[arg(long, default_value_t = create::DEFAULT_MAX_SIZE)]
    max_size: usize,
    /// Keep this header field, though it is not on the allowlist (repeatable).
    #[arg(long = "keep-header", value_name = "NAME")]
    keep_header: Vec<String>,
    /// Build paths even though the directory has unresolved key conflicts (an attacker's
    /// keys may be hiding honest mixes).
    #[arg(long)]
    despite_conflicts: bool,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Check mix keys against D8 and the directory rules and store the good ones (files, or stdin).
    Import {
        files: Vec<PathBuf>,
        #[command(flatten)]
        wkd: WkdArgs,
    },
    /// Discover every mix on a keyserver (all keys are fetched: the query reveals no path).
    Fetch {
        #[arg(long, value_name = "URL")]
        keyserver: String,
        #[command(flatten)]
        wkd: WkdArgs,
    },
    /// Ask each exit mix's own domain (its Web Key Directory) whether it vouches for the mix key.
    VerifyWkd {
        #[command(flatten)]
        wkd: WkdArgs,
    },
    /// List stored mixes with modes, subkey expiry and WKD word; then conflicts.
    List,
    /// End a conflict: make the key with this fingerprint (checked with the mix's operator)
    /// the one for its address.
    Choose { fingerprint: String },
}

/// How Web Key Directories are reached.
#[derive(clap::Args)]
struct WkdArgs {
    /// Also ask each new exit mix's own domain (WKD) whether it vouches for the key
    /// (`verify-wkd` always does).
    #[arg(long)]
    wkd: bool,
    /// Connect to ADDR (IP, or IP:PORT2) for HOST:PORT instead of asking DNS (as curl's
    /// --resolve and --connect-to); repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    wkd_resolve: Vec<String>,
    /// Trust the CA certificates of this PEM file for WKD instead of the built-in web roots.
    #[arg(long, value_name = "FILE")]
    wkd_ca_file: Option<PathBuf>,
}

impl WkdArgs {
    fn options(self, always: bool) -> Option<mixtasy::wkd::Options> {
        (always || self.wkd).then_some(mixtasy::wkd::Options { resolve: self.wkd_resolve, ca_file: self.wkd_ca_file })
    }
}

fn main() -> ExitCode {
    mixtasy::tuning::tune_allocator();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mixtasy: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<()> {
    let now = cli::now(args.now);
    let home = config::client_home(args.home)?;
    let directory = Directory::new(home.join("directory"));
    match args.command {
        Command::Directory { command: DirectoryCommand::Import { files, wkd } } => {
            fsutil::create_private_dir(&home)?;
            cli::directory_import(&directory, &files, now, wkd.options(false).as_ref())
        }
        Command::Directory { command: DirectoryCommand::List } => cli::directory_list(&directory, now),
        Command::Directory { command: DirectoryCommand::Choose { fingerprint } } => cli::directory_choose(&directory, &fingerprint, now),
        Command::Directory { command: DirectoryCommand::Fetch { keyserver, wkd } } => {
            fsutil::create_private_dir(&home)?;
            cli::directory_fetch(&directory, &keyserver, now, wkd.options(false).as_ref())
        }
        Command::Directory { command: DirectoryCommand::VerifyWkd { wkd } } => {
            cli::verify_wkd(&directory, &[], &wkd.options(true).expect("always"), now)
        }
        Command::Create { path, out } => {
            let messages = wrap_stdin(&directory, path, now)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (i, m) in messages.iter().enumerate() {
                let path = out.join(format!("{:04}.eml", i + 1));
                fsutil::write_new(&path, &m.mail, 0o600)?;
            }
            eprintln!("mixtasy: wrote {} wire message(s) to {}", messages.len(), out.display());
            Ok(())
        }
        Command::Send { path, sendmail, sendmail_timeout } => {
            let messages = wrap_stdin(&directory, path, now)?;
            let transport = Transport::Sendmail { program: sendmail, timeout: Duration::from_secs(sendmail_timeout) };
            // Everything is built before the first hand-over, so a bad original sends nothing.
            // A failure part-way cannot be undone: the parts already sent wait at their exit
            // until `part_expiry` and are then dropped, so the user is told to send again.
            for (i, m) in messages.iter().enumerate() {
                transport.send(None, &[m.to.to_string()], &m.mail).map_err(|e| {
                    anyhow::anyhow!("{e}: {i} of {} wire message(s) were handed over; send the original again", messages.len())
                })?;
            }
            eprintln!("mixtasy: handed {} wire message(s) to sendmail", messages.len());
            Ok(())
        }
    }
}

/// Reads the original on stdin, keeps only the allowlisted header fields (as the exit
/// does, so an older exit leaks nothing either; stderr names what went), and builds its
/// wire messages, all in memory.
fn wrap_stdin(directory: &Directory, path: PathArgs, now: std::time::SystemTime) -> Result<Vec<create::WireMessage>> {
    cli::refuse_conflicts(directory, path.despite_conflicts)?;
    let first_mix = path.first_mix.map(|f| MixAddress::for_fqdn(&f)).transpose().context("--first-mix")?;
    let mut original = Vec::new();
    std::io::stdin().read_to_end(&mut original).context("reading the original message")?;
    let (original, removed) = mixtasy::headers::filter(&original, &path.keep_header)?;
    if !removed.is_empty() {
        eprintln!("mixtasy: removed header fields: {} (keep one with --keep-header NAME)", removed.join(", "));
    }
    let mixes = directory.usable(now)?;
    let opts = Options { first_mix, hops: path.hops, max_size: path.max_size };
    create::create(&original, &mixes, &opts, now, &mut rand::rng())
}
