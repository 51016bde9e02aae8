//! The session's state machine (docs/design.md §2 lifecycle): events in — the loop's turn, page
//! observations, the spec's requests, how a browser's life ended, SIGTERM — and out the agent's
//! part of the CR status plus the [`Action`]s the session loop performs. Pure logic, no I/O
//! (times come in with the events), so every transition is unit-tested (`tests.rs`).

#[cfg(test)]
mod tests;
pub mod watchdog;

use std::time::Duration;

use crds::agent_status as status;
use crds::{LastError, QrStatus, SessionState, WhatsAppSessionStatus, error_codes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use tokio::time::Instant;

pub use status::agent_part;

use crate::driver::{PageState, Snapshot};
use crate::own_cr::Requests;
use crate::profile::Health as ProfileHealth;

/// Consecutive failed launches with an existing profile before it is declared corrupt.
pub const CORRUPT_AFTER_FAILED_LAUNCHES: u32 = 2;
/// How long a logout may take on the page before the profile is wiped anyway.
pub const LOGOUT_TIMEOUT: Duration = Duration::from_secs(20);

/// The lifetimes and delays the machine decides with (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Lifetime announced for the first QR of a round.
    pub qr_first_ttl: Duration,
    /// Lifetime announced for the following QRs.
    pub qr_next_ttl: Duration,
    /// Wait before taking the session back after it was opened elsewhere.
    pub takeover_delay: Duration,
}

/// How a browser's life ended (decided by the loop, which sees the processes and the page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Shutdown,
    /// Unlinked from the phone (or the page logged out by itself).
    LoggedOutRemotely,
    /// Our logout request (value) is done; the browser is closed.
    LogoutDone(Option<Time>),
    Failed {
        code: &'static str,
        message: String,
        /// It failed while launching or loading (counts towards a corrupt profile unless the
        /// code is TIMEOUT).
        launch: bool,
    },
    /// The page asks for a QR although the account was linked and nobody logged out: the
    /// profile lost the login; the browser is closed so that a backup can be put back.
    LoginLost,
}

pub enum Event<'a> {
    /// No browser runs and the loop decides what comes next.
    Turn {
        requests: &'a Requests,
        idle: bool,
        profile: &'a ProfileHealth,
        /// A last-good copy of the login is on the volume (`backup.rs`; checked when used).
        backup: bool,
    },
    /// A browser is about to be launched.
    BrowserStarting { requests: &'a Requests },
    /// A snapshot of the running page.
    Observed {
        snap: &'a Snapshot,
        requests: &'a Requests,
        at: Instant,
    },
    /// The page gave the pairing code asked for.
    PairingCode(String),
    /// The browser's life ended.
    BrowserEnded {
        outcome: &'a Outcome,
        /// The profile looks openable (so repeated launch failures mean it is corrupt).
        profile_present: bool,
    },
    /// SIGTERM: the agent stops and its browser closes.
    Stopping,
    /// The first snapshot of a silent spell went unanswered (the page is busy or hung: the
    /// loop's [`watchdog`] relaunches a page that stays silent for its limit).
    PageSilent,
    /// How [`Action::RestoreBackup`] went: when the copy put back was taken, or why none
    /// could be.
    Restored(Result<Time, String>),
    /// Whether the linked page's message listeners are attached (`Err`: why they cannot be).
    Receiving(Result<(), String>),
}

/// What the session loop does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the status; `urgent` skips the coalescing (a new QR, or becoming connected: the
    /// first is time-limited, the second ends a login or a restore someone is waiting on).
    Publish { urgent: bool },
    /// Set `/readyz`.
    Ready(bool),
    /// Delete the profile (the saved login).
    WipeProfile,
    /// Write (true) or remove (false) the idle marker.
    SetIdle(bool),
    /// Keep the profile aside (it cannot be opened) so a fresh login starts.
    MoveProfileAside { reason: String },
    /// Stay idle until the requests change (no browser).
    WaitForRequest,
    /// Launch a browser.
    Launch,
    /// Log out on the page.
    RunLogout,
    /// Start a fresh QR round on the page.
    RefreshQr,
    /// Take the session back from the other browser.
    Takeover,
    /// Ask the page for a pairing code for this phone number.
    FetchPairingCode(String),
    /// End this browser's life.
    EndBrowser(Outcome),
    /// Copy the login of the running (connected) profile as the last-good backup.
    TakeBackup,
    /// Put the last-good backup back over the profile's login (no browser runs); answered
    /// with [`Event::Restored`].
    RestoreBackup,
    /// Delete every backup (the account logged out: its login must not come back).
    WipeBackups,
}

