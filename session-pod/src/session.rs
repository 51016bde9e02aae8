//! The session loop, I/O only: runs Chromium, reads the page, watches its process and the
//! page's liveness (crash, hang, load timeout), and performs what the state machine decides
//! (`state/`: status changes, requests, logout, QR rounds, takeover, corrupt profiles).

mod messages;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use crds::error_codes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::backup::{BackupError, Backups, Taken};
use crate::browser::{BindingCall, BrowserSession};
use crate::config::Config;
use crate::driver::messages::PendingSend;
use crate::driver::{Driver, PageState, Snapshot};
use crate::error::Error;
use crate::http::Health;
use crate::messages::page::PageServer;
use crate::metrics::{Metrics, ResultLabel};
use crate::own_cr::Requests;
use crate::profile::{Health as ProfileHealth, Profile};
use crate::publisher::Publisher;
use crate::state::watchdog::{Deadlines, Watchdog};
use crate::state::{Action, Event, Machine, Outcome};
use crds::now;

/// A browser that ran this long resets the relaunch back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Wait before relaunching after a failed browser: 1 s, doubling up to 30 s.
const RELAUNCH_MIN: Duration = Duration::from_secs(1);
const RELAUNCH_MAX: Duration = Duration::from_secs(30);
/// Poll interval while the page loads (before its listeners are installed).
const LOADING_POLL: Duration = Duration::from_millis(100);
/// Beat of the loop while idle (keeps /livez honest).
const IDLE_BEAT: Duration = Duration::from_secs(5);

pub struct Agent {
    pub cfg: Config,
    pub driver: Driver,
    pub profile: Profile,
    pub backups: Backups,
    /// The copy of the login being taken (off the loop: it waits for the profile to settle).
    pub backup_task: Option<BackupTask>,
    pub machine: Machine,
    pub publisher: Publisher,
    pub requests: watch::Receiver<Requests>,
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    /// The session loop's end of the message API's channel (`messages::page`).
    pub page: PageServer,
    /// Sends the page added, waiting for their server ack.
    pub sends: Vec<PendingSend>,
}

/// What woke the loop while a page is driven.
enum Wake {
    Poll,
    Request(crate::messages::page::PageRequest),
    MessageEvent(String),
}

pub struct BackupTask {
    handle: tokio::task::JoinHandle<Result<Taken, BackupError>>,
    cancel: Arc<AtomicBool>,
}

/// What the outer loop does after a turn's actions.
enum Next {
    Wait,
    Launch,
    Again,
}

impl Agent {
    /// Feeds an event to the machine (now, by the wall clock).
    fn handle(&mut self, event: Event<'_>) -> Vec<Action> {
        self.machine.handle(event, now())
    }

    /// Performs an action that needs no browser; hands back one that does (or that steers
    /// the loop).
    fn perform_one(&mut self, action: Action) -> Option<Action> {
        match action {
            Action::Publish { urgent } => self.publisher.publish(self.machine.status(), urgent),
            Action::Ready(ready) => self.health.set_ready(ready),
            Action::WipeProfile => {
                if let Err(e) = self.profile.wipe() {
                    tracing::error!(error = %e, "wiping the profile failed");
                }
            }
            Action::SetIdle(idle) => {
                if let Err(e) = self.profile.set_idle(idle) {
                    tracing::error!(error = %e, idle, "writing the idle marker failed");
                }
            }
            Action::MoveProfileAside { reason } => self.move_profile_aside(&reason),
            Action::TakeBackup => self.start_backup(),
            Action::RestoreBackup => self.restore_backup(),
            Action::WipeBackups => match self.backups.wipe() {
                Ok(()) => tracing::info!("backups of the login deleted"),
                Err(e) => tracing::error!(error = %e, "deleting the backups failed"),
            },
            other => return Some(other),
        }
        None
    }

