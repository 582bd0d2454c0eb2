//! Intake: the Maildir the MTA delivers the mix address into (`maildir` setting).
//!
//! Every file in `new/` and `cur/` is a message to take. A file leaves only by `remove`
//! (after its fate committed) or by a move to the `.operator` folder (mail that is not
//! mix traffic: operator mail, bounces, later block requests), never otherwise.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fsutil;

pub struct Spool {
    root: PathBuf,
}

/// One message file in the spool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The Maildir unique name (without `:2,` flags): stable across new/ → cur/.
    pub source: String,
    pub path: PathBuf,
}

const OPERATOR: &str = ".operator";

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

    /// Every message file, `new/` first.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.root.join(sub);
            let mut names: Vec<(String, PathBuf)> = Vec::new();
            for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let e = e.with_context(|| format!("reading {}", dir.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    continue;
                }
                let source = name.split(':').next().unwrap_or(&name).to_string();
                names.push((source, e.path()));
            }
            names.sort();
            out.extend(names.into_iter().map(|(source, path)| Entry { source, path }));
        }
        Ok(out)
    }

    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Moves a file to `.operator/new/`, creating the folder if needed.
    pub fn to_operator(&self, path: &Path) -> Result<()> {
        let folder = self.root.join(OPERATOR);
        Self::create(&folder)?;
        let name = path.file_name().context("spool file has no name")?;
        let target = folder.join("new").join(name);
        if target.exists() {
            bail!("{} exists already; leaving {} in place", target.display(), path.display());
        }
        fs::rename(path, &target).with_context(|| format!("moving {} to {}", path.display(), target.display()))
    }

    /// Makes removals and moves durable.
    pub fn sync(&self) -> Result<()> {
        for sub in ["new", "cur"] {
            fsutil::sync_dir(&self.root.join(sub))?;
        }
        let op = self.root.join(OPERATOR).join("new");
        if op.exists() {
            fsutil::sync_dir(&op)?;
        }
        Ok(())
    }

    /// How many messages wait in `.operator`.
    pub fn operator_count(&self) -> usize {
        ["new", "cur"].iter().filter_map(|s| fs::read_dir(self.root.join(OPERATOR).join(s)).ok()).map(|d| d.count()).sum()
    }
}