/// The life of the current browser, for the decisions that wait.
#[derive(Debug, Default)]
struct BrowserLife {
    started: Option<Instant>,
    logout_started: Option<Instant>,
    conflict_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Machine {
    status: WhatsAppSessionStatus,
    /// The agent stopped (see [`AGENT_STOPPED`]).
    agent_stopped: bool,
    timings: Timings,
    /// QRs shown in the current round (the first one lives longer).
    qrs_in_round: u32,
    /// The page reached CONNECTED since this browser was launched.
    seen_connected: bool,
    /// A pairing code is wanted (spec.pairing) and not fetched yet in this round.
    pairing_wanted: bool,
    /// Consecutive failed launches.
    failed_launches: u32,
    browser: BrowserLife,
    backup: BackupState,
    /// The linked page's message listeners as the loop last saw them; `None` while not linked.
    receiving: Option<Result<(), String>>,
}

/// What the machine knows about the login and its backup.
#[derive(Debug, Default)]
struct BackupState {
    /// A copy is on the volume (as of the last turn).
    present: bool,
    /// The account is linked as far as the agent knows: it was connected (this agent or the
    /// previous one) and nobody logged out since. A QR asked for now means a lost login.
    linked: bool,
    /// Why a restore was started, kept until the session is connected again: one restore
    /// per lost login, never a loop.
    tried: Option<String>,
    /// The browser about to start (`Pending`) or running (`Running`) restored from a copy.
    restored: Restored,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Restored {
    #[default]
    No,
    Pending,
    Running,
}

/// What a page observation changed (internal to [`Machine::observe`]'s callers).
#[derive(Debug, Default, PartialEq, Eq)]
struct Effects {
    urgent: bool,
    /// The account was opened elsewhere.
    conflict: bool,
    /// The page logged out (by us or from the phone).
    logged_out: bool,
    /// A QR is offered and a pairing code was asked for but not fetched yet.
    want_pairing_code: bool,
    /// Connected for the first time in this browser's life.
    newly_connected: bool,
}

fn after(now: Time, d: Duration) -> Time {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
    Time(now.0.checked_add(d).unwrap_or(now.0))
}

/// A request value not acted on yet: `Some(value)`.
fn pending(requested: &Option<Time>, handled: Option<&Time>) -> Option<Option<Time>> {
    (requested.is_some() && requested.as_ref() != handled).then(|| requested.clone())
}

impl Machine {
    /// `current` is the CR's status as found at start-up (the previous agent's, if any).
    pub fn new(current: Option<&WhatsAppSessionStatus>, timings: Timings) -> Self {
        let status = current.and_then(agent_part).unwrap_or_else(status::initial);
        // A previous agent left the account linked (connected, or stopped/restoring with the
        // account kept).
        let linked = matches!(
            status::state_of(&status),
            SessionState::Connected | SessionState::Connecting
        ) && status.phone_number.is_some();
        Self {
            backup: BackupState {
                linked,
                ..Default::default()
            },
            agent_stopped: status::agent_stopped(&status),
            status,
            timings,
            qrs_in_round: 0,
            seen_connected: false,
            pairing_wanted: false,
            failed_launches: 0,
            browser: BrowserLife::default(),
            receiving: None,
        }
    }

    /// The agent's status fields (what the publisher writes, plus `updatedAt`).
    pub fn status(&self) -> &WhatsAppSessionStatus {
        &self.status
    }

    pub fn state(&self) -> SessionState {
        status::state_of(&self.status)
    }

    fn set_state(&mut self, state: SessionState) {
        self.status.status = Some(state);
    }

