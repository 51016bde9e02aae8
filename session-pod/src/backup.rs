//! The last-good copy of the login (docs/session-agent.md "Backups"): the few parts of the
//! Chromium profile WhatsApp Web keeps its login in ([`LOGIN_SET`]), copied to
//! `<data>/backups/<unix-ms>/` once a session is connected, and copied back over the profile
//! when the profile no longer restores the login. File work only; when to take or restore a
//! copy is decided by the state machine (`state/`).
//!
//! Consistency: Chromium writes its LevelDB and SQLite files while it runs, so a copy is only
//! kept if nothing in the set changed while it was read (same names, sizes, mtimes and inodes
//! before and after, else it is retried after a quiet period), and only if every LevelDB in it
//! is complete (`CURRENT` names a manifest that is there). Each file's size and CRC-32 go into
//! the copy's `manifest.json`, written last; the copy is fsynced and then renamed into place
//! from a `.tmp-` directory, so a copy is either whole or not there. The checksums are checked
//! again before a restore: a damaged copy is deleted, never restored.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What WhatsApp Web's login needs of the profile, relative to the user-data-dir
/// (docs/session-agent.md "Backups"): IndexedDB, where the page keeps the device's keys and
/// credentials — with the fake, a profile holding only `Default/IndexedDB` restores the
/// login and one without it does not — and Local Storage, which the real page also uses
/// (`last-wid-md` and others) and which whatsapp-web.js' RemoteAuth saves next to IndexedDB
/// (its field-tested minimal set). Everything else (caches, Service Worker scripts, the
/// QuotaManager database, cookies, preferences) Chromium or the page rebuilds.
pub const LOGIN_SET: [&str; 2] = ["Default/IndexedDB", "Default/Local Storage"];

/// LevelDB files that are not data: the lock the running Chromium holds and the info logs
/// (rewritten at every open), which a copy neither needs nor should wait for.
const NOT_DATA: [&str; 3] = ["LOCK", "LOG", "LOG.old"];

const MANIFEST: &str = "manifest.json";
const TMP_PREFIX: &str = ".tmp-";
/// Copies attempted before giving up on a profile that keeps changing.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the profile has no login store to back up (no IndexedDB)")]
    NoLoginStore,
    #[error("the login store is {bytes} bytes, above the limit of {max} bytes")]
    TooLarge { bytes: u64, max: u64 },
    #[error("the profile kept changing during {attempts} copies")]
    Unsettled { attempts: u32 },
    #[error("incomplete LevelDB in the copy: {0}")]
    Incomplete(String),
    #[error("backup {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("no usable backup")]
    NoneUsable,
    #[error("cancelled: the browser's life ended")]
    Cancelled,
}

type Result<T> = std::result::Result<T, BackupError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Copies kept (the newest first); 0 disables backups.
    pub keep: usize,
    /// A login store larger than this is not copied.
    pub max_bytes: u64,
    /// How long the profile must have been left alone before it is copied.
    pub settle: Duration,
}

#[derive(Clone, Debug)]
pub struct Backups {
    dir: PathBuf,
    profile: PathBuf,
    limits: Limits,
}

/// One file of a copy, as recorded in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileEntry {
    bytes: u64,
    crc32: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// When the copy was taken (unix milliseconds).
    taken_at_ms: u64,
    /// Relative path (to the profile) → size and checksum.
    files: BTreeMap<String, FileEntry>,
}

/// A copy that was kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub taken_at: SystemTime,
    pub bytes: u64,
    pub files: usize,
    pub elapsed: Duration,
}

/// A copy that was put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub taken_at: SystemTime,
    pub bytes: u64,
    /// Newer copies found damaged and deleted on the way.
    pub damaged: usize,
}

