//! mixtasy: the sender's tool. Builds layered Mixtasy messages from a directory of mix keys.
//! See mixtasy(1).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mixtasy::batch::transport::Transport;
use mixtasy::cli;
use mixtasy::mixes::address::MixAddress;
use mixtasy::mixes::directory::Directory;
use mixtasy::mixes::pingers::Pingers;
use mixtasy::node::config;
use mixtasy::sender::create::{self, Options};
use mixtasy::util::fsutil;
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
    /// message to sendmail, addressed to its first mix. Takes sendmail's command line, so a
    /// mail program can use it as its sendmail; exit codes follow sysexits.
    Send {
        #[command(flatten)]
        path: PathArgs,
        #[command(flatten)]
        mua: SendmailArgs,
        /// The MTA's sendmail program.
        #[arg(long, value_name = "PROGRAM", default_value = "/usr/sbin/sendmail")]
        sendmail: PathBuf,
        /// Seconds a sendmail may take before it is killed and counted as failed.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        sendmail_timeout: u64,
    },
    /// Own a nym on a nym server (mixtasy-nymd): create, confirm, modify, delete, send as
    /// it, fetch its mail. See doc/nym.md.
    Nym {
        #[command(subcommand)]
        command: NymCommand,
    },
}

#[derive(Subcommand)]
enum NymCommand {
    /// Make a nym key (or use --key) and ask the server for NAME@DOMAIN.
    Create {
        address: String,
        /// The nym server's public key (`mixtasy-nymd key`).
        #[arg(long, value_name = "FILE")]
        server_key: PathBuf,
        /// The passphrase of your hashed subjects: how you pick your mail out of the group.
        #[arg(long, value_name = "PASS")]
        hsub: Option<String>,
        /// An extra symmetric layer under this passphrase around your mail.
        #[arg(long, value_name = "PASS")]
        symmetric: Option<String>,
        /// `newsgroup` (default: nobody learns who reads) or `mixtasy:ADDRESS` (the server
        /// learns that address).
        #[arg(long, value_name = "CHANNEL")]
        delivery: Option<String>,
        #[command(flatten)]
        out: NymOut,
    },
    /// Return the code of the server's confirmation, signed.
    Confirm {
        address: String,
        code: String,
        #[command(flatten)]
        out: NymOut,
    },
    /// Change settings; a new delivery is confirmed on the new channel.
    Modify {
        address: String,
        #[arg(long, value_name = "PASS")]
        hsub: Option<String>,
        #[arg(long, value_name = "PASS")]
        symmetric: Option<String>,
        #[arg(long, value_name = "CHANNEL")]
        delivery: Option<String>,
        /// Be told of each send: yes or no.
        #[arg(long, value_name = "YES|NO", value_parser = clap::builder::BoolishValueParser::new())]
        acksend: Option<bool>,
        #[command(flatten)]
        out: NymOut,
    },
    /// Ask the server to delete the nym now.
    Delete {
        address: String,
        #[command(flatten)]
        out: NymOut,
    },
    /// Read an original on stdin (To/Cc: the recipients) and send it as the nym.
    Send {
        address: String,
        #[command(flatten)]
        out: NymOut,
    },
    /// Read every article of the group (or a Maildir) and write the nym's mail into a Maildir.
    Fetch {
        address: String,
        /// `nntp://HOST:PORT/GROUP`, or `maildir:DIR` (a copy of the group, or the mailbox
        /// of a `mixtasy:` delivery).
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// The Maildir your mail program reads (created if missing).
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
        /// The nym's secret key file, instead of the one in the client home.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

/// How a nym request leaves: through the network like `send`, or printed.
#[derive(clap::Args)]
struct NymOut {
    /// The nym's secret key file, instead of the one in the client home (`create`: use
    /// this key rather than make one; it stays in that file).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Write the request mail to stdout instead of sending it (to send it yourself with
    /// `mixtasy send`).
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    path: PathArgs,
    #[arg(long, value_name = "PROGRAM", default_value = "/usr/sbin/sendmail")]
    sendmail: PathBuf,
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    sendmail_timeout: u64,
}

/// The sendmail(8) command line mail programs use (`mixtasy send` as `$sendmail`).
#[derive(clap::Args)]
struct SendmailArgs {
    /// Also send to the addresses in the original's Bcc fields (To and Cc always get it).
    #[arg(short = 't')]
    read_recipients: bool,
    /// A line holding a single dot does not end the message (always so; for sendmail's sake).
    #[arg(short = 'i')]
    ignore_dots: bool,
    /// sendmail options: -oi (as -i) and the error modes -oe* (errors always go to stderr
    /// and the exit status).
    #[arg(short = 'o', value_name = "OPTION", value_parser = sendmail_option)]
    option: Vec<String>,
    /// Envelope sender: ignored, the exit writes its own anonymous From.
    #[arg(short = 'f', value_name = "ADDR")]
    from: Option<String>,
    /// The sender's full name: ignored, as -f.
    #[arg(short = 'F', value_name = "NAME")]
    full_name: Option<String>,
    /// Recipients. One that is in neither To nor Cc (how mail programs pass Bcc) gets its
    /// own copy of the original, addressed to it alone.
    #[arg(value_name = "RECIPIENT")]
    recipients: Vec<String>,
}

/// The -o options a mail program passes that mean nothing here: -oi, and the error modes.
fn sendmail_option(o: &str) -> Result<String, String> {
    if o == "i" || o.starts_with('e') && o.len() == 2 {
        Ok(o.to_string())
    } else {
        Err(format!("unsupported sendmail option -o{o} (only -oi and -oe* are understood)"))
    }
}

/// How paths are chosen; shared by `create` and `send`.
#[derive(clap::Args)]
struct PathArgs {
    /// A mix to put first on every path (your provider's).
    #[arg(long, value_name = "FQDN")]
    first_mix: Option<String>,
    /// Mixes per path (at least 4).
    #[arg(long, default_value_t = mixtasy::sender::path::MIN_HOPS)]
    hops: usize,
    /// Largest original accepted, in bytes.
    #[arg(long, default_value_t = create::DEFAULT_MAX_SIZE)]
    max_size: usize,
    /// Keep this header field, though it is not on the allowlist (repeatable).
    #[arg(long = "keep-header", value_name = "NAME")]
    keep_header: Vec<String>,
    /// Send every part this many times, each over its own random path to the same exit,
    /// which delivers it once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    copies: usize,
    /// Encrypt the original (PGP/MIME) to the certificate(s) in this key file before
    /// wrapping, so the exit sees only the header. Default: HOME/encrypt-to.asc if present.
    #[arg(long, value_name = "KEYFILE")]
    encrypt_to: Option<PathBuf>,
    /// Do not encrypt, even with HOME/encrypt-to.asc present.
    #[arg(long, conflicts_with = "encrypt_to")]
    no_encrypt: bool,
    /// Build paths even though the directory has unresolved key conflicts (an attacker's
    /// keys may be hiding honest mixes).
    #[arg(long)]
    despite_conflicts: bool,
    /// With trusted pingers: least median reliability of any hop, in percent (as Mixmaster's MINREL).
    #[arg(long, value_name = "PERCENT", default_value_t = 98.0)]
    min_reliability: f64,
    /// With trusted pingers: least median reliability of the exit, in percent (RELFINAL).
    #[arg(long, value_name = "PERCENT", default_value_t = 99.0)]
    min_exit_reliability: f64,
    /// With trusted pingers: greatest median latency of any hop, in hours (MAXLAT).
    #[arg(long, value_name = "HOURS", default_value_t = 36.0)]
    max_latency: f64,
    /// When no path passes the trusted pingers' rankings, build one without them instead
    /// of failing.
    #[arg(long)]
    relax: bool,
}

impl PathArgs {
    /// The ranking rules, when the directory has trusted pingers.
    fn rules(&self, directory: &Directory) -> Result<Option<mixtasy::sender::path::Rules>, ConfigError> {
        if !directory.ranked() {
            return Ok(None);
        }
        for (name, p) in
            [("--min-reliability", self.min_reliability), ("--min-exit-reliability", self.min_exit_reliability)]
        {
            if !(0.0..=100.0).contains(&p) {
                return Err(ConfigError(format!("{name} {p} is not a percentage between 0 and 100")));
            }
        }
        if !(self.max_latency.is_finite() && self.max_latency >= 0.0 && self.max_latency < 1e6) {
            return Err(ConfigError(format!("--max-latency {} is not a number of hours", self.max_latency)));
        }
        Ok(Some(mixtasy::sender::path::Rules {
            min_reliability: self.min_reliability / 100.0,
            min_exit_reliability: self.min_exit_reliability / 100.0,
            max_latency: Duration::from_secs_f64(self.max_latency * 3600.0),
        }))
    }
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
    /// List the trusted pingers, then stored mixes with modes, subkey expiry, WKD word and
    /// (with trusted pingers) median reliability and latency; then conflicts.
    List,
    /// Trust a pinger's key: paths then follow its rankings (the median across trusted
    /// pingers), and its keyring stands in for a keyserver that refuses discovery as too large.
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
    fn options(self, always: bool) -> Option<mixtasy::mixes::wkd::Options> {
        (always || self.wkd)
            .then_some(mixtasy::mixes::wkd::Options { resolve: self.wkd_resolve, ca_file: self.wkd_ca_file })
    }
}

fn main() -> ExitCode {
    mixtasy::util::tuning::tune_allocator();
    let args = match Args::try_parse() {
        Ok(args) => args,
        // A mail program calling `send` as its sendmail reads sysexits: a command line it
        // cannot use is EX_USAGE (64), said in the usual one block on stderr.
        Err(e) if e.use_stderr() && std::env::args().skip(1).any(|a| a == "send") => {
            let _ = e.print();
            return ExitCode::from(cli::sysexits::USAGE);
        }
        Err(e) => e.exit(),
    };
    let sending = matches!(args.command, Command::Send { .. });
    let result =
        run(args).map(|()| ExitCode::SUCCESS).map_err(|e| if sending { cli::exit_with(sysexit(&e), e) } else { e });
    cli::finish("mixtasy", result, None)
}

/// The directory holds no usable mix: nothing can be sent until keys are fetched.
#[derive(Debug, thiserror::Error)]
#[error("the directory of mix keys has no usable mix: run `mixtasy directory fetch` or `directory import`")]
struct EmptyDirectory;

/// `send`'s exit code, as sysexits(3), for the mail program: 75 (EX_TEMPFAIL) when the MTA
/// did not take a wire message (try again later), 78 (EX_CONFIG) for what the user must
/// set up (mix keys, paths, the recipient key), 65 (EX_DATAERR) for an original that cannot
/// be sent as it is, 70 (EX_SOFTWARE) otherwise.
fn sysexit(e: &anyhow::Error) -> u8 {
    use mixtasy::{
        batch::transport::TransportError, format::headers::HeaderError, sender::create::CreateError,
        sender::path::PathError, sender::pgpmime::KeyError,
    };
    for cause in e.chain() {
        if cause.is::<Handover>() || cause.is::<TransportError>() {
            return cli::sysexits::TEMPFAIL;
        }
        if cause.is::<EmptyDirectory>()
            || cause.is::<PathError>()
            || cause.is::<KeyError>()
            || cause.is::<ConfigError>()
        {
            return cli::sysexits::CONFIG;
        }
        if cause.is::<CreateError>() || cause.is::<HeaderError>() {
            return cli::sysexits::DATAERR;
        }
    }
    cli::sysexits::SOFTWARE
}

/// The MTA did not take a wire message; those before it are on their way.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {done} of {total} wire message(s) were handed over; send the original again")]
struct Handover {
    error: mixtasy::batch::transport::TransportError,
    done: usize,
    total: usize,
}

/// A setting of the sender (a command-line value or a file it names) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConfigError(String);

fn run(args: Args) -> Result<()> {
    let now = cli::now(args.now);
    let home = config::client_home(args.home)?;
    let pingers = Pingers::new(home.join("pingers"));
    let directory = Directory::new(home.join("directory")).with_pingers(pingers.certs()?);
    match args.command {
        Command::Directory { command: DirectoryCommand::Import { files, wkd } } => {
            fsutil::create_private_dir(&home)?;
            cli::directory_import(&directory, &files, now, wkd.options(false).as_ref())
        }
        Command::Directory { command: DirectoryCommand::List } => {
            cli::pingers_list(&pingers.list()?);
            cli::directory_list(&directory, now)
        }
        Command::Directory { command: DirectoryCommand::TrustPinger { keyfile, url } } => {
            fsutil::create_private_dir(&home)?;
            cli::trust_pinger(&pingers, &keyfile, url.as_deref(), now)
        }
        Command::Directory { command: DirectoryCommand::Choose { fingerprint } } => {
            cli::directory_choose(&directory, &fingerprint, now)
        }
        Command::Directory { command: DirectoryCommand::Fetch { keyserver, wkd } } => {
            fsutil::create_private_dir(&home)?;
            cli::directory_fetch(&directory, &keyserver, &pingers.list()?, now, wkd.options(false).as_ref())
        }
        Command::Directory { command: DirectoryCommand::VerifyWkd { wkd } } => {
            cli::verify_wkd(&directory, &[], &wkd.options(true).expect("always"), now)
        }
        Command::Create { path, out } => {
            let messages = wrap_stdin(&home, &directory, path, &[], now)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (i, m) in messages.iter().enumerate() {
                let path = out.join(format!("{:04}.eml", i + 1));
                fsutil::write_new(&path, &m.mail, 0o600)?;
            }
            eprintln!("mixtasy: wrote {} wire message(s) to {}", messages.len(), out.display());
            Ok(())
        }
        Command::Send { path, mua, sendmail, sendmail_timeout } => {
            let messages = wrap_stdin(&home, &directory, path, &mua_recipients(mua), now)?;
            hand_over(&messages, sendmail, sendmail_timeout)
        }
        Command::Nym { command } => nym(&home, &directory, command, now),
    }
}

/// Hands every wire message to sendmail, addressed to its first mix.
fn hand_over(messages: &[create::WireMessage], sendmail: PathBuf, timeout: u64) -> Result<()> {
    let transport = Transport::Sendmail { program: sendmail, timeout: Duration::from_secs(timeout) };
    // Everything is built before the first hand-over, so a bad original sends nothing.
    // A failure part-way cannot be undone: the parts already sent wait at their exit
    // until `part_expiry` and are then dropped, so the user is told to send again.
    for (i, m) in messages.iter().enumerate() {
        transport.send(None, &[m.to.to_string()], &m.mail).map_err(|e| Handover {
            error: e,
            done: i,
            total: messages.len(),
        })?;
    }
    eprintln!("mixtasy: handed {} wire message(s) to sendmail", messages.len());
    Ok(())
}

fn delivery(s: Option<String>) -> Result<Option<mixtasy::nymserv::request::Delivery>> {
    s.map(|d| {
        mixtasy::nymserv::request::Delivery::parse(&d)
            .ok_or_else(|| ConfigError(format!("--delivery {d:?}: `newsgroup` or `mixtasy:ADDRESS`")).into())
    })
    .transpose()
}

/// `mixtasy nym …`: the logic is in `nymclient`; here the command line and the hand-over.
fn nym(home: &std::path::Path, directory: &Directory, command: NymCommand, now: std::time::SystemTime) -> Result<()> {
    use mixtasy::nymclient::{
        fetch,
        profile::{Profile, Settings},
        request,
    };
    let (address, local, text, out, settings) = match command {
        NymCommand::Fetch { address, from, into, key } => {
            let p = Profile::new(home, &address)?;
            let key = p.key(key.as_deref())?;
            let source = mixtasy::nymserv::config::News::parse(&from)
                .ok_or_else(|| ConfigError(format!("--from {from:?}: `nntp://HOST:PORT/GROUP` or `maildir:DIR`")))?;
            let s = fetch::fetch(&p, &key, &source, &into, now)?;
            eprintln!("mixtasy: read {} article(s); {} new mail(s) for the nym written to {}; {} of ours refused (not sealed to the nym key by the server)", s.read, s.stored, into.display(), s.refused);
            return Ok(());
        }
        NymCommand::Create { address, server_key, hsub, symmetric, delivery: d, out } => {
            fsutil::create_private_dir(home)?;
            let p = Profile::new(home, &address)?;
            let server = mixtasy::nymserv::pgp::cert(
                &std::fs::read(&server_key).with_context(|| server_key.display().to_string())?,
            )?;
            let own = out.key.as_deref().map(|k| p.key(Some(k))).transpose()?;
            let changes = request::Changes {
                hsub: hsub.clone(),
                symmetric: symmetric.clone(),
                delivery: delivery(d)?,
                acksend: None,
            };
            request::modify_text(&changes)?; // checked before anything is written
            if hsub.is_none() {
                eprintln!(
                    "mixtasy: warning: without --hsub your mail cannot be told apart in the group; `fetch` needs one"
                );
            }
            let mut s = Settings::default();
            s.add(hsub.as_deref(), symmetric.as_deref());
            let key = p.init(&server, own.as_ref(), &s, now)?;
            let text = request::create_text(&key, &changes)?;
            (p.address.clone(), "config", text, out, None)
        }
        NymCommand::Confirm { address, code, out } => {
            (address, "config", request::confirm_text(&code)?.into_bytes(), out, None)
        }
        NymCommand::Modify { address, hsub, symmetric, delivery: d, acksend, out } => {
            let changes =
                request::Changes { hsub: hsub.clone(), symmetric: symmetric.clone(), delivery: delivery(d)?, acksend };
            let text = request::modify_text(&changes)?;
            if text.is_empty() {
                return Err(
                    ConfigError("nothing to modify: give --hsub, --symmetric, --delivery or --acksend".into()).into()
                );
            }
            (address, "config", text.into_bytes(), out, Some((hsub, symmetric)))
        }
        NymCommand::Delete { address, out } => (address, "config", b"delete: yes\n".to_vec(), out, None),
        NymCommand::Send { address, out } => {
            let mut raw = Vec::new();
            std::io::stdin().read_to_end(&mut raw).context("reading the original message")?;
            mixtasy::sender::submit::originals(&raw, &[])?; // a To or Cc, or nothing is sent
            (address, "send", raw, out, None)
        }
    };
    let p = Profile::new(home, &address)?;
    let sealed = request::seal(&p.key(out.key.as_deref())?, &p.server()?, &text, now)?;
    let mail = request::mail(local, p.domain(), &sealed);
    if out.print {
        use std::io::Write;
        std::io::stdout().write_all(&mail)?;
    } else {
        let mut path = out.path;
        path.encrypt_to = None;
        path.no_encrypt = true; // sealed to the server already
        let messages = wrap(home, directory, path, &[], mail, now)?;
        hand_over(&messages, out.sendmail, out.sendmail_timeout)?;
    }
    // The new passphrases are kept only once the request is out; old ones stay, for mail
    // sealed before the server takes the change.
    if let Some((hsub, symmetric)) = settings {
        let mut s = p.settings()?;
        s.add(hsub.as_deref(), symmetric.as_deref());
        p.save_settings(&s)?;
    }
    Ok(())
}

/// What the sendmail command line adds to the To/Cc recipients: the arguments (and with
/// -t, the Bcc fields, read by `wrap_stdin` before they are stripped: marked by `None`).
fn mua_recipients(mua: SendmailArgs) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = mua.recipients.into_iter().map(Some).collect();
    if mua.read_recipients {
        out.push(None);
    }
    out
}

/// Reads the original on stdin, keeps only the allowlisted header fields (as the exit
/// does, so an older exit leaks nothing either; stderr names what went), makes one original
/// per Bcc recipient (`submit`), encrypts each for its recipient if asked (`pgpmime`), and
/// builds their wire messages, all in memory: an error sends nothing.
fn wrap_stdin(
    home: &std::path::Path,
    directory: &Directory,
    path: PathArgs,
    extra: &[Option<String>],
    now: std::time::SystemTime,
) -> Result<Vec<create::WireMessage>> {
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw).context("reading the original message")?;
    wrap(home, directory, path, extra, raw, now)
}