    fn qr_status(&self) -> QrStatus {
        self.status.qr_status.unwrap_or(QrStatus::None)
    }

    fn handled(&mut self) -> &mut crds::Handled {
        self.status.handled.get_or_insert_with(Default::default)
    }

    fn logout_pending(&self, req: &Requests) -> Option<Option<Time>> {
        let handled = self.status.handled.as_ref();
        pending(
            &req.logout_requested_at,
            handled.and_then(|h| h.logout_requested_at.as_ref()),
        )
    }

    fn qr_pending(&self, req: &Requests) -> Option<Option<Time>> {
        let handled = self.status.handled.as_ref();
        pending(
            &req.qr_requested_at,
            handled.and_then(|h| h.qr_requested_at.as_ref()),
        )
    }

    /// Feeds one event; `at` is the wall-clock time it happened (for the status' times).
    pub fn handle(&mut self, event: Event<'_>, at: Time) -> Vec<Action> {
        let actions = match event {
            Event::Turn {
                requests,
                idle,
                profile,
                backup,
            } => {
                self.backup.present = backup;
                self.turn(requests, idle, profile, &at)
            }
            Event::BrowserStarting { requests } => {
                self.browser_started(requests);
                vec![Action::Publish { urgent: false }]
            }
            Event::Observed {
                snap,
                requests,
                at: mono,
            } => self.observed(snap, requests, mono, &at),
            Event::PairingCode(code) => {
                self.status.pairing_code = Some(code);
                vec![Action::Publish { urgent: true }]
            }
            Event::BrowserEnded {
                outcome,
                profile_present,
            } => self.browser_ended(outcome, profile_present, &at),
            Event::Stopping => {
                self.agent_stopping();
                vec![Action::Ready(false), Action::Publish { urgent: true }]
            }
            Event::Restored(result) => self.restored(result, &at),
            Event::Receiving(result) => self.receiving(result, &at),
            // Nobody can vouch for a page that does not answer.
            Event::PageSilent => {
                if self.not_held_for_now() {
                    vec![Action::Publish { urgent: true }]
                } else {
                    Vec::new()
                }
            }
        };
        let restored = self.backup.restored == Restored::Running;
        if self.state() != SessionState::Connected {
            self.receiving = None;
        }
        status::sync_condition(&mut self.status, self.agent_stopped, restored, at.clone());
        status::sync_receiving(&mut self.status, self.receiving.as_ref(), at);
        actions
    }

    /// The loop looked at the linked page's message listeners: a session that cannot receive
    /// says so (condition `Receiving`, `lastError`), and says when it can again.
    fn receiving(&mut self, result: Result<(), String>, at: &Time) -> Vec<Action> {
        if self.state() != SessionState::Connected || self.receiving.as_ref() == Some(&result) {
            return Vec::new();
        }
        match &result {
            Err(detail) => self.set_error(
                error_codes::MESSAGES_NOT_RECEIVED,
                format!("incoming messages are not received: the agent cannot attach to the page's message events ({detail})"),
                at.clone(),
            ),
            Ok(()) => {
                if self
                    .status
                    .last_error
                    .as_ref()
                    .is_some_and(|e| e.code == error_codes::MESSAGES_NOT_RECEIVED)
                {
                    self.status.last_error = None;
                }
            }
        }
        self.receiving = Some(result);
        vec![Action::Publish { urgent: false }]
    }

