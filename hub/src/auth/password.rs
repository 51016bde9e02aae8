//! Password checks on a small pool of dedicated threads, each hashing in a block buffer of its
//! own that it reuses.
//!
//! argon2 fills `m` KiB of memory per check (19 MiB with the defaults of `hash-password`). Not
//! tokio's blocking pool: it starts a thread per concurrent check (up to 512), glibc gives each
//! thread an arena of its own and keeps the freed memory there, so the hub would grow by `m`
//! per concurrent login (docs/hub.md "Login memory"). Here at most `workers` checks run at
//! once, each in its worker's buffer, so what checks take is `workers × the largest m` of the
//! users file, whatever the load; a check beyond `workers + queue` waiting ones is refused at
//! once ([`Busy`]) instead of queueing without bound.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Largest argon2 memory cost a users file may ask for, in KiB (64 MiB; OWASP's strongest
/// recommended setting is 46 MiB). Each worker holds a buffer of the largest one in use.
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Largest iteration count and lanes: a users file must not turn one login into seconds of CPU.
pub const MAX_ITERATIONS: u32 = 16;
pub const MAX_LANES: u32 = 8;

/// Every worker is busy and the queue is full: retry shortly.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Busy;

struct Job {
    hash: Arc<str>,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
    /// Released when the check is done, not when the caller stops waiting: a client that
    /// hangs up does not free a slot its check still occupies.
    _slot: OwnedSemaphorePermit,
}

pub struct PasswordChecker {
    jobs: SyncSender<Job>,
    slots: Arc<Semaphore>,
    workers: usize,
}

impl PasswordChecker {
    /// `workers` threads (at least 1) and up to `queue` checks waiting for one.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(workers + queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || work(&rx))
                .expect("spawning a password worker thread");
        }
        Self {
            jobs,
            slots: Arc::new(Semaphore::new(workers + queue)),
            workers,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether `password` matches the PHC string `hash`; `Err(Busy)` at once when the pool and
    /// its queue are full.
    pub async fn check(&self, hash: Arc<str>, password: &str) -> Result<bool, Busy> {
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| Busy)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            hash,
            password: password.as_bytes().to_vec(),
            reply,
            _slot: slot,
        };
        // The channel holds as many jobs as there are slots, so with a slot this never blocks.
        self.jobs.try_send(job).map_err(|_| Busy)?;
        answer.await.map_err(|_| Busy)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let ok = verify(&job.hash, &job.password, &mut blocks);
        let _ = job.reply.send(ok);
    }
}

/// The parameters of a PHC argon2 string, refused when they are beyond the bounds above.
pub fn params_of(hash: &PasswordHash<'_>) -> Result<Params, String> {
    Algorithm::try_from(hash.algorithm).map_err(|e| e.to_string())?;
    let params = Params::try_from(hash).map_err(|e| e.to_string())?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(format!(
            "argon2 memory m={} KiB is above the hub's limit of {MAX_MEMORY_KIB} KiB",
            params.m_cost()
        ));
    }
    if params.t_cost() > MAX_ITERATIONS || params.p_cost() > MAX_LANES {
        return Err(format!(
            "argon2 t={} p={} is above the hub's limits (t ≤ {MAX_ITERATIONS}, p ≤ {MAX_LANES})",
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(params)
}

/// Hash `password` as `hash` says, in `blocks` (grown to the size needed and kept), and compare
/// in constant time.
fn verify(hash: &str, password: &[u8], blocks: &mut Vec<Block>) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (params_of(&phc), Algorithm::try_from(phc.algorithm)) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut *out, &mut blocks[..need])
        .is_ok()
        && Output::new(out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::hash_password;

    #[tokio::test]
    async fn checks_right_and_wrong_passwords_in_a_reused_buffer() {
        let pool = PasswordChecker::new(1, 4);
        let hash: Arc<str> = hash_password("s3cret").unwrap().into();
        assert!(pool.check(hash.clone(), "s3cret").await.unwrap());
        assert!(!pool.check(hash.clone(), "wrong").await.unwrap());
        assert!(
            !pool
                .check("not a phc string".into(), "s3cret")
                .await
                .unwrap()
        );
        assert!(pool.check(hash, "s3cret").await.unwrap());
    }

    #[test]
    fn agrees_with_the_argon2_crate_for_other_variants_and_parameters() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let mut blocks = Vec::new();
        for (alg, m, t, p) in [
            (Algorithm::Argon2id, 8192, 1, 1),
            (Algorithm::Argon2i, 4096, 3, 2),
            (Algorithm::Argon2d, 1024, 2, 4),
        ] {
            let params = Params::new(m, t, p, None).unwrap();
            let h = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(verify(&h, b"pw", &mut blocks), "{h}");
            assert!(!verify(&h, b"pW", &mut blocks), "{h}");
        }
        // The buffer grew to the largest memory cost seen and was reused after.
        assert_eq!(blocks.len(), 8192);
    }

    #[test]
    fn refuses_parameters_beyond_the_bounds() {
        for (m, t, p, what) in [
            (MAX_MEMORY_KIB + 1024, 1, 1, "memory"),
            (8192, MAX_ITERATIONS + 1, 1, "t="),
            (8192, 1, MAX_LANES + 1, "p="),
        ] {
            let phc = format!(
                "$argon2id$v=19$m={m},t={t},p={p}$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            );
            let err = params_of(&PasswordHash::new(&phc).unwrap()).unwrap_err();
            assert!(err.contains(what), "{err}");
        }
    }

    #[tokio::test]
    async fn refuses_at_once_when_workers_and_queue_are_full() {
        let pool = PasswordChecker::new(1, 1);
        let hash: Arc<str> = hash_password("x").unwrap().into();
        // Checks in progress hold the worker's and the queue's slots.
        let held = pool.slots.clone().try_acquire_many_owned(2).unwrap();
        assert!(matches!(pool.check(hash.clone(), "x").await, Err(Busy)));
        drop(held);
        assert!(pool.check(hash, "x").await.unwrap());
    }
}
