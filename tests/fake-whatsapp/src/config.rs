//! Timings of the fake page. Defaults follow the real WhatsApp Web (first QR ~60 s, then ~20 s
//! each, 6 in a round); tests pass fractions of a second.

use std::time::Duration;

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
    /// How long the server holds a page's long poll open when nothing changes.
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
            poll_hold: Duration::from_secs(15),
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
            poll_hold: Duration::from_secs(10),
        }
    }
}