    /// No browser runs: a logout with nothing to log out of is done at once; idle after a
    /// logout until a QR request; a corrupt profile is put aside; otherwise launch.
    fn turn(
        &mut self,
        req: &Requests,
        idle: bool,
        profile: &ProfileHealth,
        at: &Time,
    ) -> Vec<Action> {
        if let Some(value) = self.logout_pending(req)
            && (idle || *profile == ProfileHealth::Missing)
        {
            self.handled().logout_requested_at = value;
            let mut out = self.logged_out(None, at);
            out.push(Action::Publish { urgent: false });
            return out;
        }
        let mut out = Vec::new();
        if idle {
            // (A pending logout was answered above.)
            match self.qr_pending(req) {
                Some(value) => {
                    self.handled().qr_requested_at = value;
                    out.push(Action::SetIdle(false));
                }
                None => {
                    if self.state() != SessionState::Disconnected {
                        self.disconnected(None, at);
                    }
                    return vec![
                        Action::Ready(true),
                        Action::Publish { urgent: false },
                        Action::WaitForRequest,
                    ];
                }
            }
        } else if let Some(value) = self.qr_pending(req) {
            // A fresh browser starts a fresh QR round anyway.
            self.handled().qr_requested_at = value;
        }
        if let ProfileHealth::Corrupt(reason) = profile {
            out.extend(self.profile_corrupt(reason, at));
        }
        out.push(Action::Launch);
        out
    }

    /// A profile Chromium cannot open is put aside; its login comes back from the backup if
    /// there is one (and none was tried for this loss yet), else a new login is needed.
    fn profile_corrupt(&mut self, reason: &str, at: &Time) -> Vec<Action> {
        self.failed_launches = 0;
        let mut out = vec![Action::MoveProfileAside {
            reason: reason.to_string(),
        }];
        let why = format!("the saved profile could not be opened ({reason})");
        if let Some(restore) = self.try_restore(&why) {
            out.push(restore);
        } else {
            self.set_error(
                error_codes::PROFILE_CORRUPT,
                format!("{why}; a new login is needed"),
                at.clone(),
            );
        }
        out
    }

    /// [`Action::RestoreBackup`] if a copy is there and none was tried for this loss yet.
    fn try_restore(&mut self, why: &str) -> Option<Action> {
        if !self.backup.present || self.backup.tried.is_some() {
            return None;
        }
        self.backup.tried = Some(why.to_string());
        Some(Action::RestoreBackup)
    }

    /// The answer to [`Action::RestoreBackup`].
    fn restored(&mut self, result: Result<Time, String>, at: &Time) -> Vec<Action> {
        let why = self.backup.tried.clone().unwrap_or_default();
        match result {
            Ok(taken) => {
                self.backup.restored = Restored::Pending;
                self.set_state(SessionState::Connecting);
                self.set_error(
                    error_codes::PROFILE_RESTORED,
                    format!(
                        "{why}; restored the login from the backup taken at {} and relaunching",
                        taken.0
                    ),
                    at.clone(),
                );
            }
            Err(reason) => {
                self.backup.present = false;
                self.set_error(
                    error_codes::PROFILE_CORRUPT,
                    format!("{why}; no usable backup ({reason}); a new login is needed"),
                    at.clone(),
                );
            }
        }
        vec![Action::Publish { urgent: false }]
    }

    fn browser_ended(
        &mut self,
        outcome: &Outcome,
        profile_present: bool,
        at: &Time,
    ) -> Vec<Action> {
        match outcome {
            // The loop publishes the stop itself ([`Event::Stopping`]).
            Outcome::Shutdown => Vec::new(),
            Outcome::LoggedOutRemotely => {
                let mut out = self.logged_out(
                    Some((
                        error_codes::LOGGED_OUT_REMOTELY,
                        "the device was unlinked from the phone",
                    )),
                    at,
                );
                out.push(Action::Publish { urgent: false });
                out
            }
            Outcome::LogoutDone(value) => {
                self.handled().logout_requested_at = value.clone();
                let mut out = self.logged_out(None, at);
                out.push(Action::Publish { urgent: false });
                out
            }
            // Decided while the page ran ([`Self::login_lost`]): the copy goes back now.
            Outcome::LoginLost => vec![Action::RestoreBackup],
            Outcome::Failed {
                code,
                message,
                launch,
            } => {
                // A launch that timed out says the machine is slow, not that the profile is
                // bad: counting it would move good profiles aside (a lost login) on a loaded
                // node. Only Chromium failing outright counts.
                let profile_suspect = *launch && *code != error_codes::TIMEOUT;
                self.failed_launches = if profile_suspect {
                    self.failed_launches + 1
                } else {
                    0
                };
                let mut out = vec![Action::Ready(false)];
                if profile_suspect
                    && self.failed_launches >= CORRUPT_AFTER_FAILED_LAUNCHES
                    && profile_present
                {
                    let reason = format!(
                        "Chromium failed {} times with it: {message}",
                        self.failed_launches
                    );
                    out.extend(self.profile_corrupt(&reason, at));
                } else {
                    self.set_error(code, message.clone(), at.clone());
                    self.set_state(SessionState::Error);
                }
                out.push(Action::Publish { urgent: false });
                out
            }
        }
    }

