//! The session loop: decides when Chromium runs, feeds page observations to the state
//! machine, acts on the CR's requests and recovers from crashes, hangs and bad profiles.

use std::sync::Arc;
use std::time::Duration;

use crds::error_codes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::browser::BrowserSession;
use crate::commands::Requests;
use crate::config::Config;
use crate::driver::{Driver, PageState, Snapshot};
use crate::error::Error;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::profile::{Health as ProfileHealth, Profile};
use crate::publisher::Publisher;
use crate::state::Machine;
use crds::now;

/// Consecutive unanswered page scripts before Chromium is declared hung.
const HANG_LIMIT: u32 = 3;
/// Consecutive failed launches with an existing profile before it is declared corrupt.
const CORRUPT_AFTER_FAILED_LAUNCHES: u32 = 2;
/// A browser that ran this long resets the relaunch back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a logout may take on the page before the profile is wiped anyway.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval while the page loads (before its listeners are installed).
const LOADING_POLL: Duration = Duration::from_millis(100);
/// Beat of the loop while idle (keeps /livez honest).
const IDLE_BEAT: Duration = Duration::from_secs(5);

enum Outcome {
    Shutdown,
    /// Unlinked from the phone (or the page logged out by itself).
    LoggedOutRemotely,
    /// Our logout request (value) is done; the browser is closed.
    LogoutDone(Option<Time>),
    Failed {
        code: &'static str,
        message: String,
        launch: bool,
    },
}

pub struct Agent {
    pub cfg: Config,
    pub driver: Driver,
    pub profile: Profile,
    pub machine: Machine,
    pub publisher: Publisher,
    pub requests: watch::Receiver<Requests>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

fn differs(requested: &Option<Time>, handled: &Option<Time>) -> bool {
    requested.is_some() && requested != handled
}

impl Agent {
    fn publish(&self, urgent: bool) {
        self.publisher.publish(&self.machine.status, urgent);
    }

    fn logout_pending(&self) -> Option<Option<Time>> {
        let req = self.requests.borrow();
        differs(
            &req.logout_requested_at,
            &self.machine.status.handled.logout_requested_at,
        )
        .then(|| req.logout_requested_at.clone())
    }

    fn qr_pending(&self) -> Option<Option<Time>> {
        let req = self.requests.borrow();
        differs(
            &req.qr_requested_at,
            &self.machine.status.handled.qr_requested_at,
        )
        .then(|| req.qr_requested_at.clone())
    }

    /// Logged out (either way): wipe the login and stay idle until a QR request.
    fn finish_logout(&mut self, error: Option<(&str, &str)>) {
        if let Err(e) = self.profile.wipe() {
            tracing::error!(error = %e, "wiping the profile failed");
        }
        if let Err(e) = self.profile.set_idle(true) {
            tracing::error!(error = %e, "writing the idle marker failed");
        }
        self.machine.disconnected(error, now());
        self.health.set_ready(true);
    }