/// What a file looked like (to tell whether it changed while it was copied).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    bytes: u64,
    mtime: Option<SystemTime>,
    inode: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Backups {
    /// Copies live in `<data_dir>/backups`, next to the profile.
    pub fn new(data_dir: &Path, profile: &Path, limits: Limits) -> Self {
        Self {
            dir: data_dir.join("backups"),
            profile: profile.to_path_buf(),
            limits,
        }
    }

    pub fn enabled(&self) -> bool {
        self.limits.keep > 0
    }

    /// The kept copies, newest first (by the time in their name; unfinished `.tmp-` copies
    /// are not copies).
    fn generations(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let ms = e.file_name().to_str()?.parse::<u64>().ok()?;
                Some((ms, e.path()))
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.0));
        out
    }

    /// When the newest kept copy was taken (not verified: that happens before a restore).
    pub fn newest(&self) -> Option<SystemTime> {
        let (ms, _) = self.generations().into_iter().next()?;
        Some(UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Deletes every copy (after a logout or an unlink: that login must not come back).
    pub fn wipe(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io(&self.dir)(e)),
            _ => Ok(()),
        }
    }

    /// Takes a copy of the login set of the running profile (blocking: run it off the async
    /// loop). Waits `settle` first, so that what the page wrote on connecting is on disk.
    /// `cancel` (the browser's life ended) stops it before it keeps anything.
    pub fn take(&self, cancel: &AtomicBool) -> Result<Taken> {
        let started = Instant::now();
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        self.remove_unfinished();
        for attempt in 1..=ATTEMPTS {
            settle(self.limits.settle, cancel)?;
            let before = self.stamps()?;
            if !before
                .keys()
                .any(|p| p.starts_with("Default/IndexedDB/") && p.ends_with("/CURRENT"))
            {
                return Err(BackupError::NoLoginStore);
            }
            let bytes: u64 = before.values().map(|s| s.bytes).sum();
            if bytes > self.limits.max_bytes {
                return Err(BackupError::TooLarge {
                    bytes,
                    max: self.limits.max_bytes,
                });
            }
            // Whole milliseconds: the name of the copy, and what a restore reports.
            let now = UNIX_EPOCH + Duration::from_millis(unix_ms(SystemTime::now()));
            let tmp = self.dir.join(format!("{TMP_PREFIX}{}", unix_ms(now)));
            let files = match self.copy_out(&before, &tmp) {
                Ok(files) => files,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            };
            let after = self.stamps()?;
            if after != before {
                tracing::debug!(attempt, "the profile changed while it was copied; again");
                let _ = std::fs::remove_dir_all(&tmp);
                continue;
            }
            if let Err(e) = check_leveldbs(&tmp.join("files")) {
                let _ = std::fs::remove_dir_all(&tmp);
                // A LevelDB caught between a compaction's steps: try again.
                tracing::debug!(attempt, error = %e, "incomplete copy; again");
                continue;
            }
            if cancel.load(Ordering::SeqCst) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(BackupError::Cancelled);
            }
            let manifest = Manifest {
                taken_at_ms: unix_ms(now),
                files,
            };
            self.seal(&tmp, &manifest)?;
            self.prune();
            return Ok(Taken {
                taken_at: now,
                bytes,
                files: manifest.files.len(),
                elapsed: started.elapsed(),
            });
        }
        Err(BackupError::Unsettled { attempts: ATTEMPTS })
    }

    /// Writes the manifest, fsyncs and renames the copy into place.
    fn seal(&self, tmp: &Path, manifest: &Manifest) -> Result<()> {
        let path = tmp.join(MANIFEST);
        let body =
            serde_json::to_vec_pretty(manifest).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&path).map_err(io(&path))?;
        f.write_all(&body).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        sync_tree(tmp)?;
        let target = self.dir.join(manifest.taken_at_ms.to_string());
        std::fs::rename(tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir)
    }

    /// Keeps the newest `keep` copies.
    fn prune(&self) {
        for (_, path) in self.generations().into_iter().skip(self.limits.keep) {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing an old backup failed");
            }
        }
    }

    /// A copy left half-written by an agent that died while copying.
    fn remove_unfinished(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Every file of the login set in the live profile, by relative path.
    fn stamps(&self) -> Result<BTreeMap<String, Stamp>> {
        let mut out = BTreeMap::new();
        for rel in LOGIN_SET {
            walk(&self.profile, Path::new(rel), &mut out)?;
        }
        Ok(out)
    }

    fn copy_out(
        &self,
        files: &BTreeMap<String, Stamp>,
        tmp: &Path,
    ) -> Result<BTreeMap<String, FileEntry>> {
        let mut out = BTreeMap::new();
        for rel in files.keys() {
            let from = self.profile.join(rel);
            let to = tmp.join("files").join(rel);
            let entry = copy_file(&from, &to)?;
            out.insert(rel.clone(), entry);
        }
        Ok(out)
    }

    /// Puts the newest undamaged copy back over the profile's login set (Chromium must not be
    /// running). Damaged copies met on the way are deleted. The profile's own login set is
    /// replaced, not merged: it is the one that did not restore the login.
    pub fn restore(&self) -> Result<Restored> {
        let mut damaged = 0;
        for (_, path) in self.generations() {
            match verify(&path) {
                Ok(manifest) => {
                    self.put_back(&path, &manifest)?;
                    return Ok(Restored {
                        taken_at: UNIX_EPOCH + Duration::from_millis(manifest.taken_at_ms),
                        bytes: manifest.files.values().map(|f| f.bytes).sum(),
                        damaged,
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup damaged; deleting it");
                    damaged += 1;
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "deleting a damaged backup failed");
                    }
                }
            }
        }
        Err(BackupError::NoneUsable)
    }

    fn put_back(&self, copy: &Path, manifest: &Manifest) -> Result<()> {
        // Into a staging directory inside the profile first, so that a failure halfway leaves
        // the profile's own set untouched.
        let staging = self.profile.join(".restoring");
        let _ = std::fs::remove_dir_all(&staging);
        for rel in manifest.files.keys() {
            copy_file(&copy.join("files").join(rel), &staging.join(rel))?;
        }
        sync_tree(&staging)?;
        for rel in LOGIN_SET {
            let live = self.profile.join(rel);
            remove_any(&live)?;
            let staged = staging.join(rel);
            if std::fs::symlink_metadata(&staged).is_ok() {
                if let Some(parent) = live.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::rename(&staged, &live).map_err(io(&live))?;
            }
        }
        remove_any(&staging)?;
        sync_dir(&self.profile.join("Default"))
    }
}