    /// Logged out (our request or from the phone): wipe the login and stay idle until a QR
    /// request.
    fn logged_out(&mut self, error: Option<(&str, &str)>, at: &Time) -> Vec<Action> {
        self.disconnected(error, at);
        self.backup.present = false;
        vec![
            Action::WipeProfile,
            Action::WipeBackups,
            Action::SetIdle(true),
            Action::Ready(true),
        ]
    }

    /// A browser is (re)launched: observations start over.
    fn browser_started(&mut self, req: &Requests) {
        self.seen_connected = false;
        // This agent holds the session from now on.
        self.agent_stopped = false;
        self.qrs_in_round = 0;
        self.pairing_wanted = req.pairing_phone.is_some();
        self.browser = BrowserLife::default();
        self.backup.restored = match self.backup.restored {
            Restored::Pending => Restored::Running,
            _ => Restored::No,
        };
        if matches!(
            self.state(),
            SessionState::Disconnected | SessionState::Error
        ) {
            self.set_state(SessionState::Init);
        }
        // A previous browser's (or agent's: killed without a word) `connected` is not this
        // one's: it is restoring the login until its page says it is linked.
        self.not_held_for_now();
        // A QR from a previous browser can no longer be scanned.
        self.clear_qr(QrStatus::None);
    }

    /// A page snapshot: the status follows the page, then the requests and the page's own
    /// troubles are acted on.
    fn observed(
        &mut self,
        snap: &Snapshot,
        req: &Requests,
        mono: Instant,
        at: &Time,
    ) -> Vec<Action> {
        let lost = self.login_lost(snap, req, at);
        if let Some(end @ Action::EndBrowser(_)) = lost {
            return vec![end];
        }
        let fx = self.observe(snap, at.clone());
        let state = snap.page_state();
        // The page's life is counted from its first snapshot (launching is not loading).
        let since_start = mono.saturating_duration_since(*self.browser.started.get_or_insert(mono));

        // Logout requested: log out on the page, then the loop wipes the profile. Nothing is
        // published meanwhile: the page is on its way out.
        if let Some(value) = self.logout_pending(req) {
            let done = match self.browser.logout_started {
                None => match state {
                    PageState::Connected | PageState::Conflict | PageState::Timeout => {
                        self.browser.logout_started = Some(mono);
                        return vec![Action::RunLogout];
                    }
                    PageState::Unpaired | PageState::UnpairedIdle => true,
                    _ => since_start > LOGOUT_TIMEOUT,
                },
                Some(started) => {
                    fx.logged_out
                        || matches!(state, PageState::Unpaired | PageState::UnpairedIdle)
                        || mono.saturating_duration_since(started) > LOGOUT_TIMEOUT
                }
            };
            return if done {
                vec![Action::EndBrowser(Outcome::LogoutDone(value))]
            } else {
                Vec::new()
            };
        }
        if fx.logged_out {
            return vec![Action::EndBrowser(Outcome::LoggedOutRemotely)];
        }

        let mut out: Vec<Action> = lost.into_iter().collect();
        if fx.newly_connected {
            out.push(Action::TakeBackup);
        }
        // A new QR round requested while the browser runs.
        if let Some(value) = self.qr_pending(req) {
            match state {
                PageState::Unpaired | PageState::UnpairedIdle => {
                    self.qrs_in_round = 0;
                    self.pairing_wanted = req.pairing_phone.is_some();
                    self.handled().qr_requested_at = value;
                    out.push(Action::RefreshQr);
                }
                // Linked or busy linking: nothing to show, the request is answered.
                PageState::Connected
                | PageState::Opening
                | PageState::Conflict
                | PageState::Timeout => {
                    self.handled().qr_requested_at = value;
                }
                PageState::Loading | PageState::Blocked(_) => {}
            }
        }

        // Opened elsewhere: take the session back after a delay.
        if fx.conflict {
            let since = *self.browser.conflict_since.get_or_insert(mono);
            if mono.saturating_duration_since(since) >= self.timings.takeover_delay {
                self.browser.conflict_since = None;
                out.push(Action::Takeover);
            }
        } else {
            self.browser.conflict_since = None;
        }

        if fx.want_pairing_code {
            self.pairing_wanted = false;
            if let Some(phone) = &req.pairing_phone {
                out.push(Action::FetchPairingCode(phone.clone()));
            }
        }
        out.push(Action::Publish { urgent: fx.urgent });
        out
    }

