//! The session's send rate (`spec.messaging`): sends are spaced out on average by
//! `60 s / sendRatePerMinute`, up to `sendBurst` back to back, plus a random jitter so that
//! they do not go out on a machine's beat (WhatsApp bans numbers that send in bursts). What
//! comes faster waits its turn, up to `max_wait`; beyond, the send is refused with the time
//! after which it would be accepted (429 `Retry-After`).
//!
//! A generic cell rate algorithm: one "theoretical arrival time" per session, no timers.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self::of(None)
    }
}

impl Limits {
    /// The CR's, its defaults where unset.
    pub fn of(spec: Option<&crds::MessagingSpec>) -> Self {
        Self {
            per_minute: crds::MessagingSpec::rate_per_minute(spec),
            burst: crds::MessagingSpec::burst(spec),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
    fn tolerance(&self) -> Duration {
        self.interval() * self.burst.max(1).saturating_sub(1)
    }
}

#[derive(Debug)]
pub struct Rate {
    limits: Limits,
    max_wait: Duration,
    jitter: Duration,
    /// When the send after the last reserved one is due at the average rate.
    tat: Option<Instant>,
}

/// What [`Rate::reserve`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// Wait this long (jitter included), then send.
    After(Duration),
    /// Too many waiting: retry after this long.
    Refused { retry_after: Duration },
}

impl Rate {
    pub fn new(limits: Limits, max_wait: Duration, jitter: Duration) -> Self {
        Self {
            limits,
            max_wait,
            jitter,
            tat: None,
        }
    }

    /// Takes effect for the next reservation.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Reserves the next slot at `now`; `jitter_fraction` in [0, 1) picks the jitter (the
    /// caller draws it, so this stays deterministic under test).
    pub fn reserve(&mut self, now: Instant, jitter_fraction: f64) -> Slot {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let earliest = tat
            .checked_sub(self.limits.tolerance())
            .map_or(now, |e| e.max(now));
        let wait = earliest - now;
        if wait > self.max_wait {
            return Slot::Refused {
                retry_after: wait - self.max_wait,
            };
        }
        self.tat = Some(tat + self.limits.interval());
        // Jitter never more than half an interval, so it cannot turn into a burst's worth.
        let jitter = self.jitter.min(self.limits.interval() / 2);
        Slot::After(wait + jitter.mul_f64(jitter_fraction.clamp(0.0, 0.999)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn rate(per_minute: u32, burst: u32, max_wait: Duration) -> Rate {
        Rate::new(
            Limits { per_minute, burst },
            max_wait,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn a_burst_goes_at_once_then_the_average_applies() {
        let now = Instant::now();
        let mut r = rate(10, 3, MIN);
        for _ in 0..3 {
            assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::ZERO));
        }
        assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::from_secs(6)));
        assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::from_secs(12)));
        // after a quiet while the burst is back
        let later = now + 10 * MIN;
        for _ in 0..3 {
            assert_eq!(r.reserve(later, 0.0), Slot::After(Duration::ZERO));
        }
    }

    #[test]
    fn beyond_the_wait_it_refuses_saying_when() {
        let now = Instant::now();
        let mut r = rate(6, 1, Duration::from_secs(15));
        assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::ZERO));
        assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::from_secs(10)));
        assert_eq!(
            r.reserve(now, 0.0),
            Slot::Refused {
                retry_after: Duration::from_secs(5)
            }
        );
        // a refusal reserves nothing: at the announced time it is accepted
        assert_eq!(
            r.reserve(now + Duration::from_secs(5), 0.0),
            Slot::After(Duration::from_secs(15))
        );
    }

    #[test]
    fn jitter_is_added_and_bounded_by_half_an_interval() {
        let now = Instant::now();
        let mut r = rate(60, 1, MIN);
        // 1 s interval: jitter at most 0.5 s although 2 s are configured
        match r.reserve(now, 0.999) {
            Slot::After(d) => assert!(d < Duration::from_millis(500), "{d:?}"),
            other => panic!("{other:?}"),
        }
        let mut r = rate(10, 1, MIN);
        assert_eq!(r.reserve(now, 0.5), Slot::After(Duration::from_secs(1)));
    }

    #[test]
    fn new_limits_apply_to_the_next_send() {
        let now = Instant::now();
        let mut r = rate(1, 1, Duration::from_secs(120));
        assert_eq!(r.reserve(now, 0.0), Slot::After(Duration::ZERO));
        r.set_limits(Limits {
            per_minute: 60,
            burst: 1,
        });
        // the reservation already made keeps its minute
        assert_eq!(r.reserve(now, 0.0), Slot::After(MIN));
        assert_eq!(
            r.reserve(now, 0.0),
            Slot::After(MIN + Duration::from_secs(1))
        );
    }
}
