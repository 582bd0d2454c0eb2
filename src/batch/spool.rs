//! Intake: the Maildir the MTA delivers the mix address into (`maildir` setting).
//!
//! Every file in `new/` and `cur/` is a message to take. A file leaves only by `remove`
//! (after its fate committed) or by a move to the `.operator` folder (mail that is not
//! mix traffic: operator mail, bounces, later block requests) or to the `.quarantine`
//! folder (a file whose peeling panicked: kept for the operator and a bug report, out of
//! every later round), never otherwise.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::util::fsutil;

pub struct Spool {
    root: PathBuf,
}

/// The folder of a spool file, for messages, which never name the file itself.
fn folder_of(path: &Path) -> String {
    path.parent().unwrap_or(path).display().to_string()
}

/// One message file in the spool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The Maildir unique name (without `:2,` flags): stable across new/ → cur/.
    pub source: String,
    pub path: PathBuf,
}

const OPERATOR: &str = ".operator";
const QUARANTINE: &str = ".quarantine";

impl Spool {
    /// Opens a Maildir; it must exist with `new/` and `cur/` (the MTA creates them).
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["new", "cur"] {
            let d = root.join(sub);
            fs::read_dir(&d).with_context(|| format!("cannot read the Maildir {} (setting `maildir`)", d.display()))?;
        }
        Ok(Spool { root: root.to_path_buf() })
    }

    /// Creates a Maildir (new, cur, tmp; 0700) if missing.
    pub fn create(root: &Path) -> Result<()> {
        for sub in ["new", "cur", "tmp"] {
            fsutil::create_private_dir(&root.join(sub))?;
        }
        Ok(())
    }

    /// Opens the Maildir a round takes from, creating what is missing of it first (0700,
    /// new/cur/tmp): Postfix makes a Maildir at its first delivery, and until then there
    /// is simply no mail, not a failed round. Folders that exist keep their owner's mode.
    /// Only the Maildir itself is made, never its parent: a `maildir` setting naming a
    /// directory that does not exist is a mistake to report, not a tree to create.
    pub fn open_for_round(root: &Path) -> Result<Self> {
        if root.parent().is_some_and(Path::is_dir) {
            for sub in ["new", "cur", "tmp"] {
                let d = root.join(sub);
                if !d.exists() {
                    fsutil::create_private_dir(&d).context("creating the missing Maildir (setting `maildir`)")?;
                }
            }
        }
        Self::open(root)
    }

    /// Every message file, `new/` first, in name (arrival) order: for crash recovery and
    /// tests. A round uses `walk`.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let mut names = Self::walk_dir(&self.root.join(sub))?.collect::<Result<Vec<_>>>()?;
            names.sort_by(|a, b| a.source.cmp(&b.source));
            out.extend(names);
        }
        Ok(out)
    }

    /// Every message file, `new/` first, read from the directories as the caller goes, so
    /// that a flooded spool is never held in memory whole (a listing costs ~250 bytes a
    /// file). Files the MTA adds meanwhile may or may not be seen; files removed meanwhile
    /// fail to read and are left alone.
    pub fn walk(&self) -> Result<impl Iterator<Item = Result<Entry>>> {
        let new = Self::walk_dir(&self.root.join("new"))?;
        let cur = Self::walk_dir(&self.root.join("cur"))?;
        Ok(new.chain(cur))
    }

    fn walk_dir(dir: &Path) -> Result<impl Iterator<Item = Result<Entry>>> {
        let d = dir.to_path_buf();
        let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        Ok(entries.filter_map(move |e| {
            let e = match e {
                Ok(e) => e,
                Err(err) => return Some(Err(err).with_context(|| format!("reading {}", d.display()))),
            };
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                return None;
            }
            let source = name.split(':').next().unwrap_or(&name).to_string();
            Some(Ok(Entry { source, path: e.path() }))
        }))
    }

    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // The folder, not the file: a Maildir file name tells when one message arrived.
            Err(e) => Err(e).with_context(|| format!("removing a message file from {}", folder_of(path))),
        }
    }

    /// Moves a file to `.operator/new/`, creating the folder if needed.
    pub fn to_operator(&self, path: &Path) -> Result<()> {
        self.move_to(OPERATOR, path)
    }

    /// Moves a file whose peeling panicked to `.quarantine/new/`.
    pub fn quarantine(&self, path: &Path) -> Result<()> {
        self.move_to(QUARANTINE, path)
    }

    fn move_to(&self, sub: &str, path: &Path) -> Result<()> {
        let folder = self.root.join(sub);
        Self::create(&folder)?;
        let name = path.file_name().context("spool file has no name")?;
        let target = folder.join("new").join(name);
        if target.exists() {
            bail!(
                "a file of the same name is in {} already; leaving the mail in {}",
                folder_of(&target),
                folder_of(path)
            );
        }
        fs::rename(path, &target)
            .with_context(|| format!("moving a mail from {} to {}", folder_of(path), folder_of(&target)))
    }

    /// Makes removals and moves durable.
    pub fn sync(&self) -> Result<()> {
        for sub in ["new", "cur"] {
            fsutil::sync_dir(&self.root.join(sub))?;
        }
        for folder in [OPERATOR, QUARANTINE] {
            let new = self.root.join(folder).join("new");
            if new.exists() {
                fsutil::sync_dir(&new)?;
            }
        }
        Ok(())
    }

    /// Past `max` mails in `.operator`, deletes the oldest (by modification time, then
    /// name) and returns how many: anyone can mail the mix address, and bounces and spam
    /// must not fill the disk.
    pub fn cap_operator(&self, max: u64) -> Result<usize> {
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = Vec::new();
        for s in ["new", "cur"] {
            let Ok(dir) = fs::read_dir(self.root.join(OPERATOR).join(s)) else { continue };
            for e in dir {
                let e = e.with_context(|| format!("reading {}", self.root.join(OPERATOR).display()))?;
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_file() {
                    files.push((
                        meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                        e.file_name().to_string_lossy().into_owned(),
                        e.path(),
                    ));
                }
            }
        }
        let over = files.len().saturating_sub(max as usize);
        if over == 0 {
            return Ok(0);
        }
        files.sort();
        for (_, _, path) in &files[..over] {
            self.remove(path)?;
        }
        for s in ["new", "cur"] {
            let d = self.root.join(OPERATOR).join(s);
            if d.exists() {
                fsutil::sync_dir(&d)?;
            }
        }
        Ok(over)
    }

    /// How many messages wait in `.operator`.
    pub fn operator_count(&self) -> usize {
        self.count_in(OPERATOR)
    }

    /// How many files wait in `.quarantine`.
    pub fn quarantine_count(&self) -> usize {
        self.count_in(QUARANTINE)
    }

    fn count_in(&self, folder: &str) -> usize {
        ["new", "cur"].iter().filter_map(|s| fs::read_dir(self.root.join(folder).join(s)).ok()).map(|d| d.count()).sum()
    }
}