    /// The page asks for a QR although the account was linked and no logout is under way
    /// (an unlink shows as a logout, which comes first): the profile lost the login. With a
    /// backup not tried yet the browser ends so the copy can be put back (no QR is
    /// published): `EndBrowser`. If the browser already runs on a restored copy, the login is
    /// gone on WhatsApp's side too (e.g. unlinked while no agent ran): its copies are deleted
    /// (`WipeBackups`) and the QR shown. Without a backup the QR is shown as before.
    fn login_lost(&mut self, snap: &Snapshot, req: &Requests, at: &Time) -> Option<Action> {
        let asks_for_qr = matches!(
            snap.page_state(),
            PageState::Unpaired | PageState::UnpairedIdle
        );
        if !asks_for_qr
            || snap.logged_out
            || self.seen_connected
            || !self.backup.linked
            || self.logout_pending(req).is_some()
        {
            return None;
        }
        let why = "the profile did not restore the login (the page asked for a QR)";
        if self.try_restore(why).is_some() {
            return Some(Action::EndBrowser(Outcome::LoginLost));
        }
        self.backup.linked = false;
        if self.backup.restored != Restored::Running {
            return None;
        }
        self.backup.present = false;
        self.set_error(
            error_codes::LOGIN_LOST,
            "neither the profile nor its backup restored the login (unlinked while the agent was away?); a new login (QR) is needed",
            at.clone(),
        );
        Some(Action::WipeBackups)
    }

    fn clear_qr(&mut self, qr_status: QrStatus) {
        if self.qr_status() != QrStatus::Used || qr_status != QrStatus::None {
            self.status.qr_status = Some(qr_status);
        }
        self.status.qr = None;
        self.status.qr_generated_at = None;
        self.status.qr_expires_at = None;
    }

    fn clear_account(&mut self) {
        self.status.phone_number = None;
        self.status.push_name = None;
        self.status.connected_at = None;
    }

    fn set_error(&mut self, code: &str, message: impl Into<String>, at: Time) {
        let message = message.into();
        // Same problem again: keep the original time so the status does not churn.
        if let Some(old) = &self.status.last_error
            && old.code == code
            && old.message == message
        {
            return;
        }
        self.status.last_error = Some(LastError {
            code: code.to_string(),
            message,
            at,
        });
    }

