//! Timings of the fake page and the generation of WhatsApp Web it reproduces. Timing defaults
//! follow the real WhatsApp Web (first QR ~60 s, then ~20 s each, 6 in a round); tests pass
//! fractions of a second.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which generation of WhatsApp Web's internals the page serves. The live page changes under
/// automation now and then (a module moves, a function becomes synchronous, an event is renamed);
/// each generation is the page as one whatsapp-web.js release reads it, so a driver can be tested
/// against the old and the new shape at once. docs/fake-whatsapp.md lists the differences with
/// their sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Generation {
    /// As read by whatsapp-web.js 1.34.6 (released 2026-03-05): the ADV secret from the async
    /// `WAWebAdvSignatureApi.getADVSecretKey()`, loading progress on `Cmd` `offline_progress_update`.
    G2026_03,
    /// As read by whatsapp-web.js 1.34.7 (released 2026-04-25, the newest): the ADV secret from the
    /// synchronous `WAWebUserPrefsMultiDevice.getADVSecretKey()` (the old module is gone), loading
    /// progress on `Cmd` `offline_progress_update_from_bridge`.
    #[default]
    G2026_04,
}

impl Generation {
    /// Every generation, oldest first (tests iterate over it).
    pub const ALL: [Generation; 2] = [Generation::G2026_03, Generation::G2026_04];

    /// The name used on the command line, in the page and in test names.
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::G2026_03 => "2026-03",
            Generation::G2026_04 => "2026-04",
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the page serves, besides its timings.
#[derive(Clone, Debug, Default)]
pub struct PageConfig {
    pub generation: Generation,
    /// Test hook: modules the page's loader does not know, as if WhatsApp had removed or renamed
    /// them — a driver assumption broken on purpose (e.g. for `wa-session canary`).
    pub without_modules: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown generation {0:?} (known: 2026-03, 2026-04)")]
pub struct UnknownGeneration(String);

impl FromStr for Generation {
    type Err = UnknownGeneration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Generation::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownGeneration(s.to_string()))
    }
}

#[derive(Clone, Debug)]
pub struct Timings {
    /// Lifetime of the first QR of a round.
    pub first_qr: Duration,
    /// Lifetime of every following QR.
    pub next_qr: Duration,
    /// QRs per round before the page goes UNPAIRED_IDLE.
    pub max_qrs: u32,
    /// How long a fresh page stays OPENING before it shows a QR or restores a login.
    pub opening: Duration,
    /// PAIRING → CONNECTED after a scan.
    pub pairing: Duration,
    /// CONNECTED → `hasSynced` true.
    pub sync: Duration,
    /// How long the server holds a page's long poll open when nothing changes. Short: a poll
    /// held for a page whose browser died is only noticed when its answer is written, so the
    /// hold bounds how long a dead page still counts as alive (the soak judges uptime by it).
    pub poll_hold: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            first_qr: Duration::from_secs(60),
            next_qr: Duration::from_secs(20),
            max_qrs: 6,
            opening: Duration::from_millis(300),
            pairing: Duration::from_millis(1000),
            sync: Duration::from_millis(500),
            poll_hold: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// Sub-second timings for tests: QRs of `qr` each, quick transitions.
    pub fn fast(qr: Duration, max_qrs: u32) -> Self {
        Self {
            first_qr: qr,
            next_qr: qr,
            max_qrs,
            opening: Duration::from_millis(50),
            pairing: Duration::from_millis(100),
            sync: Duration::from_millis(50),
            poll_hold: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_named_by_month_and_the_newest_is_the_default() {
        for g in Generation::ALL {
            assert_eq!(g.as_str().parse::<Generation>().ok(), Some(g));
        }
        assert_eq!(
            Generation::default(),
            Generation::ALL[Generation::ALL.len() - 1]
        );
        let unknown = "2025-01".parse::<Generation>().err().map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some("unknown generation \"2025-01\" (known: 2026-03, 2026-04)")
        );
    }
}
