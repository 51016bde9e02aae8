//! The Chromium profile on the data volume: it *is* the saved WhatsApp login (like
//! whatsapp-web.js LocalAuth, which keeps the whole user-data-dir), so it is only ever moved
//! aside or wiped deliberately.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Chromium's single-instance files. They name the host/PID of the process that held the
/// profile; after a pod restart (new hostname) a stale lock makes Chromium refuse the
/// profile (wppconnect-server #1844, WAHA #1071). Only one pod ever uses a profile (the
/// StatefulSet has at most one replica), so a lock found at start-up is always stale.
const SINGLETON_FILES: [&str; 3] = ["SingletonLock", "SingletonSocket", "SingletonCookie"];

/// Marker written after a logout or an unlink: the agent stays idle (no browser, no QR)
/// until a new QR is requested, also across pod restarts.
const IDLE_MARKER: &str = "logged-out";

#[derive(Debug, Clone)]
pub struct Profile {
    data_dir: PathBuf,
    dir: PathBuf,
}

/// What the profile directory looks like before a launch.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    /// No profile yet: a fresh login (QR) will be needed.
    Missing,
    /// Looks openable (Chromium has the final word).
    Present,
    /// Cannot be opened by Chromium as a profile.
    Corrupt(String),
}

impl Profile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            dir: data_dir.join("profile"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn health(&self) -> Health {
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Health::Missing,
            Err(e) => return Health::Corrupt(format!("cannot stat the profile: {e}")),
        };
        if !meta.is_dir() {
            return Health::Corrupt("the profile path is not a directory".into());
        }
        // Chromium keeps everything of the (only) profile in Default/; if that is not a
        // directory it starts but cannot open any page in it.
        match std::fs::symlink_metadata(self.dir.join("Default")) {
            Ok(m) if !m.is_dir() => Health::Corrupt("Default/ is not a directory".into()),
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Health::Corrupt(format!("cannot stat Default/: {e}"))
            }
            _ => match std::fs::read_dir(&self.dir) {
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        Health::Present
                    } else {
                        Health::Missing
                    }
                }
                Err(e) => Health::Corrupt(format!("cannot read the profile: {e}")),
            },
        }
    }

    /// Creates the profile directory and removes stale single-instance locks.
    pub fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|source| self.err(source))?;
        for name in SINGLETON_FILES {
            let path = self.dir.join(name);
            // symlink_metadata: SingletonLock is a dangling symlink ("host-pid"), which
            // `exists()` would report as absent.
            if std::fs::symlink_metadata(&path).is_ok() {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = name, "removed stale Chromium lock from the profile")
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(source) => return Err(Error::Profile { path, source }),
                }
            }
        }
        Ok(())
    }

    /// Deletes the saved login.
    pub fn wipe(&self) -> Result<()> {
        match std::fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Ok(m) if !m.is_dir() => {
                std::fs::remove_file(&self.dir).map_err(|source| self.err(source))
            }
            _ => std::fs::remove_dir_all(&self.dir).map_err(|source| self.err(source)),
        }
    }

    /// Moves a profile that cannot be opened to `profile.corrupt-<unix seconds>` (kept for
    /// inspection, never deleted by the agent) and returns the new path.
    pub fn move_aside(&self) -> Result<PathBuf> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut target = self.data_dir.join(format!("profile.corrupt-{ts}"));
        let mut n = 1;
        while target.exists() {
            target = self.data_dir.join(format!("profile.corrupt-{ts}-{n}"));
            n += 1;
        }
        std::fs::rename(&self.dir, &target).map_err(|source| self.err(source))?;
        Ok(target)
    }

    pub fn is_idle(&self) -> bool {
        self.data_dir.join(IDLE_MARKER).exists()
    }

    pub fn set_idle(&self, idle: bool) -> Result<()> {
        let path = self.data_dir.join(IDLE_MARKER);
        let res = if idle {
            std::fs::create_dir_all(&self.data_dir)
                .and_then(|()| std::fs::write(&path, b"logged out; waiting for a QR request\n"))
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        res.map_err(|source| Error::Profile { path, source })
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Profile {
            path: self.dir.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_locks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Profile::new(tmp.path());
        assert_eq!(p.health(), Health::Missing);
        p.prepare().expect("prepare");
        assert_eq!(p.health(), Health::Missing);
        std::os::unix::fs::symlink("otherhost-123", p.dir().join("SingletonLock"))
            .expect("symlink");
        std::fs::write(p.dir().join("SingletonCookie"), "x").expect("write");
        std::fs::create_dir(p.dir().join("Default")).expect("mkdir");
        assert_eq!(p.health(), Health::Present);
        p.prepare().expect("prepare");
        assert!(std::fs::symlink_metadata(p.dir().join("SingletonLock")).is_err());
        assert!(!p.dir().join("SingletonCookie").exists());
        assert!(p.dir().join("Default").is_dir());
    }

    #[test]
    fn corrupt_profile_is_moved_aside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Profile::new(tmp.path());
        std::fs::create_dir_all(p.dir()).expect("mkdir");
        std::fs::write(p.dir().join("Default"), "garbage").expect("write");
        assert!(matches!(p.health(), Health::Corrupt(_)));
        let aside = p.move_aside().expect("move");
        assert!(
            aside
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("profile.corrupt-"))
        );
        assert!(aside.join("Default").is_file());
        assert_eq!(p.health(), Health::Missing);
    }

    #[test]
    fn idle_marker_and_wipe() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Profile::new(tmp.path());
        assert!(!p.is_idle());
        p.set_idle(true).expect("idle");
        assert!(p.is_idle());
        p.set_idle(false).expect("not idle");
        assert!(!p.is_idle());
        p.prepare().expect("prepare");
        std::fs::write(p.dir().join("x"), "y").expect("write");
        p.wipe().expect("wipe");
        assert!(!p.dir().exists());
        p.wipe().expect("wipe twice");
    }
}