/// Sleeps `d` unless cancelled meanwhile.
fn settle(d: Duration, cancel: &AtomicBool) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(BackupError::Cancelled);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Whether a copy is whole: its manifest reads and every file has its recorded size and
/// checksum, and its LevelDBs are complete.
fn verify(copy: &Path) -> Result<Manifest> {
    let damaged = |reason: String| BackupError::Damaged {
        path: copy.to_path_buf(),
        reason,
    };
    let body = std::fs::read(copy.join(MANIFEST)).map_err(|e| damaged(format!("manifest: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&body).map_err(|e| damaged(format!("manifest: {e}")))?;
    for (rel, want) in &manifest.files {
        let got = checksum(&copy.join("files").join(rel)).map_err(|e| damaged(e.to_string()))?;
        if &got != want {
            return Err(damaged(format!(
                "{rel}: {} bytes, crc {:08x}; the manifest says {} bytes, crc {:08x}",
                got.bytes, got.crc32, want.bytes, want.crc32
            )));
        }
    }
    check_leveldbs(&copy.join("files")).map_err(|e| damaged(e.to_string()))?;
    Ok(manifest)
}

/// Every LevelDB under `root` (a directory with a `CURRENT`) names a manifest that exists
/// and is not empty — what LevelDB needs to open it. A copy taken between a compaction's
/// steps can miss it.
fn check_leveldbs(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        let current = dir.join("CURRENT");
        let Ok(name) = std::fs::read_to_string(&current) else {
            continue;
        };
        let name = name.trim_end_matches('\n');
        let ok = name.starts_with("MANIFEST-")
            && !name.contains('/')
            && std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0);
        if !ok {
            return Err(BackupError::Incomplete(format!(
                "{}: CURRENT names {name:?}, which is missing or empty",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Adds the files under `root/rel` (a file or a directory) to `out`.
fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, Stamp>) -> Result<()> {
    let path = root.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    if meta.is_dir() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            // Deleted meanwhile (a compaction): the stamps differ and the copy is retried.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&path)(e)),
        };
        for e in entries.flatten() {
            walk(root, &rel.join(e.file_name()), out)?;
        }
    } else if meta.is_file() {
        if rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| NOT_DATA.contains(&n))
        {
            return Ok(());
        }
        use std::os::unix::fs::MetadataExt;
        out.insert(
            rel.to_string_lossy().into_owned(),
            Stamp {
                bytes: meta.len(),
                mtime: meta.modified().ok(),
                inode: meta.ino(),
            },
        );
    }
    Ok(())
}

/// Copies one file, fsyncs it, and returns its size and checksum (of what was written).
fn copy_file(from: &Path, to: &Path) -> Result<FileEntry> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut src = std::fs::File::open(from).map_err(io(from))?;
    let mut dst = std::fs::File::create(to).map_err(io(to))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io(to))?;
        bytes += n as u64;
    }
    dst.sync_all().map_err(io(to))?;
    Ok(FileEntry {
        bytes,
        crc32: hasher.finalize(),
    })
}

fn checksum(path: &Path) -> Result<FileEntry> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry {
        bytes,
        crc32: hasher.finalize(),
    })
}

fn remove_any(path: &Path) -> Result<()> {
    let res = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    res.map_err(io(path))
}

/// fsync of a directory: makes the names in it (a rename, new files) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// fsync of every directory under `root` (the files were synced when written).
fn sync_tree(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
