//! The idempotency journal on the session's volume (`<data>/messages/idempotency`): a keyed
//! send is recorded, and fsync'd, before the page is asked to send it, and its result once the
//! page handed it over, so the same key within [`TTL`] never sends twice — across agent
//! restarts and callers retrying after a timeout.
//!
//! One small file per key (`<sha256 of the key>.json`), each written to a temporary file,
//! fsync'd, renamed over the entry and the directory fsync'd. Recording, completing and
//! expiring one entry never rewrites the others (an append-only log would need compaction,
//! and its torn tail after a crash handled); a crash mid-write leaves only a temporary file,
//! removed at the next start, and the entry as it was. Expiry deletes files older than
//! [`TTL`]; the number of entries is bounded ([`Journal::open`]'s `max_entries`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::page::SentMessage;

/// How long a key is remembered.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

const TMP_SUFFIX: &str = ".tmp";

/// What is known about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Digest of the request (recipient and text): the same key with another request is
    /// refused instead of answered with the first one's result.
    pub fingerprint: String,
    /// The id the page is asked to send under.
    pub message_id: String,
    /// The chat the number resolved to.
    pub chat: String,
    /// Seconds since the epoch when the key was first recorded.
    pub created_at: u64,
    /// The page's answer; `None` while the send may or may not have happened (a retry asks
    /// the page again under the same id).
    pub result: Option<SentMessage>,
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    max_entries: usize,
    /// Entry file name → created_at, for the bound and expiry without reading every file.
    index: Mutex<HashMap<String, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("idempotency journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every slot holds a key younger than [`TTL`]; the oldest frees in `retry_after`.
    #[error("idempotency journal full ({entries} keys within 24 h)")]
    Full {
        entries: usize,
        retry_after: Duration,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// Opens (creates) the journal in `dir`: removes torn temporary files and expired or
    /// unreadable entries, and indexes the rest.
    pub fn open(dir: &Path, max_entries: usize) -> Result<Self, JournalError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let journal = Self {
            dir: dir.to_path_buf(),
            max_entries,
            index: Mutex::new(HashMap::new()),
        };
        let now = now_secs();
        let mut index = HashMap::new();
        for item in fs::read_dir(dir).map_err(io(dir))? {
            let item = item.map_err(io(dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            let keep = !name.ends_with(TMP_SUFFIX)
                && read(&path)
                    .ok()
                    .flatten()
                    .filter(|e| !expired(e.created_at, now))
                    .map(|e| index.insert(name.clone(), e.created_at))
                    .is_some();
            if !keep {
                remove(&path)?;
            }
        }
        *journal.lock() = index;
        Ok(journal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(key_digest: &str) -> String {
        format!("{key_digest}.json")
    }

    /// The entry of a key (its digest), unless absent or expired.
    pub fn get(&self, key_digest: &str) -> Result<Option<Entry>, JournalError> {
        let path = self.dir.join(Self::file(key_digest));
        Ok(read(&path)?.filter(|e| !expired(e.created_at, now_secs())))
    }

    /// Records (or replaces) a key's entry durably: when this returns, a crash keeps it.
    pub fn put(&self, key_digest: &str, entry: &Entry) -> Result<(), JournalError> {
        let name = Self::file(key_digest);
        {
            let mut index = self.lock();
            if !index.contains_key(&name) && index.len() >= self.max_entries {
                self.expire_locked(&mut index, now_secs())?;
                if index.len() >= self.max_entries {
                    let oldest = index.values().min().copied().unwrap_or(0);
                    let frees_at = oldest + TTL.as_secs();
                    return Err(JournalError::Full {
                        entries: index.len(),
                        retry_after: Duration::from_secs(
                            frees_at.saturating_sub(now_secs()).max(1),
                        ),
                    });
                }
            }
            index.insert(name.clone(), entry.created_at);
        }
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let bytes = serde_json::to_vec(entry).map_err(|e| JournalError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// Deletes entries older than [`TTL`]; returns how many.
    pub fn expire(&self) -> Result<usize, JournalError> {
        self.expire_locked(&mut self.lock(), now_secs())
    }

    fn expire_locked(
        &self,
        index: &mut HashMap<String, u64>,
        now: u64,
    ) -> Result<usize, JournalError> {
        let old: Vec<String> = index
            .iter()
            .filter(|(_, at)| expired(**at, now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &old {
            remove(&self.dir.join(name))?;
            index.remove(name);
        }
        Ok(old.len())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

fn expired(created_at: u64, now: u64) -> bool {
    now.saturating_sub(created_at) >= TTL.as_secs()
}

/// `None` for a missing file; an unreadable one (not ours, or damaged) is treated as missing
/// too by [`Journal::open`], which removes it.
fn read(path: &Path) -> Result<Option<Entry>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn remove(path: &Path) -> Result<(), JournalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::page::Ack;

    fn entry(created_at: u64) -> Entry {
        Entry {
            fingerprint: "f".into(),
            message_id: "3EB0AAAAAAAAAAAAAAAA".into(),
            chat: "5491122334455@c.us".into(),
            created_at,
            result: None,
        }
    }

    #[test]
    fn an_entry_survives_reopening_and_is_completed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 10).unwrap();
        let mut e = entry(now_secs());
        j.put("k1", &e).unwrap();
        let j = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(j.get("k1").unwrap(), Some(e.clone()));
        e.result = Some(SentMessage {
            id: "true_5491122334455@c.us_3EB0AAAAAAAAAAAAAAAA".into(),
            to: e.chat.clone(),
            timestamp: 1,
            ack: Ack::Server,
        });
        j.put("k1", &e).unwrap();
        assert_eq!(j.get("k1").unwrap(), Some(e));
        assert_eq!(j.len(), 1);
        assert_eq!(j.get("other").unwrap(), None);
    }

    #[test]
    fn torn_writes_and_expired_entries_are_gone_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 10).unwrap();
        j.put("old", &entry(now_secs() - TTL.as_secs())).unwrap();
        j.put("young", &entry(now_secs())).unwrap();
        fs::write(dir.path().join("torn.json.tmp"), b"{\"finger").unwrap();
        fs::write(dir.path().join("damaged.json"), b"{\"finger").unwrap();
        assert_eq!(
            j.get("old").unwrap(),
            None,
            "expired entries are not served"
        );
        let j = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(j.len(), 1);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["young.json"]);
    }

    #[test]
    fn the_journal_is_bounded_and_says_when_a_slot_frees() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 2).unwrap();
        let now = now_secs();
        j.put("a", &entry(now - 3600)).unwrap();
        j.put("b", &entry(now)).unwrap();
        j.put("a", &entry(now - 3600)).unwrap(); // replacing is not growing
        match j.put("c", &entry(now)) {
            Err(JournalError::Full {
                entries,
                retry_after,
            }) => {
                assert_eq!(entries, 2);
                assert!(retry_after <= TTL - Duration::from_secs(3600) + Duration::from_secs(5));
                assert!(retry_after >= TTL - Duration::from_secs(3600 + 5));
            }
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(j.get("c").unwrap(), None, "a refused key is not recorded");
    }

    #[test]
    fn a_full_journal_makes_room_by_expiring() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1).unwrap();
        j.put("a", &entry(now_secs())).unwrap();
        // age it in place, as time passing would
        j.lock().insert("a.json".into(), now_secs() - TTL.as_secs());
        j.put("b", &entry(now_secs())).unwrap();
        assert_eq!(j.len(), 1);
        assert!(!dir.path().join("a.json").exists());
    }
}
