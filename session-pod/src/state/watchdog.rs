//! Is the page alive? A hung page and a busy one look the same from outside — its main thread
//! answers nothing, Chromium offers no hang signal over CDP (its own hang monitor times
//! unacknowledged input, which a headless page nobody types into never gets) — so only how
//! long the page stays silent tells them apart, and how long is fair depends on what the page
//! was doing: booting, restoring a login or syncing its history, real WhatsApp Web can block
//! its main thread for seconds; linked and synced (or showing a QR) it answers a snapshot in
//! milliseconds. Pure logic (times come in), unit-tested in `tests.rs`.

use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{PageState, Snapshot};

/// The deadlines the watchdog decides with (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// How long one snapshot may take before the page counts as silent.
    pub answer: Duration,
    /// Silence that makes a settled page (see [`settled`]) hung.
    pub hang_after: Duration,
    /// Silence that makes a page hung while it loads, boots, links or syncs its history (or
    /// before it answered at all in this browser's life).
    pub hang_after_loading: Duration,
}

/// What a snapshot that did not answer in time means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    /// The first of a silent spell: the page may only be busy (event `PageSilent`).
    pub first: bool,
    /// Since the first unanswered snapshot of the spell was sent.
    pub silent_for: Duration,
    /// The silence that makes the page hung (by what its last answer showed).
    pub limit: Duration,
}

impl Silence {
    /// Silent for the limit: the page is hung, Chromium is relaunched.
    pub fn hung(&self) -> bool {
        self.silent_for >= self.limit
    }
}

/// The silence of one browser's page.
#[derive(Debug)]
pub struct Watchdog {
    deadlines: Deadlines,
    /// When the first snapshot of the current silent spell was sent.
    silent_since: Option<Instant>,
    /// What the last answered snapshot showed: a settled page (the strict bound applies).
    settled: bool,
}

/// A page in a steady state, where a healthy WhatsApp Web answers at once: linked and synced
/// (its history decrypted and stored), or showing a QR, CONFLICT, TIMEOUT or a block. Loading,
/// booting, restoring or completing a login (OPENING/PAIRING) and a linked page still syncing
/// are not: real WhatsApp Web can block its main thread for seconds then.
pub fn settled(snap: &Snapshot) -> bool {
    match snap.page_state() {
        PageState::Loading | PageState::Opening => false,
        PageState::Connected => snap.synced,
        PageState::Unpaired
        | PageState::UnpairedIdle
        | PageState::Conflict
        | PageState::Timeout
        | PageState::Blocked(_) => snap.loaded,
    }
}

impl Watchdog {
    pub fn new(deadlines: Deadlines) -> Self {
        Self {
            deadlines,
            silent_since: None,
            settled: false,
        }
    }

    /// The silence that makes the page hung now (by what its last answer showed).
    pub fn limit(&self) -> Duration {
        if self.settled {
            self.deadlines.hang_after
        } else {
            self.deadlines.hang_after_loading
        }
    }

    /// How long a snapshot sent at `now` may take: the answer deadline, but never past the
    /// moment the page's silence would make it hung (so a hang is called on time, not up to
    /// one answer deadline late).
    pub fn deadline(&self, now: Instant) -> Duration {
        let Some(since) = self.silent_since else {
            return self.deadlines.answer;
        };
        let left = self
            .limit()
            .saturating_sub(now.saturating_duration_since(since));
        // At least a moment: a zero timeout would not even send the command.
        self.deadlines
            .answer
            .min(left)
            .max(Duration::from_millis(10))
    }

    /// The page answered: the silence (if any) is over.
    pub fn answered(&mut self, snap: &Snapshot) {
        self.silent_since = None;
        self.settled = settled(snap);
    }

    /// The page answered, but its script failed (e.g. a navigation under way): alive, and
    /// nothing learnt about its phase.
    pub fn alive(&mut self) {
        self.silent_since = None;
    }

    /// A snapshot sent at `sent` had no answer by `now`.
    pub fn silent(&mut self, sent: Instant, now: Instant) -> Silence {
        let first = self.silent_since.is_none();
        let since = *self.silent_since.get_or_insert(sent);
        Silence {
            first,
            silent_for: now.saturating_duration_since(since),
            limit: self.limit(),
        }
    }
}