    pub async fn run(mut self) {
        let mut backoff = Duration::ZERO;
        let mut failed_launches = 0u32;
        loop {
            self.health.beat();
            if self.shutdown.is_cancelled() {
                break;
            }
            // 1. A logout request with no login to log out of is done at once.
            if let Some(value) = self.logout_pending()
                && (self.profile.is_idle() || self.profile.health() == ProfileHealth::Missing)
            {
                tracing::info!("logout requested with nothing logged in");
                self.machine.status.handled.logout_requested_at = value;
                self.finish_logout(None);
                self.publish(false);
                continue;
            }
            // 2. Idle after a logout: wait for a QR request.
            if self.profile.is_idle() && self.logout_pending().is_none() {
                match self.qr_pending() {
                    Some(value) => {
                        tracing::info!("QR requested: leaving idle");
                        self.machine.status.handled.qr_requested_at = value;
                        if let Err(e) = self.profile.set_idle(false) {
                            tracing::error!(error = %e, "removing the idle marker failed");
                        }
                    }
                    None => {
                        if self.machine.status.status != crds::SessionState::Disconnected {
                            self.machine.disconnected(None, now());
                        }
                        self.health.set_ready(true);
                        self.publish(false);
                        tokio::select! {
                            _ = self.shutdown.cancelled() => break,
                            _ = self.requests.changed() => {}
                            _ = tokio::time::sleep(IDLE_BEAT) => {}
                        }
                        continue;
                    }
                }
            } else if let Some(value) = self.qr_pending() {
                // A fresh browser starts a fresh QR round anyway.
                self.machine.status.handled.qr_requested_at = value;
            }
            // 3. A profile Chromium cannot open is kept aside and a fresh login started.
            if let ProfileHealth::Corrupt(reason) = self.profile.health() {
                self.profile_corrupt(&reason);
                failed_launches = 0;
            }
            let started = Instant::now();
            let outcome = self.run_browser().await;
            if started.elapsed() > STABLE_AFTER {
                backoff = Duration::ZERO;
            }
            match outcome {
                Outcome::Shutdown => break,
                Outcome::LoggedOutRemotely => {
                    tracing::warn!("the phone unlinked this device");
                    self.finish_logout(Some((
                        error_codes::LOGGED_OUT_REMOTELY,
                        "the device was unlinked from the phone",
                    )));
                    self.publish(false);
                }
                Outcome::LogoutDone(value) => {
                    tracing::info!("logged out of WhatsApp; profile wiped");
                    self.machine.status.handled.logout_requested_at = value;
                    self.finish_logout(None);
                    self.publish(false);
                }
                Outcome::Failed {
                    code,
                    message,
                    launch,
                } => {
                    tracing::error!(code, %message, "browser session failed; relaunching");
                    self.metrics.browser_restarts.inc();
                    self.health.set_ready(false);
                    failed_launches = if launch { failed_launches + 1 } else { 0 };
                    if launch
                        && failed_launches >= CORRUPT_AFTER_FAILED_LAUNCHES
                        && self.profile.health() == ProfileHealth::Present
                    {
                        self.profile_corrupt(&format!(
                            "Chromium failed {failed_launches} times with it: {message}"
                        ));
                        failed_launches = 0;
                    } else {
                        self.machine.set_error(code, message, now());
                        self.machine.status.status = crds::SessionState::Error;
                    }
                    self.publish(false);
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        self.stopping();
        self.publisher.flush(Duration::from_secs(3)).await;
    }

    /// SIGTERM: the status stops claiming a session this agent no longer holds (published at
    /// once; the state change is [`Machine::agent_stopping`]).
    fn stopping(&mut self) {
        self.health.set_ready(false);
        self.machine.agent_stopping();
        self.publish(true);
    }

    fn profile_corrupt(&mut self, reason: &str) {
        match self.profile.move_aside() {
            Ok(path) => {
                tracing::error!(%reason, moved_to = %path.display(), "profile cannot be opened; moved aside")
            }
            Err(e) => {
                tracing::error!(%reason, error = %e, "profile cannot be opened and cannot be moved aside; wiping it");
                let _ = self.profile.wipe();
            }
        }
        self.metrics.browser_restarts.inc();
        self.machine.set_error(
            error_codes::PROFILE_CORRUPT,
            format!("the saved profile could not be opened ({reason}); a new login is needed"),
            now(),
        );
    }

    async fn run_browser(&mut self) -> Outcome {
        if let Err(e) = self.profile.prepare() {
            return Outcome::Failed {
                code: error_codes::BROWSER_CRASHED,
                message: e.to_string(),
                launch: true,
            };
        }
        self.machine.browser_started();
        self.machine.pairing_wanted = self.requests.borrow().pairing_phone.is_some();
        self.publish(false);
        tracing::info!(profile = %self.profile.dir().display(), "launching Chromium");
        let mut b = match BrowserSession::launch(&self.cfg, self.profile.dir()).await {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Failed {
                    code: error_codes::BROWSER_CRASHED,
                    message: e.to_string(),
                    launch: true,
                };
            }
        };
        tracing::info!(pid = b.pid, url = %self.cfg.url, "Chromium running; opening WhatsApp Web");
        if let Err(e) = b.navigate(&self.cfg.url).await {
            b.kill().await;
            return Outcome::Failed {
                code: error_codes::BROWSER_CRASHED,
                message: e.to_string(),
                launch: true,
            };
        }
        let outcome = self.drive(&mut b).await;
        if matches!(outcome, Outcome::Shutdown) {
            // Say so before the browser closes: from now on nothing holds the session.
            self.stopping();
        }
        match &outcome {
            Outcome::Failed { .. } => b.kill().await,
            _ => b.close(self.cfg.shutdown_timeout).await,
        }
        self.health.set_ready(false);
        outcome
    }

    /// Polls and drives the page until something ends this browser's life.
    async fn drive(&mut self, b: &mut BrowserSession) -> Outcome {
        let started = Instant::now();
        // Until WhatsApp Web has booted the page's listeners (which wake the loop on every
        // change) are not installed: poll quickly so a restore is not held up by the interval.
        let mut poll = tokio::time::interval(self.cfg.poll_interval.min(LOADING_POLL));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut hangs = 0u32;
        let mut loaded_once = false;
        let mut conflict_since: Option<Instant> = None;
        let mut logout_started: Option<Instant> = None;
        let mut gone = b.gone();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Outcome::Shutdown,
                _ = gone.wait_for(|g| *g) => {
                    return Outcome::Failed { code: error_codes::BROWSER_CRASHED, message: "Chromium exited unexpectedly".into(), launch: false };
                }
                _ = poll.tick() => {}
                Some(_) = b.notifications.recv() => {}
                _ = self.requests.changed() => {}
            }
            self.health.beat();
            let snap = match b.run(&self.driver.snapshot, &[]).await {
                Ok(v) => {
                    hangs = 0;
                    serde_json::from_value::<Snapshot>(v).unwrap_or_default()
                }
                Err(e @ (Error::ScriptTimeout { .. } | Error::Cdp(_))) => {
                    if b.is_gone() {
                        return Outcome::Failed {
                            code: error_codes::BROWSER_CRASHED,
                            message: "Chromium exited unexpectedly".into(),
                            launch: false,
                        };
                    }
                    hangs += 1;
                    tracing::warn!(error = %e, hangs, "page did not answer");
                    if hangs >= HANG_LIMIT {
                        return Outcome::Failed {
                            code: error_codes::TIMEOUT,
                            message: format!("the page stopped answering: {e}"),
                            launch: false,
                        };
                    }
                    continue;
                }
                Err(e) => {
                    // The script threw, e.g. while the page navigates: read it again next tick.
                    tracing::debug!(error = %e, "snapshot failed");
                    Snapshot::default()
                }
            };
            if snap.loaded && !loaded_once && self.cfg.poll_interval > LOADING_POLL {
                poll = tokio::time::interval(self.cfg.poll_interval);
                poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
                poll.reset();
            }
            loaded_once |= snap.loaded;
            self.health.set_ready(snap.loaded);
            if !loaded_once && started.elapsed() > self.cfg.page_load_timeout {
                return Outcome::Failed {
                    code: error_codes::TIMEOUT,
                    message: format!(
                        "WhatsApp Web did not load within {:?}",
                        self.cfg.page_load_timeout
                    ),
                    launch: true,
                };
            }
            let state = snap.page_state();
            let fx = self.machine.observe(&snap, now());

            // Logout requested: log out on the page, then the caller wipes the profile.
            if let Some(value) = self.logout_pending() {
                match logout_started {
                    None => match state {
                        PageState::Connected | PageState::Conflict | PageState::Timeout => {
                            tracing::info!("logging out of WhatsApp");
                            if let Err(e) = b.run(&self.driver.logout, &[]).await {
                                tracing::warn!(error = %e, "logout script failed");
                            }
                            logout_started = Some(Instant::now());
                        }
                        PageState::Unpaired | PageState::UnpairedIdle => {
                            return Outcome::LogoutDone(value);
                        }
                        _ if started.elapsed() > LOGOUT_TIMEOUT => {
                            return Outcome::LogoutDone(value);
                        }
                        _ => {}
                    },
                    Some(at) => {
                        if fx.logged_out
                            || matches!(state, PageState::Unpaired | PageState::UnpairedIdle)
                            || at.elapsed() > LOGOUT_TIMEOUT
                        {
                            return Outcome::LogoutDone(value);
                        }
                    }
                }
                continue;
            }
            if fx.logged_out {
                return Outcome::LoggedOutRemotely;
            }

            // A new QR round requested while the browser runs.
            if let Some(value) = self.qr_pending() {
                match state {
                    PageState::Unpaired | PageState::UnpairedIdle => {
                        tracing::info!("QR requested: refreshing");
                        self.machine.new_round();
                        self.machine.pairing_wanted =
                            self.requests.borrow().pairing_phone.is_some();
                        if let Err(e) = b.run(&self.driver.refresh_qr, &[]).await {
                            tracing::warn!(error = %e, "refreshQR failed; reloading the page instead");
                            if let Err(e) = b.reload().await {
                                tracing::warn!(error = %e, "reload failed");
                            }
                        }
                        self.machine.status.handled.qr_requested_at = value;
                    }
                    // Linked or busy linking: nothing to show, the request is answered.
                    PageState::Connected
                    | PageState::Opening
                    | PageState::Conflict
                    | PageState::Timeout => {
                        self.machine.status.handled.qr_requested_at = value;
                    }
                    PageState::Loading | PageState::Blocked(_) => {}
                }
            }

            // Opened elsewhere: take the session back after a delay.
            if fx.conflict {
                let since = *conflict_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.cfg.takeover_delay {
                    tracing::info!("taking the session over");
                    if let Err(e) = b.run(&self.driver.takeover, &[]).await {
                        tracing::warn!(error = %e, "takeover failed");
                    }
                    conflict_since = None;
                }
            } else {
                conflict_since = None;
            }

            if fx.want_pairing_code {
                let phone = self.requests.borrow().pairing_phone.clone();
                self.machine.pairing_wanted = false;
                if let Some(phone) = phone {
                    match b
                        .run(
                            &self.driver.pairing_code,
                            &[serde_json::Value::String(phone)],
                        )
                        .await
                    {
                        Ok(serde_json::Value::String(code)) => {
                            self.machine.status.pairing_code = Some(code);
                            self.publish(true);
                        }
                        Ok(other) => {
                            tracing::warn!(result = %other, "pairing code script returned no code")
                        }
                        Err(e) => tracing::warn!(error = %e, "requesting a pairing code failed"),
                    }
                }
            }
            self.publish(fx.urgent);
        }
    }
}
