//! The file work of backups, on a profile laid out like Chromium's (no Chromium here: the
//! integration tests in `tests/backup.rs` use the real one).

use super::*;

const LIMITS: Limits = Limits {
    keep: 2,
    max_bytes: 1 << 20,
    settle: Duration::ZERO,
};

static GO: AtomicBool = AtomicBool::new(false);

const IDB: &str = "Default/IndexedDB/http_127.0.0.1_1234.indexeddb.leveldb";

/// A profile with a LevelDB login store, a Local Storage, and things not in the set.
fn profile(root: &Path, login: &str) -> PathBuf {
    let p = root.join("profile");
    let write = |rel: &str, body: &[u8]| {
        let path = p.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    };
    write(&format!("{IDB}/CURRENT"), b"MANIFEST-000001\n");
    write(&format!("{IDB}/MANIFEST-000001"), b"manifest");
    write(&format!("{IDB}/000003.log"), login.as_bytes());
    write(&format!("{IDB}/LOCK"), b"");
    write(&format!("{IDB}/LOG"), b"info log");
    write(
        "Default/Local Storage/leveldb/CURRENT",
        b"MANIFEST-000002\n",
    );
    write("Default/Local Storage/leveldb/MANIFEST-000002", b"m");
    write("Default/Cookies", b"sqlite");
    write("Default/Cache/Cache_Data/data_0", b"not needed");
    write("Local State", b"{}");
    p
}

fn read(p: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(p.join(rel)).ok()
}

#[test]
fn a_copy_holds_the_login_set_only_and_restores_over_a_broken_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = profile(tmp.path(), "login-1");
    let b = Backups::new(tmp.path(), &p, LIMITS);
    assert_eq!(b.newest(), None);
    let taken = b.take(&GO).expect("take");
    assert_eq!(
        taken.files, 5,
        "IndexedDB (3: no LOCK, no LOG), Local Storage (2)"
    );
    assert_eq!(b.newest(), Some(taken.taken_at));
    let copy = b.generations()[0].1.clone();
    assert!(copy.join("files").join(IDB).join("000003.log").is_file());
    assert!(
        !copy.join("files/Default/Cache").exists(),
        "caches are not copied"
    );
    assert!(!copy.join("files").join(IDB).join("LOCK").exists());
    assert!(!copy.join("files/Default/Cookies").exists());

    // The live store is garbled and a file appears that the copy did not have.
    std::fs::write(p.join(IDB).join("000003.log"), b"\x00garbage").expect("garble");
    std::fs::write(p.join(IDB).join("000009.ldb"), b"junk").expect("junk");
    let restored = b.restore().expect("restore");
    assert_eq!(restored.taken_at, taken.taken_at);
    assert_eq!(restored.damaged, 0);
    assert_eq!(
        read(&p, &format!("{IDB}/000003.log")).as_deref(),
        Some("login-1")
    );
    assert!(
        !p.join(IDB).join("000009.ldb").exists(),
        "replaced, not merged"
    );
    assert_eq!(read(&p, "Default/Cookies").as_deref(), Some("sqlite"));
    assert_eq!(
        read(&p, "Default/Cache/Cache_Data/data_0").as_deref(),
        Some("not needed"),
        "the rest of the profile is left alone"
    );
    assert!(!p.join(".restoring").exists());
    assert!(b.newest().is_some(), "the copy is kept for next time");
}

#[test]
fn a_damaged_copy_is_deleted_and_never_restored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = profile(tmp.path(), "login-1");
    let b = Backups::new(tmp.path(), &p, LIMITS);
    b.take(&GO).expect("take");
    let copy = b.generations()[0].1.clone();
    std::fs::write(copy.join("files").join(IDB).join("000003.log"), b"login-X")
        .expect("damage the copy");
    std::fs::write(p.join(IDB).join("000003.log"), b"live").expect("live");
    assert!(matches!(b.restore(), Err(BackupError::NoneUsable)));
    assert_eq!(
        read(&p, &format!("{IDB}/000003.log")).as_deref(),
        Some("live"),
        "the profile is untouched"
    );
    assert_eq!(b.newest(), None, "the damaged copy is gone");

    // An older good copy is used when the newest is damaged.
    b.take(&GO).expect("take 1");
    std::fs::write(p.join(IDB).join("000003.log"), b"login-2").expect("newer");
    std::thread::sleep(Duration::from_millis(2));
    b.take(&GO).expect("take 2");
    let newest = b.generations()[0].1.clone();
    std::fs::remove_file(newest.join(MANIFEST)).expect("no manifest");
    let r = b.restore().expect("restore the older one");
    assert_eq!(r.damaged, 1);
    assert_eq!(
        read(&p, &format!("{IDB}/000003.log")).as_deref(),
        Some("live")
    );
}

#[test]
fn copies_are_bounded_in_count_and_size_and_need_a_login_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = profile(tmp.path(), "login");
    let b = Backups::new(tmp.path(), &p, LIMITS);
    for _ in 0..4 {
        b.take(&GO).expect("take");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(b.generations().len(), 2, "keep 2");
    // A half-written copy of a dead agent is removed by the next one.
    std::fs::create_dir_all(b.dir.join(".tmp-1")).expect("tmp copy");
    b.take(&GO).expect("take");
    assert!(!b.dir.join(".tmp-1").exists());

    let small = Backups::new(
        tmp.path(),
        &p,
        Limits {
            max_bytes: 10,
            ..LIMITS
        },
    );
    assert!(matches!(small.take(&GO), Err(BackupError::TooLarge { .. })));

    std::fs::remove_dir_all(p.join("Default/IndexedDB")).expect("rm");
    assert!(matches!(b.take(&GO), Err(BackupError::NoLoginStore)));

    b.wipe().expect("wipe");
    assert_eq!(b.newest(), None);
    assert!(!b.dir.exists());
    b.wipe().expect("wipe twice");
}

#[test]
fn a_leveldb_without_its_manifest_is_incomplete() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = profile(tmp.path(), "login");
    assert!(check_leveldbs(&p).is_ok());
    std::fs::remove_file(p.join(IDB).join("MANIFEST-000001")).expect("rm");
    assert!(matches!(
        check_leveldbs(&p),
        Err(BackupError::Incomplete(_))
    ));
    let b = Backups::new(tmp.path(), &p, LIMITS);
    assert!(
        b.take(&GO).is_err(),
        "an incomplete LevelDB is never kept as a copy"
    );
    assert_eq!(b.newest(), None);
}

#[test]
fn a_cancelled_copy_keeps_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = profile(tmp.path(), "login");
    let b = Backups::new(tmp.path(), &p, LIMITS);
    let stop = AtomicBool::new(true);
    assert!(matches!(b.take(&stop), Err(BackupError::Cancelled)));
    assert_eq!(b.newest(), None);
}