    /// Performs actions that need no browser, in order (any other is a bug in the machine).
    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            if let Some(other) = self.perform_one(action) {
                tracing::error!(action = ?other, "unexpected action here");
            }
        }
    }

    fn move_profile_aside(&mut self, reason: &str) {
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
    }

    /// Starts copying the login off the loop (nothing to do if one is under way).
    fn start_backup(&mut self) {
        if !self.backups.enabled() || self.backup_task.is_some() {
            return;
        }
        let backups = self.backups.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let handle = tokio::task::spawn_blocking(move || backups.take(&flag));
        self.backup_task = Some(BackupTask { handle, cancel });
    }

    /// Records a finished copy (if any).
    async fn reap_backup(&mut self) {
        if self
            .backup_task
            .as_ref()
            .is_some_and(|t| t.handle.is_finished())
        {
            self.end_backup().await;
        }
    }

    /// Stops a copy under way (the browser's life ended: what it copies may no longer be a
    /// working login) and records how it ended.
    async fn end_backup(&mut self) {
        let Some(task) = self.backup_task.take() else {
            return;
        };
        task.cancel.store(true, Ordering::SeqCst);
        let (result, label) = match task.handle.await {
            Ok(Ok(taken)) => {
                tracing::info!(
                    bytes = taken.bytes,
                    files = taken.files,
                    elapsed_ms = taken.elapsed.as_millis() as u64,
                    "backup of the login taken"
                );
                self.metrics.backup_bytes.set(taken.bytes as i64);
                (Ok(()), "taken")
            }
            Ok(Err(e @ BackupError::TooLarge { .. })) => (Err(e.to_string()), "too_large"),
            Ok(Err(e @ BackupError::Unsettled { .. })) => (Err(e.to_string()), "unsettled"),
            Ok(Err(BackupError::Cancelled)) => (Ok(()), "cancelled"),
            Ok(Err(e)) => (Err(e.to_string()), "failed"),
            Err(e) => (Err(e.to_string()), "failed"),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "no backup of the login taken");
        }
        self.metrics
            .backups
            .get_or_create(&ResultLabel {
                result: label.into(),
            })
            .inc();
    }

    /// Puts the last-good copy back (no browser runs) and tells the machine how it went.
    fn restore_backup(&mut self) {
        let (result, label) = match self.backups.restore() {
            Ok(r) => {
                tracing::warn!(
                    taken_at_ms = r
                        .taken_at
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                    bytes = r.bytes,
                    damaged = r.damaged,
                    "the profile lost the login: restored it from the backup"
                );
                let taken = k8s_openapi::jiff::Timestamp::try_from(r.taken_at)
                    .map(Time)
                    .unwrap_or_else(|_| now());
                (Ok(taken), "restored")
            }
            Err(e @ BackupError::NoneUsable) => {
                tracing::error!(error = %e, "the profile lost the login and no backup can restore it");
                (Err(e.to_string()), "no_usable_backup")
            }
            Err(e) => {
                tracing::error!(error = %e, "restoring the backup failed");
                (Err(e.to_string()), "failed")
            }
        };
        self.metrics
            .restores
            .get_or_create(&ResultLabel {
                result: label.into(),
            })
            .inc();
        let actions = self.handle(Event::Restored(result));
        self.perform(actions);
    }

    /// One turn without a browser: the machine decides from the requests and the profile.
    fn turn(&mut self) -> Next {
        let requests = self.requests.borrow().clone();
        let idle = self.profile.is_idle();
        let profile = self.profile.health();
        let backup = self.backups.enabled() && self.backups.newest().is_some();
        let actions = self.handle(Event::Turn {
            requests: &requests,
            idle,
            profile: &profile,
            backup,
        });
        let mut next = Next::Again;
        for action in actions {
            match self.perform_one(action) {
                None => {}
                Some(Action::WaitForRequest) => next = Next::Wait,
                Some(Action::Launch) => next = Next::Launch,
                Some(other) => {
                    tracing::error!(action = ?other, "unexpected action between browsers")
                }
            }
        }
        next
    }

    pub async fn run(mut self) {
        let mut backoff = relaunch_backoff();
        loop {
            self.health.beat();
            if self.shutdown.is_cancelled() {
                break;
            }
            match self.turn() {
                Next::Again => continue,
                Next::Wait => {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = self.requests.changed() => {}
                        Some(req) = self.page.requests.recv() => self.refuse(req),
                        _ = tokio::time::sleep(IDLE_BEAT) => {}
                    }
                    continue;
                }
                Next::Launch => {}
            }
            let started = Instant::now();
            let outcome = self.run_browser().await;
            self.end_backup().await;
            if started.elapsed() > STABLE_AFTER {
                backoff = relaunch_backoff();
            }
            match &outcome {
                Outcome::Shutdown => break,
                Outcome::LoggedOutRemotely => tracing::warn!("the phone unlinked this device"),
                Outcome::LogoutDone(_) => tracing::info!("logged out of WhatsApp; profile wiped"),
                Outcome::LoginLost => {
                    tracing::warn!(
                        "the page asks for a QR though the account is linked: the profile lost the login"
                    )
                }
                Outcome::Failed { code, message, .. } => {
                    // The agent recovers by itself (relaunch, restore): WARN, not ERROR.
                    tracing::warn!(code, %message, "browser session failed; relaunching");
                    self.metrics.browser_restarts.inc();
                }
            }
            let profile_present = self.profile.health() == ProfileHealth::Present;
            let actions = self.handle(Event::BrowserEnded {
                outcome: &outcome,
                profile_present,
            });
            self.perform(actions);
            if matches!(outcome, Outcome::Failed { .. }) {
                let delay = backoff.next().unwrap_or(RELAUNCH_MAX);
                if self.pause(delay).await {
                    break;
                }
            }
        }
        self.stopping();
        self.publisher.flush(Duration::from_secs(3)).await;
    }

    /// Waits `delay` between browsers, refusing the message API's requests meanwhile; true
    /// when the agent is shutting down.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return true,
                _ = tokio::time::sleep_until(until) => return false,
                Some(req) = self.page.requests.recv() => self.refuse(req),
            }
        }
    }

    /// SIGTERM: the status stops claiming a session this agent no longer holds (published at
    /// once).
    fn stopping(&mut self) {
        let actions = self.handle(Event::Stopping);
        self.perform(actions);
    }

    async fn run_browser(&mut self) -> Outcome {
        if let Err(e) = self.profile.prepare() {
            return Outcome::Failed {
                code: error_codes::BROWSER_CRASHED,
                message: e.to_string(),
                launch: true,
            };
        }
        let requests = self.requests.borrow().clone();
        let actions = self.handle(Event::BrowserStarting {
            requests: &requests,
        });
        self.perform(actions);
        tracing::info!(profile = %self.profile.dir().display(), "launching Chromium");
        let mut b = match BrowserSession::launch(&self.cfg, self.profile.dir()).await {
            Ok(b) => b,
            Err(e) => return launch_failed(&e),
        };
        tracing::info!(pid = b.pid(), url = %self.cfg.url, "Chromium running; opening WhatsApp Web");
        if let Err(e) = b.open(&self.cfg.url).await {
            b.kill().await;
            return launch_failed(&e);
        }
        let outcome = match self.drive(&mut b).await {
            // Chromium signalled together with the agent (a terminal's Ctrl-C, a whole process
            // group's SIGTERM) can exit before the loop sees the agent's own signal: that exit is
            // the shutdown, not a crash to relaunch from, and `close` still awaits it.
            Outcome::Failed { .. } if self.shutdown.is_cancelled() => Outcome::Shutdown,
            outcome => outcome,
        };
        if matches!(outcome, Outcome::Shutdown) {
            // Say so before the browser closes: from now on nothing holds the session.
            self.stopping();
        }
        self.abandon_sends();
        self.metrics.message_listeners.set(1);
        match &outcome {
            Outcome::Failed { .. } => b.kill().await,
            _ => b.close(self.cfg.shutdown_timeout).await,
        }
        self.health.set_ready(false);
        outcome
    }

    /// Performs the page actions the machine asked for after a snapshot; `Some` ends the
    /// browser's life.
    async fn act_on_page(
        &mut self,
        b: &mut BrowserSession,
        actions: Vec<Action>,
    ) -> Option<Outcome> {
        self.reap_backup().await;
        for action in actions {
            let Some(action) = self.perform_one(action) else {
                continue;
            };
            match action {
                Action::EndBrowser(outcome) => return Some(outcome),
                Action::RunLogout => {
                    tracing::info!("logging out of WhatsApp");
                    if let Err(e) = b.run(&self.driver.logout, &[]).await {
                        tracing::warn!(error = %e, "logout script failed");
                    }
                }
                Action::RefreshQr => {
                    tracing::info!("QR requested: refreshing");
                    if let Err(e) = b.run(&self.driver.refresh_qr, &[]).await {
                        tracing::warn!(error = %e, "refreshQR failed; reloading the page instead");
                        if let Err(e) = b.reload().await {
                            tracing::warn!(error = %e, "reload failed");
                        }
                    }
                }
                Action::Takeover => {
                    tracing::info!("taking the session over");
                    if let Err(e) = b.run(&self.driver.takeover, &[]).await {
                        tracing::warn!(error = %e, "takeover failed");
                    }
                }
                Action::FetchPairingCode(phone) => {
                    match b
                        .run(
                            &self.driver.pairing_code,
                            &[serde_json::Value::String(phone)],
                        )
                        .await
                    {
                        Ok(serde_json::Value::String(code)) => {
                            let actions = self.handle(Event::PairingCode(code));
                            self.perform(actions);
                        }
                        Ok(other) => {
                            tracing::warn!(result = %other, "pairing code script returned no code")
                        }
                        Err(e) => tracing::warn!(error = %e, "requesting a pairing code failed"),
                    }
                }
                other => tracing::error!(action = ?other, "unexpected action while a browser runs"),
            }
        }
        None
    }

    /// Polls and drives the page until something ends this browser's life.
    async fn drive(&mut self, b: &mut BrowserSession) -> Outcome {
        let started = Instant::now();
        // Until WhatsApp Web has booted the page's listeners (which wake the loop on every
        // change) are not installed: poll quickly so a restore is not held up by the interval.
        let mut poll = tokio::time::interval(self.cfg.poll_interval.min(LOADING_POLL));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A hung page is told from a busy one by how long it stays silent (state/watchdog.rs).
        let mut watchdog = Watchdog::new(Deadlines {
            answer: self.cfg.page_answer_timeout,
            hang_after: self.cfg.hang_after,
            hang_after_loading: self.cfg.hang_after_loading,
        });
        let mut loaded_once = false;
        let mut gone = b.gone();
        // The page is linked: the message API's requests are performed on it.
        let mut linked = false;
        loop {
            let wake = tokio::select! {
                // Shutdown first: a Chromium signalled with the agent is gone at the same time.
                biased;
                _ = self.shutdown.cancelled() => return Outcome::Shutdown,
                _ = gone.wait_for(|g| *g) => return chromium_gone(),
                // Events before requests: a send's ack settles it before the next one runs.
                Some(call) = b.binding_call() => match call {
                    BindingCall::Message(payload) => Wake::MessageEvent(payload),
                    BindingCall::Notify => Wake::Poll,
                },
                Some(req) = self.page.requests.recv() => Wake::Request(req),
                _ = poll.tick() => Wake::Poll,
                _ = self.requests.changed() => Wake::Poll,
            };
            match wake {
                Wake::Poll => {}
                Wake::MessageEvent(payload) => {
                    self.on_message_event(&payload);
                    continue;
                }
                Wake::Request(req) if linked => {
                    self.serve(b, req).await;
                    continue;
                }
                Wake::Request(req) => {
                    self.refuse(req);
                    continue;
                }
            }
            self.health.beat();
            let sent = Instant::now();
            let deadline = watchdog.deadline(sent);
            let snap = match b.run_within(&self.driver.snapshot, &[], deadline).await {
                Ok(v) => {
                    let snap = serde_json::from_value::<Snapshot>(v).unwrap_or_default();
                    watchdog.answered(&snap);
                    snap
                }
                Err(e @ (Error::ScriptTimeout { .. } | Error::Cdp(_))) => {
                    if b.is_gone() {
                        return chromium_gone();
                    }
                    let silence = watchdog.silent(sent, Instant::now());
                    // One unanswered snapshot is no problem yet (INFO, once); a page that stays
                    // silent for the watchdog's limit ends as a TIMEOUT outcome, logged once at
                    // WARN by the caller.
                    if silence.first {
                        tracing::info!(error = %e, limit_ms = silence.limit.as_millis() as u64, "page did not answer");
                        let actions = self.handle(Event::PageSilent);
                        self.perform(actions);
                    } else {
                        tracing::debug!(error = %e, silent_ms = silence.silent_for.as_millis() as u64, "page did not answer");
                    }
                    if silence.hung() {
                        return Outcome::Failed {
                            code: error_codes::TIMEOUT,
                            message: format!(
                                "the page stopped answering: silent for {:.1} s (limit {:?})",
                                silence.silent_for.as_secs_f64(),
                                silence.limit
                            ),
                            launch: false,
                        };
                    }
                    continue;
                }
                Err(e) => {
                    // The script threw, e.g. while the page navigates: read it again next tick.
                    // The page answered, so it is not silent.
                    watchdog.alive();
                    tracing::debug!(error = %e, "snapshot failed");
                    Snapshot::default()
                }
            };
            if snap.loaded && !loaded_once && self.cfg.poll_interval > LOADING_POLL {
                poll = tokio::time::interval(self.cfg.poll_interval);
                poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
                poll.reset();
            }
            if snap.loaded && !loaded_once {
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    state = snap.state.as_deref(),
                    "WhatsApp Web booted (first snapshot with its modules)"
                );
            }
            loaded_once |= snap.loaded;
            self.health.set_ready(snap.loaded);
            if !loaded_once && started.elapsed() > self.cfg.page_load_timeout {
                let mut message = format!(
                    "WhatsApp Web did not load within {:?}",
                    self.cfg.page_load_timeout
                );
                if b.proxy_refused() {
                    message = format!("{message}: {}", crate::browser::PROXY_REFUSED);
                }
                return Outcome::Failed {
                    code: error_codes::TIMEOUT,
                    message,
                    launch: true,
                };
            }
            let requests = self.requests.borrow().clone();
            let actions = self.handle(Event::Observed {
                snap: &snap,
                requests: &requests,
                at: Instant::now(),
            });
            if let Some(outcome) = self.act_on_page(b, actions).await {
                return outcome;
            }
            let was_linked = linked;
            linked = self.linked(snap.page_state() == PageState::Connected);
            if was_linked && !linked {
                self.abandon_sends();
            }
            if linked {
                self.watch_messages_on(b, was_linked).await;
            } else {
                self.metrics.message_listeners.set(1);
            }
        }
    }
}

/// The relaunch back-off of failed browsers in a row.
fn relaunch_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RELAUNCH_MIN)
        .with_max_delay(RELAUNCH_MAX)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// Chromium exited while the page was driven (crashed, killed, out of memory): whether the
/// agent saw the exit itself or a snapshot failed because of it.
fn chromium_gone() -> Outcome {
    Outcome::Failed {
        code: error_codes::BROWSER_CRASHED,
        message: "Chromium exited unexpectedly".into(),
        launch: false,
    }
}

/// A launch or first navigation that failed; a timeout is reported as one (see
/// [`Error::is_timeout`]) so it is not held against the profile.
fn launch_failed(e: &crate::error::Error) -> Outcome {
    let code = if e.is_timeout() {
        error_codes::TIMEOUT
    } else {
        error_codes::BROWSER_CRASHED
    };
    Outcome::Failed {
        code,
        message: e.to_string(),
        launch: true,
    }
}
