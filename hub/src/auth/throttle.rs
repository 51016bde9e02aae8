//! Login throttling: failed attempts in a sliding window, counted per guesser and per account.
//!
//! Three budgets, each checked and charged in one step under one lock, so parallel guesses
//! cannot all pass a check before any failure is recorded:
//! - a username from one client address (`per_pair`): the guesser is throttled, and the real
//!   user, from another address, is not locked out by someone else's failures;
//! - one client address over every username (`per_client`): one address cannot spray names;
//! - one username over every address (`per_user`, much larger): a guesser spread over many
//!   addresses is bounded too; only such a guesser can lock an account, for at most the window.
//!
//! An attempt is charged when it starts and counts as a failure unless the password was right
//! ([`Attempt::succeeded`]) or it was never checked ([`Attempt::not_checked`]): a client that
//! hangs up while its password is hashed has still used a guess.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys beyond this are pruned of stale entries, so a flood of random usernames cannot grow
/// memory without bound (each new key also costs the flood a password check).
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_pair: u32,
    pub per_client: u32,
    pub per_user: u32,
    pub window: Duration,
}

pub struct LoginThrottle {
    limits: Limits,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// One login attempt, charged to its keys until it ends.
#[must_use = "an attempt counts as a failure unless ended otherwise"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    keys: [String; 3],
    at: Instant,
}

impl LoginThrottle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Start an attempt of `username` from `client`, or `Err(retry_after_secs)` when one of its
    /// budgets is used up.
    pub fn begin(&self, username: &str, client: IpAddr, now: Instant) -> Result<Attempt<'_>, u64> {
        let client = crate::client_addr::client_key(client);
        let keys = [
            format!("p:{client} {username}"),
            format!("c:{client}"),
            format!("u:{username}"),
        ];
        let limits = [
            self.limits.per_pair,
            self.limits.per_client,
            self.limits.per_user,
        ];
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0;
        for (key, limit) in keys.iter().zip(limits) {
            let Some(q) = map.get_mut(key) else { continue };
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
            {
                q.pop_front();
            }
            if q.len() as u32 >= limit {
                let oldest = q.front().copied().unwrap_or(now);
                let left = self
                    .limits
                    .window
                    .saturating_sub(now.duration_since(oldest));
                wait = wait.max(left.as_secs().max(1));
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        if map.len() > PRUNE_ABOVE {
            let window = self.limits.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for key in &keys {
            map.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Attempt {
            throttle: self,
            keys,
            at: now,
        })
    }

    fn uncharge(&self, keys: &[String], at: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(q) = map.get_mut(key)
                && let Some(i) = q.iter().rposition(|t| *t == at)
            {
                q.remove(i);
            }
        }
    }
}

impl Attempt<'_> {
    /// The password was right: this attempt is no failure, and this client's earlier failures
    /// for the account are forgotten.
    pub fn succeeded(self) {
        self.throttle.uncharge(&self.keys[1..], self.at);
        self.throttle
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.keys[0]);
    }

    /// The password was never checked (the hub was too busy): nothing is charged.
    pub fn not_checked(self) {
        self.throttle.uncharge(&self.keys, self.at);
    }

    /// The password was wrong: the charge stays (the same as dropping the attempt).
    pub fn failed(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(Limits {
            per_pair: 3,
            per_client: 5,
            per_user: 8,
            window: Duration::from_secs(60),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_in_progress_count_so_parallel_guesses_cannot_pass_the_limit() {
        let t = throttle();
        let t0 = Instant::now();
        // Three attempts start before any of them ends: the fourth is refused at once.
        let held: Vec<_> = (0..3)
            .map(|_| t.begin("ana", ip("10.0.0.1"), t0).unwrap())
            .collect();
        let retry = t.begin("ana", ip("10.0.0.1"), t0).err().unwrap();
        assert!((1..=60).contains(&retry));
        for a in held {
            a.failed();
        }
        assert!(t.begin("ana", ip("10.0.0.1"), t0).is_err());
        assert!(
            t.begin("ana", ip("10.0.0.1"), t0 + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn a_guesser_does_not_lock_out_the_user_from_another_address() {
        let t = throttle();
        let t0 = Instant::now();
        for _ in 0..3 {
            t.begin("ana", ip("203.0.113.9"), t0).unwrap().failed();
        }
        assert!(t.begin("ana", ip("203.0.113.9"), t0).is_err());
        t.begin("ana", ip("198.51.100.7"), t0).unwrap().succeeded();
    }

    #[test]
    fn one_address_spraying_usernames_is_limited() {
        let t = throttle();
        let t0 = Instant::now();
        for i in 0..5 {
            t.begin(&format!("user{i}"), ip("10.0.0.1"), t0)
                .unwrap()
                .failed();
        }
        assert!(t.begin("user9", ip("10.0.0.1"), t0).is_err());
        assert!(t.begin("user9", ip("10.0.0.2"), t0).is_ok());
    }

    #[test]
    fn many_addresses_guessing_one_account_are_bounded_too() {
        let t = throttle();
        let t0 = Instant::now();
        for i in 0..8 {
            t.begin("ana", ip(&format!("10.0.1.{i}")), t0)
                .unwrap()
                .failed();
        }
        assert!(t.begin("ana", ip("10.0.2.1"), t0).is_err());
    }

    #[test]
    fn success_and_unchecked_attempts_are_not_failures() {
        let t = throttle();
        let t0 = Instant::now();
        for _ in 0..2 {
            t.begin("ana", ip("10.0.0.1"), t0).unwrap().failed();
        }
        t.begin("ana", ip("10.0.0.1"), t0).unwrap().succeeded();
        for _ in 0..10 {
            t.begin("ana", ip("10.0.0.1"), t0).unwrap().not_checked();
        }
        // The two failures were forgotten for this address: three more are allowed.
        for _ in 0..3 {
            t.begin("ana", ip("10.0.0.1"), t0).unwrap().failed();
        }
        assert!(t.begin("ana", ip("10.0.0.1"), t0).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let t = throttle();
        let t0 = Instant::now();
        for i in 1..=3 {
            t.begin("ana", ip(&format!("2001:db8:1:2::{i}")), t0)
                .unwrap()
                .failed();
        }
        assert!(t.begin("ana", ip("2001:db8:1:2:ffff::1"), t0).is_err());
        assert!(t.begin("ana", ip("2001:db8:1:3::1"), t0).is_ok());
    }
}
