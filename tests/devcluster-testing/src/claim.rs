//! A test's own cluster: its state dir and pod CIDR, claimed against every other test run on
//! the machine.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::binaries::cache_dir;
use devcluster::lifecycle;

use crate::cluster::{TestCluster, up, with_config};

/// A cluster of the test's own, never the run's shared one: for a test that restarts or stops
/// the cluster's parts, which would disturb every other test. [`claim`]s its state dir and pod
/// CIDR, then [`Claim::up`]. Take it down with [`TestCluster::down`].
pub async fn own_cluster(env_prefix: &str, state_dir: PathBuf, pod_cidr: &str) -> TestCluster {
    claim(env_prefix, state_dir, pod_cidr).await.up().await
}

/// The state dir and pod CIDR of a test's own cluster, held by this test alone on this machine
/// (among the runs that share the cache, `WA_CACHE_DIR`: every checkout by default) until the claim, or the [`TestCluster`] it brought up, is dropped (at the latest when the
/// test process exits).
///
/// `state_dir` and `pod_cidr` are the test's (each its own, so such tests can run side by
/// side); `env_prefix` lets a run move them: `<env_prefix>_STATE` and `<env_prefix>_POD_CIDR`.
/// Every checkout on the machine (a CI clone, a worktree) names the same state dir in the
/// shared cache and the same CIDR, which two clusters cannot use at once: a second run of the
/// same test waits here (it says so) until the first is done, instead of taking down the
/// first's cluster. Sharing the state dir, rather than one per checkout, lets the next run
/// take down whatever a crashed run of any checkout left holding the CIDR.
pub struct Claim {
    state_dir: PathBuf,
    pod_cidr: String,
    /// Exclusive locks on `<state_dir>.lock` and `<cache>/locks/pod-cidr-<cidr>.lock`.
    locks: Vec<File>,
}

/// Claims a test's own state dir and pod CIDR (see [`Claim`]); waits while another run holds
/// either.
pub async fn claim(env_prefix: &str, state_dir: PathBuf, pod_cidr: &str) -> Claim {
    let state_dir = std::env::var_os(format!("{env_prefix}_STATE"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(state_dir);
    let pod_cidr = std::env::var(format!("{env_prefix}_POD_CIDR"))
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| pod_cidr.to_string());
    let mut state_lock = state_dir.clone().into_os_string();
    state_lock.push(".lock");
    let cidr_lock = cache_dir()
        .join("locks")
        .join(format!("pod-cidr-{}.lock", pod_cidr.replace('/', "-")));
    // Always the state dir's first, then the CIDR's, so that no two runs each hold what the
    // other waits for.
    let locks = vec![
        hold_lock(
            PathBuf::from(state_lock),
            &format!("state dir {}", state_dir.display()),
        )
        .await,
        hold_lock(cidr_lock, &format!("pod CIDR {pod_cidr}")).await,
    ];
    Claim {
        state_dir,
        pod_cidr,
        locks,
    }
}

impl Claim {
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Takes down whatever a crashed earlier run left in the state dir, then starts the cluster,
    /// which keeps the claim.
    pub async fn up(self) -> TestCluster {
        let Claim {
            state_dir,
            pod_cidr,
            locks,
        } = self;
        let _ = lifecycle::down(&state_dir).await;
        let env = up(&state_dir, pod_cidr, Duration::from_secs(180)).await;
        let mut cluster = with_config(state_dir, env).await;
        cluster.claim = locks;
        cluster
    }
}

/// An exclusive lock on `path` (created if missing), held as long as the returned file is
/// open. While another process holds it, says which (the holder writes its pid and checkout
/// into the file) and waits.
async fn hold_lock(path: PathBuf, what: &str) -> File {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            eprintln!(
                "devcluster: the {what} is in use by another test run ({}): waiting until it is done ({})",
                holder.trim(),
                path.display()
            );
            file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", path.display()))
                .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
            eprintln!("devcluster: the {what} is free; going on");
        }
        Err(TryLockError::Error(e)) => panic!("locking {}: {e}", path.display()),
    }
    // Only for the message of a run that waits: a failure to write it changes nothing else.
    let _ = file.set_len(0).and_then(|()| {
        writeln!(
            file,
            "pid {}, checkout {}",
            std::process::id(),
            checkout().display()
        )
    });
    file
}

/// The workspace this library was built in (`tests/devcluster-testing` is two levels down).
fn checkout() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// A test's own state dir in the cache, `<cache>/state/<name>` (for [`own_cluster`]): the same
/// in every checkout (see [`Claim`]).
pub fn own_state_dir(name: &str) -> PathBuf {
    cache_dir().join("state").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_of_a_lock_waits_until_the_first_is_released() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.lock");
        let first = hold_lock(path.clone(), "test lock").await;
        let holder = std::fs::read_to_string(&path).expect("the holder's note");
        assert!(
            holder.starts_with(&format!("pid {}, checkout /", std::process::id())),
            "{holder}"
        );
        let second = tokio::spawn(hold_lock(path.clone(), "test lock"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "the second waits while the first holds it"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second gets it once the first is gone")
            .expect("join");
        drop(second);
    }
}
