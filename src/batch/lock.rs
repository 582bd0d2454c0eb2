//! One round at a time per home: an exclusive, non-blocking `flock` on `HOME/round.lock`
//! (cargo's scheme: try first, never wait; a timer will start the next round anyway).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Held while it lives; the kernel releases it if the process dies.
pub struct RoundLock {
    _file: File,
}

/// `Ok(None)` when another process holds the lock.
pub fn try_lock(home: &Path) -> Result<Option<RoundLock>> {
    let path = home.join("round.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RoundLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_lock_is_refused_until_the_first_goes() {
        let t = tempfile::tempdir().unwrap();
        let a = super::try_lock(t.path()).unwrap();
        assert!(a.is_some());
        assert!(super::try_lock(t.path()).unwrap().is_none());
        drop(a);
        assert!(super::try_lock(t.path()).unwrap().is_some());
    }
}