/// `wrap_stdin` for an original already read.
fn wrap(
    home: &std::path::Path,
    directory: &Directory,
    path: PathArgs,
    extra: &[Option<String>],
    raw: Vec<u8>,
    now: std::time::SystemTime,
) -> Result<Vec<create::WireMessage>> {
    cli::refuse_conflicts(directory, path.despite_conflicts).map_err(|e| ConfigError(format!("{e:#}")))?;
    let rules = path.rules(directory)?;
    let first_mix = path
        .first_mix
        .map(|f| MixAddress::for_fqdn(&f))
        .transpose()
        .map_err(|e| ConfigError(format!("--first-mix: {e}")))?;
    let mut extra_rcpts = Vec::new();
    for r in extra {
        match r {
            Some(r) => extra_rcpts.push(r.clone()),
            None => extra_rcpts.extend(mixtasy::sender::submit::addresses(&raw, &["bcc"])?),
        }
    }
    let (original, removed) = mixtasy::format::headers::filter(&raw, &path.keep_header)?;
    if !removed.is_empty() {
        eprintln!("mixtasy: removed header fields: {} (keep one with --keep-header NAME)", removed.join(", "));
    }
    let originals = mixtasy::sender::submit::originals(&original, &extra_rcpts)?;
    let default_key = home.join("encrypt-to.asc");
    let key_file = match (path.encrypt_to, path.no_encrypt) {
        (_, true) => None,
        (Some(k), _) => Some(k),
        (None, false) => default_key.exists().then_some(default_key),
    };
    let certs = key_file
        .map(|k| {
            let bytes = std::fs::read(&k)
                .map_err(|e| ConfigError(format!("reading the recipient key file {}: {e}", k.display())))?;
            mixtasy::sender::pgpmime::read_certs(&bytes).with_context(|| k.display().to_string())
        })
        .transpose()?;
    // A directory that cannot be read is as good as none: the same advice fits.
    let mixes = directory.usable(now).ok().filter(|m| !m.is_empty()).ok_or(EmptyDirectory)?;
    let opts =
        Options { first_mix, hops: path.hops, max_size: path.max_size, copies: path.copies, rules, relax: path.relax };
    let mut rng = rand::rng();
    let mut out = Vec::new();
    for original in originals {
        let original = match &certs {
            Some(certs) => {
                if mixtasy::sender::pgpmime::has_subject(&original) {
                    eprintln!("mixtasy: warning: the body is encrypted but the Subject stays in clear (the exit and the recipient's provider read it)");
                }
                mixtasy::sender::pgpmime::encrypt(&original, certs, now)?
            }
            None => original,
        };
        out.extend(create::create(&original, &mixes, &opts, now, &mut rng)?);
    }
    Ok(out)
}