    /// The status follows what the page shows.
    fn observe(&mut self, snap: &Snapshot, at: Time) -> Effects {
        let mut fx = Effects::default();
        let state = snap.page_state();
        let was_connected = self.seen_connected;
        if snap.logged_out
            || (was_connected && matches!(state, PageState::Unpaired | PageState::UnpairedIdle))
        {
            fx.logged_out = true;
            return fx;
        }
        match state {
            PageState::Loading => {}
            PageState::Opening => {
                if self.qr_status() == QrStatus::Generated {
                    // The shown QR was scanned.
                    self.clear_qr(QrStatus::Used);
                }
                if self.state() != SessionState::Connected || !was_connected {
                    self.set_state(SessionState::Connecting);
                }
                self.status.pairing_code = None;
            }
            PageState::Unpaired => {
                self.set_state(SessionState::QrRequired);
                self.clear_account();
                if let Some(qr) = &snap.qr
                    && self.status.qr.as_ref() != Some(qr)
                {
                    self.qrs_in_round += 1;
                    let ttl = if self.qrs_in_round == 1 {
                        self.timings.qr_first_ttl
                    } else {
                        self.timings.qr_next_ttl
                    };
                    self.status.qr = Some(qr.clone());
                    self.status.qr_status = Some(QrStatus::Generated);
                    self.status.qr_generated_at = Some(at.clone());
                    self.status.qr_expires_at = Some(after(at, ttl));
                    fx.urgent = true;
                }
                fx.want_pairing_code = self.pairing_wanted;
            }
            PageState::UnpairedIdle => {
                self.set_state(SessionState::QrRequired);
                self.clear_account();
                self.clear_qr(QrStatus::Expired);
                self.status.pairing_code = None;
            }
            PageState::Connected => {
                fx.newly_connected = !was_connected;
                self.seen_connected = true;
                self.backup.linked = true;
                self.backup.tried = None;
                let was = self.state();
                if was != SessionState::Connected {
                    fx.urgent = true;
                }
                if was != SessionState::Connected || self.status.connected_at.is_none() {
                    self.status.connected_at = Some(at.clone());
                }
                self.set_state(SessionState::Connected);
                self.clear_qr(QrStatus::Used);
                self.status.qr_status = Some(QrStatus::Used);
                self.status.pairing_code = None;
                self.pairing_wanted = false;
                if snap.phone.is_some() {
                    self.status.phone_number = snap.phone.clone();
                }
                if snap.push_name.is_some() {
                    self.status.push_name = snap.push_name.clone();
                }
                // Linked: past errors are over, but not one about receiving (still true).
                if !matches!(self.receiving, Some(Err(_))) {
                    self.status.last_error = None;
                }
            }
            PageState::Conflict => {
                // Another browser holds the session until our takeover: not ours meanwhile.
                fx.urgent |= self.not_held_for_now();
                self.set_error(
                    error_codes::CONFLICT,
                    "the WhatsApp account was opened in another browser",
                    at,
                );
                fx.conflict = true;
            }
            PageState::Timeout => {
                // WhatsApp Web cannot reach its server: the login is kept but no message
                // flows, so a linked session is not `connected` until the page is back.
                fx.urgent |= self.not_held_for_now();
                self.set_error(
                    error_codes::TIMEOUT,
                    "WhatsApp Web cannot reach the phone or the server",
                    at,
                );
            }
            PageState::Blocked(code) => {
                self.set_state(SessionState::Error);
                self.set_error(&code, format!("WhatsApp Web reports {code}"), at);
            }
        }
        fx
    }

    /// The agent stops (SIGTERM) and its browser closes: from now until the next agent has
    /// restored the login, nothing holds the session ([`status::stopped`], the same status the
    /// operator writes for an agent killed without a word).
    fn agent_stopping(&mut self) {
        let Some(stopped) = status::stopped(&self.status) else {
            return;
        };
        self.status = stopped;
        self.seen_connected = false;
        self.agent_stopped = true;
    }

    /// A linked session this browser does not hold right now (TIMEOUT, CONFLICT, a page that
    /// stopped answering) is `connecting`, account kept, until the page says it is linked again
    /// (then `connectedAt` is that moment). True if the state changed.
    fn not_held_for_now(&mut self) -> bool {
        if self.state() != SessionState::Connected {
            return false;
        }
        self.set_state(SessionState::Connecting);
        self.status.connected_at = None;
        true
    }

    /// Logged out: nothing linked, idle until a QR request.
    fn disconnected(&mut self, error: Option<(&str, &str)>, at: &Time) {
        self.agent_stopped = false;
        self.set_state(SessionState::Disconnected);
        self.clear_qr(QrStatus::None);
        self.status.qr_status = Some(QrStatus::None);
        self.status.pairing_code = None;
        self.clear_account();
        self.seen_connected = false;
        self.backup.linked = false;
        self.backup.restored = Restored::No;
        if let Some((code, message)) = error {
            self.set_error(code, message, at.clone());
        }
    }
}
