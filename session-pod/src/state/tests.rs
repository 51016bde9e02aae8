//! Every transition of the machine: an event in, the status and the actions out.

use super::status::AGENT_STOPPED;
use super::*;
use crds::{ConditionType, Handled};
use k8s_openapi::jiff::Timestamp;

fn snap(state: &str, qr: Option<&str>) -> Snapshot {
    Snapshot {
        loaded: true,
        state: Some(state.into()),
        qr: qr.map(Into::into),
        ..Default::default()
    }
}

fn t(s: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + s).expect("ts"))
}

const TIMINGS: Timings = Timings {
    qr_first_ttl: Duration::from_secs(60),
    qr_next_ttl: Duration::from_secs(20),
    takeover_delay: Duration::from_secs(5),
};

/// A machine with a monotonic clock the test moves (seconds since `t0`).
struct World {
    m: Machine,
    t0: Instant,
    req: Requests,
    /// A backup is on the volume (what the loop tells each turn).
    backup: bool,
}

impl World {
    fn new() -> Self {
        Self::from(None)
    }

    fn from(cr: Option<&WhatsAppSessionStatus>) -> Self {
        Self {
            m: Machine::new(cr, TIMINGS),
            t0: Instant::now(),
            req: Requests::default(),
            backup: false,
        }
    }

    fn start(&mut self) -> Vec<Action> {
        let req = self.req.clone();
        self.m
            .handle(Event::BrowserStarting { requests: &req }, t(0))
    }

    fn see(&mut self, s: &Snapshot, secs: i64) -> Vec<Action> {
        let req = self.req.clone();
        let at = self.t0 + Duration::from_secs(secs as u64);
        self.m.handle(
            Event::Observed {
                snap: s,
                requests: &req,
                at,
            },
            t(secs),
        )
    }

    fn page(&mut self, state: &str, qr: Option<&str>, secs: i64) -> Vec<Action> {
        self.see(&snap(state, qr), secs)
    }

    fn turn(&mut self, idle: bool, profile: ProfileHealth, secs: i64) -> Vec<Action> {
        let req = self.req.clone();
        self.m.handle(
            Event::Turn {
                requests: &req,
                idle,
                profile: &profile,
                backup: self.backup,
            },
            t(secs),
        )
    }

    fn ended(&mut self, outcome: Outcome, profile_present: bool, secs: i64) -> Vec<Action> {
        self.m.handle(
            Event::BrowserEnded {
                outcome: &outcome,
                profile_present,
            },
            t(secs),
        )
    }

    fn stop(&mut self, secs: i64) -> Vec<Action> {
        self.m.handle(Event::Stopping, t(secs))
    }

    fn st(&self) -> &WhatsAppSessionStatus {
        self.m.status()
    }

    fn qr_status(&self) -> Option<QrStatus> {
        self.st().qr_status
    }

    fn error_code(&self) -> Option<&str> {
        self.st().last_error.as_ref().map(|e| e.code.as_str())
    }

    fn handled(&self) -> Handled {
        self.st().handled.clone().unwrap_or_default()
    }

    /// (status, reason) of the `Authenticated` condition.
    fn authenticated(&self) -> (String, String) {
        let c = self
            .st()
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Authenticated.as_str())
            .expect("Authenticated condition");
        (c.status.clone(), c.reason.clone())
    }

    fn connected(mut self) -> Self {
        self.start();
        let mut c = snap("CONNECTED", None);
        c.phone = Some("5491122334455".into());
        c.push_name = Some("Ana".into());
        self.see(&c, 0);
        self
    }
}

const PUBLISH: Action = Action::Publish { urgent: false };
const URGENT: Action = Action::Publish { urgent: true };

/// What a logout (ours or the phone's unlink) does: wipe the login and its backups, stay idle
/// until a QR request, ready, publish.
fn logged_out() -> Vec<Action> {
    vec![
        Action::WipeProfile,
        Action::WipeBackups,
        Action::SetIdle(true),
        Action::Ready(true),
        PUBLISH,
    ]
}

#[test]
fn qr_after_qr_then_expired_then_scan_and_connect() {
    let mut w = World::new();
    w.start();
    assert_eq!(w.page("OPENING", None, 0), vec![PUBLISH]);
    assert_eq!(w.page("UNPAIRED", Some("r1,k"), 1), vec![URGENT]);
    assert_eq!(w.m.state(), SessionState::QrRequired);
    assert_eq!(w.qr_status(), Some(QrStatus::Generated));
    assert_eq!(w.st().qr_expires_at, Some(t(61)));
    // Same QR again: nothing new.
    assert_eq!(w.page("UNPAIRED", Some("r1,k"), 2), vec![PUBLISH]);
    assert_eq!(w.page("UNPAIRED", Some("r2,k"), 3), vec![URGENT]);
    assert_eq!(w.st().qr_expires_at, Some(t(23)));
    w.page("UNPAIRED_IDLE", Some("r2,k"), 30);
    assert_eq!(w.qr_status(), Some(QrStatus::Expired));
    assert_eq!(w.st().qr, None);
    // A fresh round (requested): the first QR lives long again.
    w.req.qr_requested_at = Some(t(39));
    assert_eq!(
        w.page("UNPAIRED_IDLE", None, 39),
        vec![Action::RefreshQr, PUBLISH]
    );
    assert_eq!(w.handled().qr_requested_at, Some(t(39)));
    w.page("UNPAIRED", Some("r3,k"), 40);
    assert_eq!(w.st().qr_expires_at, Some(t(100)));
    w.page("PAIRING", None, 41);
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.qr_status(), Some(QrStatus::Used));
    let mut c = snap("CONNECTED", None);
    c.phone = Some("5491122334455".into());
    c.push_name = Some("Ana".into());
    assert_eq!(
        w.see(&c, 42),
        vec![Action::TakeBackup, URGENT],
        "becoming connected is published at once, and the login is backed up"
    );
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(w.st().phone_number.as_deref(), Some("5491122334455"));
    assert_eq!(w.st().connected_at, Some(t(42)));
    assert_eq!(w.authenticated().0, "True");
    // connectedAt does not move while connected.
    assert_eq!(w.see(&c, 50), vec![PUBLISH]);
    assert_eq!(w.st().connected_at, Some(t(42)));
}

#[test]
fn authenticated_is_unknown_while_nobody_can_tell_and_keeps_its_transition_time() {
    let mut w = World::new();
    w.start();
    assert_eq!(w.authenticated(), ("Unknown".into(), "Starting".into()));
    w.page("OPENING", None, 1);
    assert_eq!(w.authenticated(), ("Unknown".into(), "Connecting".into()));
    w.page("UNPAIRED", Some("r1,k"), 2);
    assert_eq!(w.authenticated(), ("False".into(), "QrRequired".into()));
    let since = |w: &World| {
        w.st()
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Authenticated.as_str())
            .map(|c| c.last_transition_time.clone())
    };
    assert_eq!(since(&w), Some(t(2)));
    w.page("UNPAIRED_IDLE", None, 3);
    assert_eq!(since(&w), Some(t(2)), "still False: the time stays");
    w.page("CONNECTED", None, 4);
    assert_eq!(w.authenticated(), ("True".into(), "Linked".into()));
    assert_eq!(since(&w), Some(t(4)));
}

#[test]
fn unlink_after_connected_is_a_logout() {
    let mut w = World::new().connected();
    assert_eq!(
        w.page("UNPAIRED", Some("r,k"), 1),
        vec![Action::EndBrowser(Outcome::LoggedOutRemotely)]
    );
    let actions = w.ended(Outcome::LoggedOutRemotely, true, 2);
    assert_eq!(actions, logged_out());
    assert_eq!(w.m.state(), SessionState::Disconnected);
    assert_eq!(w.error_code(), Some("LOGGED_OUT_REMOTELY"));
    assert_eq!(w.st().phone_number, None);
    assert_eq!(w.authenticated().0, "False");
}

#[test]
fn conflict_sets_error_and_takes_over_after_the_delay_then_clears() {
    let mut w = World::new().connected();
    assert_eq!(w.page("CONFLICT", None, 1), vec![URGENT]);
    assert_eq!(w.st().last_error.as_ref().map(|e| e.at.clone()), Some(t(1)));
    assert_eq!(w.page("CONFLICT", None, 2), vec![PUBLISH]);
    assert_eq!(
        w.st().last_error.as_ref().map(|e| e.at.clone()),
        Some(t(1)),
        "same error keeps its time"
    );
    assert_eq!(
        w.page("CONFLICT", None, 6),
        vec![Action::Takeover, PUBLISH],
        "5 s after the conflict was first seen"
    );
    assert_eq!(
        w.page("CONFLICT", None, 7),
        vec![PUBLISH],
        "the delay starts over"
    );
    // Another browser held it meanwhile: connecting, account kept, until ours has it back.
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.st().phone_number.as_deref(), Some("5491122334455"));
    w.page("CONNECTED", None, 8);
    assert_eq!(w.st().last_error, None);
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(w.st().connected_at, Some(t(8)));
    // A conflict that ends before the delay never takes over.
    assert_eq!(w.page("CONFLICT", None, 20), vec![URGENT]);
    w.page("CONNECTED", None, 21);
    assert_eq!(w.page("CONFLICT", None, 24), vec![URGENT]);
}

#[test]
fn timeout_and_blocked_pages_are_errors() {
    let mut w = World::new().connected();
    // WhatsApp Web cannot reach its server: linked, but nothing flows until it is back.
    assert_eq!(w.page("TIMEOUT", None, 1), vec![URGENT]);
    assert_eq!(w.error_code(), Some("TIMEOUT"));
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.st().connected_at, None);
    assert_eq!(w.st().phone_number.as_deref(), Some("5491122334455"));
    assert_eq!(w.authenticated().0, "Unknown");
    assert_eq!(
        w.page("CONNECTED", None, 40),
        vec![URGENT],
        "back: no new backup, the same browser"
    );
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(w.st().connected_at, Some(t(40)));
    assert_eq!(w.error_code(), None);
    w.page("TOS_BLOCK", None, 2);
    assert_eq!(w.m.state(), SessionState::Error);
    assert_eq!(w.error_code(), Some("TOS_BLOCK"));
    assert_eq!(w.authenticated().0, "False");
}

#[test]
fn a_page_that_does_not_answer_is_not_vouched_for() {
    let mut w = World::new().connected();
    let silent = w.m.handle(Event::PageSilent, t(5));
    assert_eq!(silent, vec![URGENT]);
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.st().connected_at, None);
    assert_eq!(w.m.handle(Event::PageSilent, t(6)), vec![], "said once");
    w.page("CONNECTED", None, 7);
    assert_eq!(w.m.state(), SessionState::Connected);
    // Not linked: nothing to take back.
    let mut fresh = World::new();
    fresh.start();
    assert_eq!(fresh.m.handle(Event::PageSilent, t(1)), vec![]);
}

#[test]
fn a_new_browser_is_connecting_until_its_page_is_linked() {
    // A Chromium crash relaunched by the same agent, or a new agent after a `kill -9` (the
    // CR still says what the killed one wrote): the previous browser's `connected` is not
    // this one's.
    let mut w = World::new().connected();
    let relaunch = w.start();
    assert_eq!(relaunch, vec![PUBLISH]);
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.st().connected_at, None);
    assert_eq!(w.st().phone_number.as_deref(), Some("5491122334455"));
    w.page("CONNECTED", None, 3);
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(w.st().connected_at, Some(t(3)));

    let killed = w.st().clone();
    let mut next = World::from(Some(&killed));
    next.start();
    assert_eq!(next.m.state(), SessionState::Connecting);
    assert_eq!(next.authenticated().0, "Unknown");
}

#[test]
fn restore_goes_through_connecting_without_qr() {
    let cr = WhatsAppSessionStatus {
        status: Some(SessionState::Connected),
        qr_status: Some(QrStatus::Used),
        ..Default::default()
    };
    let mut w = World::from(Some(&cr));
    w.start();
    w.page("OPENING", None, 0);
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(w.qr_status(), Some(QrStatus::Used));
    w.page("CONNECTED", None, 1);
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(w.st().qr, None);
}

#[test]
fn status_round_trips_through_the_cr() {
    let mut w = World::new();
    w.req.qr_requested_at = Some(t(0));
    w.turn(false, ProfileHealth::Missing, 0);
    w.start();
    w.page("UNPAIRED", Some("r1,k"), 1);
    let body = crate::publisher::apply_body("s1", w.st(), t(1));
    let body = serde_json::to_value(body).expect("serializes");
    let mut cr: WhatsAppSessionStatus =
        serde_json::from_value(body["status"].clone()).expect("status");
    // What the operator adds is not the agent's.
    cr.pod_name = Some("s1-0".into());
    cr.observed_generation = Some(3);
    assert_eq!(agent_part(&cr).as_ref(), Some(w.st()));
    assert_eq!(
        agent_part(&WhatsAppSessionStatus::default()),
        None,
        "the agent never wrote"
    );
}

#[test]
fn a_stopping_agent_no_longer_reports_connected() {
    let mut w = World::new().connected();
    assert_eq!(w.stop(1), vec![Action::Ready(false), URGENT]);
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(
        w.authenticated(),
        ("Unknown".into(), AGENT_STOPPED.into()),
        "nobody observes the page: whether it is linked is unknown"
    );
    assert_eq!(
        w.st().connected_at,
        None,
        "not connected since then any more"
    );
    assert_eq!(
        w.st().phone_number.as_deref(),
        Some("5491122334455"),
        "the account is still linked"
    );
    assert_eq!(w.qr_status(), Some(QrStatus::Used));
    assert_eq!(w.st().last_error, None, "stopping is not an error");
    // Stopping twice changes nothing.
    let once = w.st().clone();
    w.stop(2);
    assert_eq!(w.st(), &once);
}

#[test]
fn the_next_agent_restores_from_agent_stopped() {
    let mut w = World::new().connected();
    w.stop(1);
    // What the next agent reads back from the CR (status and its Authenticated condition).
    let body =
        serde_json::to_value(crate::publisher::apply_body("s1", w.st(), t(1))).expect("serializes");
    let cr: WhatsAppSessionStatus = serde_json::from_value(body["status"].clone()).expect("status");
    assert_eq!(
        agent_part(&cr).as_ref(),
        Some(w.st()),
        "agentStopped round-trips through the condition"
    );
    let mut next = World::from(Some(&cr));
    assert_eq!(next.authenticated().1, AGENT_STOPPED);
    next.start();
    assert_eq!(next.m.state(), SessionState::Connecting);
    assert_eq!(
        next.authenticated().1,
        "Connecting",
        "the new agent holds the session"
    );
    next.page("OPENING", None, 2);
    assert_eq!(
        next.page("CONNECTED", None, 3),
        vec![Action::TakeBackup, URGENT]
    );
    assert_eq!(next.m.state(), SessionState::Connected);
    assert_eq!(next.st().connected_at, Some(t(3)));
    assert_eq!(next.st().qr, None);
}

#[test]
fn stopping_withdraws_a_shown_qr_and_leaves_idle_states_alone() {
    let mut w = World::new();
    w.start();
    w.page("UNPAIRED", Some("r1,k"), 1);
    w.stop(2);
    assert_eq!(w.m.state(), SessionState::QrRequired);
    assert_eq!(w.st().qr, None, "nobody can scan it any more");
    assert_eq!(w.qr_status(), Some(QrStatus::None));
    assert_eq!(w.st().qr_expires_at, None);
    assert_eq!(w.authenticated().1, AGENT_STOPPED);
    w.start();
    assert_eq!(w.authenticated().1, "QrRequired");

    let mut idle = World::new();
    idle.turn(true, ProfileHealth::Missing, 0);
    let before = idle.st().clone();
    idle.stop(1);
    assert_eq!(idle.st(), &before, "logged out stays logged out");
    let mut init = World::new();
    init.stop(0);
    assert_eq!(init.m.state(), SessionState::Init);
    assert_eq!(init.authenticated().1, "Starting");
}

#[test]
fn a_turn_launches_a_browser_and_answers_a_qr_request() {
    let mut w = World::new();
    assert_eq!(
        w.turn(false, ProfileHealth::Missing, 0),
        vec![Action::Launch]
    );
    w.req.qr_requested_at = Some(t(5));
    assert_eq!(
        w.turn(false, ProfileHealth::Present, 5),
        vec![Action::Launch]
    );
    assert_eq!(
        w.handled().qr_requested_at,
        Some(t(5)),
        "a fresh browser starts a fresh round anyway"
    );
}

#[test]
fn a_logout_with_nothing_logged_in_is_done_at_once() {
    for (idle, profile) in [
        (true, ProfileHealth::Present),
        (false, ProfileHealth::Missing),
    ] {
        let mut w = World::new();
        w.req.logout_requested_at = Some(t(1));
        let actions = w.turn(idle, profile, 2);
        assert_eq!(actions, logged_out());
        assert_eq!(w.handled().logout_requested_at, Some(t(1)));
        assert_eq!(w.m.state(), SessionState::Disconnected);
        // Answered: the next turn does not log out again.
        assert_ne!(
            w.turn(true, ProfileHealth::Missing, 3)[0],
            Action::WipeProfile
        );
    }
    // With a login to log out of, the browser does it.
    let mut w = World::new();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(
        w.turn(false, ProfileHealth::Present, 2),
        vec![Action::Launch]
    );
}

#[test]
fn idle_waits_for_a_qr_request_then_leaves_idle() {
    let mut w = World::new().connected();
    assert_eq!(
        w.turn(true, ProfileHealth::Missing, 1),
        vec![Action::Ready(true), PUBLISH, Action::WaitForRequest]
    );
    assert_eq!(
        w.m.state(),
        SessionState::Disconnected,
        "idle is disconnected"
    );
    w.req.qr_requested_at = Some(t(2));
    assert_eq!(
        w.turn(true, ProfileHealth::Missing, 2),
        vec![Action::SetIdle(false), Action::Launch]
    );
    assert_eq!(w.handled().qr_requested_at, Some(t(2)));
    w.start();
    assert_eq!(w.m.state(), SessionState::Init, "a new login starts");
}

#[test]
fn a_corrupt_profile_is_moved_aside_before_launching() {
    let mut w = World::new();
    let actions = w.turn(
        false,
        ProfileHealth::Corrupt("Default/ is a file".into()),
        0,
    );
    assert_eq!(
        actions,
        vec![
            Action::MoveProfileAside {
                reason: "Default/ is a file".into()
            },
            Action::Launch
        ]
    );
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_CORRUPT));
}

#[test]
fn launches_that_only_time_out_never_move_the_profile_aside() {
    // A loaded node: Chromium answers too slowly, launch after launch. The login must survive.
    let timed_out = Outcome::Failed {
        code: error_codes::TIMEOUT,
        message: "page script Target.createTarget did not answer within 10.0s".into(),
        launch: true,
    };
    let mut w = World::new();
    for i in 0..5 {
        assert_eq!(
            w.ended(timed_out.clone(), true, i),
            vec![Action::Ready(false), PUBLISH]
        );
        assert_eq!(w.error_code(), Some(error_codes::TIMEOUT));
    }
    // A real failure after them is the first one counted, not the sixth.
    let crashed = Outcome::Failed {
        code: error_codes::BROWSER_CRASHED,
        message: "boom".into(),
        launch: true,
    };
    assert_eq!(
        w.ended(crashed, true, 5),
        vec![Action::Ready(false), PUBLISH]
    );
    assert_eq!(w.error_code(), Some(error_codes::BROWSER_CRASHED));
}

#[test]
fn repeated_launch_failures_with_a_profile_mean_it_is_corrupt() {
    let failed = |launch| Outcome::Failed {
        code: error_codes::BROWSER_CRASHED,
        message: "boom".into(),
        launch,
    };
    let mut w = World::new();
    assert_eq!(
        w.ended(failed(true), true, 0),
        vec![Action::Ready(false), PUBLISH]
    );
    assert_eq!(w.m.state(), SessionState::Error);
    assert_eq!(w.error_code(), Some(error_codes::BROWSER_CRASHED));
    let actions = w.ended(failed(true), true, 1);
    assert_eq!(
        actions,
        vec![
            Action::Ready(false),
            Action::MoveProfileAside {
                reason: "Chromium failed 2 times with it: boom".into()
            },
            PUBLISH
        ]
    );
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_CORRUPT));
    // The count starts over: one more failure is just a failure.
    assert_eq!(
        w.ended(failed(true), true, 2),
        vec![Action::Ready(false), PUBLISH]
    );
    // A crash after the launch resets the count; without a profile nothing is corrupt.
    w.ended(failed(false), true, 3);
    w.ended(failed(true), true, 4);
    assert_eq!(
        w.ended(failed(true), false, 5),
        vec![Action::Ready(false), PUBLISH]
    );
    // A restarted browser leaves `error` behind.
    w.start();
    assert_eq!(w.m.state(), SessionState::Init);
}

#[test]
fn shutdown_ends_the_browser_without_a_transition() {
    let mut w = World::new().connected();
    let before = w.st().clone();
    assert_eq!(w.ended(Outcome::Shutdown, true, 1), Vec::<Action>::new());
    assert_eq!(w.st(), &before);
}

#[test]
fn a_logout_request_logs_out_on_the_page_then_ends_the_browser() {
    let mut w = World::new().connected();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(w.page("CONNECTED", None, 1), vec![Action::RunLogout]);
    assert_eq!(w.page("CONNECTED", None, 2), vec![], "waiting for the page");
    let done = vec![Action::EndBrowser(Outcome::LogoutDone(Some(t(1))))];
    assert_eq!(w.page("UNPAIRED", Some("r,k"), 3), done);
    let actions = w.ended(Outcome::LogoutDone(Some(t(1))), true, 4);
    assert_eq!(actions, logged_out());
    assert_eq!(w.handled().logout_requested_at, Some(t(1)));
    assert_eq!(w.m.state(), SessionState::Disconnected);
    assert_eq!(w.st().last_error, None, "our own logout is not an error");

    // A page that never finishes the logout is given up on after LOGOUT_TIMEOUT.
    let mut w = World::new().connected();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(w.page("CONNECTED", None, 1), vec![Action::RunLogout]);
    assert_eq!(w.page("CONNECTED", None, 21), vec![]);
    assert_eq!(
        w.page("CONNECTED", None, 22),
        vec![Action::EndBrowser(Outcome::LogoutDone(Some(t(1))))]
    );
}

#[test]
fn a_logout_request_on_a_page_with_no_login_is_done_or_times_out() {
    let mut w = World::new();
    w.start();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(
        w.page("UNPAIRED", Some("r,k"), 0),
        vec![Action::EndBrowser(Outcome::LogoutDone(Some(t(1))))]
    );
    let mut w = World::new();
    w.start();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(w.page("OPENING", None, 0), vec![]);
    assert_eq!(w.page("OPENING", None, 20), vec![]);
    assert_eq!(
        w.page("OPENING", None, 21),
        vec![Action::EndBrowser(Outcome::LogoutDone(Some(t(1))))]
    );
}

#[test]
fn a_qr_request_while_linked_or_loading() {
    let mut w = World::new().connected();
    w.req.qr_requested_at = Some(t(1));
    assert_eq!(w.page("CONNECTED", None, 1), vec![PUBLISH]);
    assert_eq!(
        w.handled().qr_requested_at,
        Some(t(1)),
        "linked: nothing to show, answered"
    );
    let mut w = World::new();
    w.start();
    w.req.qr_requested_at = Some(t(1));
    w.see(&Snapshot::default(), 1);
    assert_eq!(w.handled().qr_requested_at, None, "loading: not yet");
}

#[test]
fn a_pairing_code_is_asked_for_once_per_round_and_published_at_once() {
    let mut w = World::new();
    w.req.pairing_phone = Some("5491122334455".into());
    w.start();
    assert_eq!(
        w.page("UNPAIRED", Some("r1,k"), 1),
        vec![Action::FetchPairingCode("5491122334455".into()), URGENT]
    );
    assert_eq!(
        w.m.handle(Event::PairingCode("ABCD1234".into()), t(2)),
        vec![URGENT]
    );
    assert_eq!(w.st().pairing_code.as_deref(), Some("ABCD1234"));
    assert_eq!(
        w.page("UNPAIRED", Some("r2,k"), 3),
        vec![URGENT],
        "asked once per round"
    );
    // A new round asks again, once the page shows its QR.
    w.req.qr_requested_at = Some(t(4));
    assert_eq!(
        w.page("UNPAIRED", Some("r2,k"), 4),
        vec![Action::RefreshQr, PUBLISH]
    );
    assert_eq!(
        w.page("UNPAIRED", Some("r3,k"), 5),
        vec![Action::FetchPairingCode("5491122334455".into()), URGENT]
    );
    w.page("PAIRING", None, 6);
    assert_eq!(w.st().pairing_code, None, "entered: gone");
}

/// A CR left by a previous agent whose session was linked (what a restart finds).
fn linked_cr() -> WhatsAppSessionStatus {
    WhatsAppSessionStatus {
        status: Some(SessionState::Connected),
        qr_status: Some(QrStatus::Used),
        phone_number: Some("5491122334455".into()),
        ..Default::default()
    }
}

#[test]
fn a_login_is_backed_up_once_per_browser_that_connects() {
    let mut w = World::new();
    w.start();
    w.page("UNPAIRED", Some("r1,k"), 1);
    w.page("PAIRING", None, 2);
    assert_eq!(
        w.page("CONNECTED", None, 3),
        vec![Action::TakeBackup, URGENT]
    );
    assert_eq!(
        w.page("CONNECTED", None, 4),
        vec![PUBLISH],
        "once per browser"
    );
    // A conflict and takeover within the same browser is not a new login.
    w.page("CONFLICT", None, 5);
    assert_eq!(
        w.page("CONNECTED", None, 6),
        vec![URGENT],
        "connected again (at once), no backup"
    );
    // The next browser (a relaunch restored from the profile) backs up again.
    w.start();
    w.page("OPENING", None, 7);
    assert_eq!(
        w.page("CONNECTED", None, 8),
        vec![Action::TakeBackup, URGENT]
    );
}

#[test]
fn a_qr_on_a_linked_session_restores_the_backup_instead_of_showing_it() {
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    assert_eq!(
        w.turn(false, ProfileHealth::Present, 0),
        vec![Action::Launch]
    );
    w.start();
    w.page("OPENING", None, 1);
    assert_eq!(
        w.page("UNPAIRED", Some("r1,k"), 2),
        vec![Action::EndBrowser(Outcome::LoginLost)]
    );
    assert_eq!(w.st().qr, None, "no QR is published");
    assert_eq!(w.m.state(), SessionState::Connecting);
    assert_eq!(
        w.ended(Outcome::LoginLost, true, 3),
        vec![Action::RestoreBackup]
    );
    assert_eq!(w.m.handle(Event::Restored(Ok(t(-60))), t(3)), vec![PUBLISH]);
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_RESTORED));
    let message = w.st().last_error.as_ref().map(|e| e.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("the page asked for a QR") && m.contains("backup taken at")),
        "{message:?}"
    );
    assert_eq!(
        w.turn(false, ProfileHealth::Present, 3),
        vec![Action::Launch]
    );
    w.start();
    w.page("OPENING", None, 4);
    assert_eq!(
        w.page("CONNECTED", None, 5),
        vec![Action::TakeBackup, URGENT],
        "the restored login is backed up again"
    );
    assert_eq!(w.m.state(), SessionState::Connected);
    assert_eq!(
        w.st().last_error,
        None,
        "connected clears lastError as always"
    );
    assert_eq!(
        w.authenticated(),
        ("True".into(), status::RESTORED_FROM_BACKUP.into()),
        "the condition says where the login came from"
    );
    // The next browser restores from the profile again: plain Linked.
    w.start();
    w.page("CONNECTED", None, 6);
    assert_eq!(w.authenticated(), ("True".into(), "Linked".into()));
}

#[test]
fn a_restore_that_does_not_bring_the_login_back_deletes_the_backups_and_shows_the_qr() {
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    w.turn(false, ProfileHealth::Present, 0);
    w.start();
    w.page("UNPAIRED", Some("r1,k"), 1);
    w.ended(Outcome::LoginLost, true, 2);
    w.m.handle(Event::Restored(Ok(t(-60))), t(2));
    w.turn(false, ProfileHealth::Present, 3);
    w.start();
    // Unlinked while no agent ran: the restored login is refused too.
    assert_eq!(
        w.page("UNPAIRED", Some("r2,k"), 4),
        vec![Action::WipeBackups, URGENT],
        "no second restore, no loop"
    );
    assert_eq!(w.st().qr.as_deref(), Some("r2,k"));
    assert_eq!(w.error_code(), Some(error_codes::LOGIN_LOST));
    assert_eq!(w.m.state(), SessionState::QrRequired);
    // A later QR in the same round is just a QR.
    assert_eq!(w.page("UNPAIRED", Some("r3,k"), 5), vec![URGENT]);
}

#[test]
fn without_a_backup_or_a_linked_account_a_qr_is_just_a_qr() {
    // Linked, no backup: as before.
    let mut w = World::from(Some(&linked_cr()));
    w.turn(false, ProfileHealth::Present, 0);
    w.start();
    assert_eq!(w.page("UNPAIRED", Some("r1,k"), 1), vec![URGENT]);
    assert_eq!(w.st().last_error, None);
    // A backup but nothing linked (a fresh session, or the CR says logged out).
    let mut w = World::new();
    w.backup = true;
    w.turn(false, ProfileHealth::Present, 0);
    w.start();
    assert_eq!(w.page("UNPAIRED", Some("r1,k"), 1), vec![URGENT]);
    // A logout request is not a lost login.
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    w.turn(false, ProfileHealth::Present, 0);
    w.start();
    w.req.logout_requested_at = Some(t(1));
    assert_eq!(
        w.page("UNPAIRED", Some("r1,k"), 1),
        vec![Action::EndBrowser(Outcome::LogoutDone(Some(t(1))))]
    );
}

#[test]
fn a_corrupt_profile_is_moved_aside_and_its_login_restored_from_the_backup() {
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    assert_eq!(
        w.turn(
            false,
            ProfileHealth::Corrupt("Default/ is a file".into()),
            0
        ),
        vec![
            Action::MoveProfileAside {
                reason: "Default/ is a file".into()
            },
            Action::RestoreBackup,
            Action::Launch
        ]
    );
    w.m.handle(Event::Restored(Ok(t(-5))), t(0));
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_RESTORED));
    w.start();
    w.page("CONNECTED", None, 1);
    assert_eq!(w.authenticated().1, status::RESTORED_FROM_BACKUP);
}

#[test]
fn an_unusable_backup_falls_back_to_a_new_login() {
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    w.turn(false, ProfileHealth::Corrupt("x".into()), 0);
    assert_eq!(
        w.m.handle(Event::Restored(Err("no usable backup".into())), t(0)),
        vec![PUBLISH]
    );
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_CORRUPT));
    let message = w.st().last_error.as_ref().map(|e| e.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("no usable backup")),
        "{message:?}"
    );
    w.start();
    assert_eq!(
        w.page("UNPAIRED", Some("r1,k"), 1),
        vec![URGENT],
        "the QR of a new login, the error kept"
    );
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_CORRUPT));
    // Failing launches after a restore: put aside again, but not restored twice.
    let mut w = World::from(Some(&linked_cr()));
    w.backup = true;
    w.turn(false, ProfileHealth::Corrupt("x".into()), 0);
    w.m.handle(Event::Restored(Ok(t(-5))), t(0));
    let failed = Outcome::Failed {
        code: error_codes::BROWSER_CRASHED,
        message: "boom".into(),
        launch: true,
    };
    w.ended(failed.clone(), true, 1);
    assert_eq!(
        w.ended(failed, true, 2),
        vec![
            Action::Ready(false),
            Action::MoveProfileAside {
                reason: "Chromium failed 2 times with it: boom".into()
            },
            PUBLISH
        ]
    );
    assert_eq!(w.error_code(), Some(error_codes::PROFILE_CORRUPT));
}

#[test]
fn logout_and_unlink_delete_the_backups() {
    let mut w = World::new().connected();
    w.page("UNPAIRED", Some("r,k"), 1);
    assert!(
        w.ended(Outcome::LoggedOutRemotely, true, 2)
            .contains(&Action::WipeBackups)
    );
    let mut w = World::new().connected();
    w.req.logout_requested_at = Some(t(1));
    w.page("CONNECTED", None, 1);
    assert!(
        w.ended(Outcome::LogoutDone(Some(t(1))), true, 2)
            .contains(&Action::WipeBackups)
    );
    // Logged out: a later QR on the page is a new login, not a lost one.
    w.backup = true;
    w.req.qr_requested_at = Some(t(3));
    w.turn(true, ProfileHealth::Missing, 3);
    w.start();
    assert_eq!(w.page("UNPAIRED", Some("r,k"), 4), vec![URGENT]);
}

// ---- The hang watchdog (watchdog.rs): a busy page from a hung one, by how long it is silent.

mod watchdog_tests {
    use super::super::watchdog::{Deadlines, Watchdog, settled};
    use super::*;

    /// The defaults (`WA_PAGE_ANSWER_TIMEOUT`, `WA_HANG_AFTER`, `WA_HANG_AFTER_LOADING`).
    const D: Deadlines = Deadlines {
        answer: Duration::from_secs(2),
        hang_after: Duration::from_secs(6),
        hang_after_loading: Duration::from_secs(30),
    };

    fn linked(synced: bool) -> Snapshot {
        Snapshot {
            synced,
            ..snap("CONNECTED", None)
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Polls a silent page the way the loop does (each snapshot sent as the previous one timed
    /// out) from `from` ms; returns when it was called hung (ms after t0) and how many times
    /// the spell counted as first.
    fn silent_until_hung(w: &mut Watchdog, t0: Instant, from: u64) -> (u64, u32) {
        let (mut at, mut firsts) = (from, 0);
        for _ in 0..1000 {
            let sent = ms(t0, at);
            at += w.deadline(sent).as_millis() as u64;
            let s = w.silent(sent, ms(t0, at));
            firsts += u32::from(s.first);
            if s.hung() {
                return (at, firsts);
            }
        }
        panic!("never hung");
    }

    #[test]
    fn what_counts_as_a_settled_page() {
        assert!(settled(&linked(true)), "linked and synced");
        assert!(!settled(&linked(false)), "still syncing its history");
        assert!(!settled(&Snapshot::default()), "loading");
        assert!(!settled(&snap("OPENING", None)), "restoring a login");
        assert!(!settled(&snap("PAIRING", None)), "completing a scan");
        assert!(settled(&snap("UNPAIRED", Some("r,k"))), "a QR page");
        assert!(settled(&snap("UNPAIRED_IDLE", None)));
        assert!(settled(&snap("CONFLICT", None)));
        assert!(settled(&snap("TIMEOUT", None)));
        // A driver override that does not report `synced`: the lenient bound, never the
        // strict one on a page that may be syncing.
        let old_driver: Snapshot =
            serde_json::from_str(r#"{"loaded":true,"state":"CONNECTED"}"#).expect("json");
        assert!(!settled(&old_driver));
    }

    #[test]
    fn a_settled_page_silent_for_hang_after_is_hung_on_time() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(D);
        w.answered(&linked(true));
        assert_eq!(
            w.deadline(t0),
            D.answer,
            "a healthy page gets the answer deadline"
        );
        let (hung_at, firsts) = silent_until_hung(&mut w, t0, 0);
        // Called at the limit exactly (the last snapshot's deadline is cut to it), not up to
        // one answer deadline late.
        assert_eq!(hung_at, 6000);
        assert_eq!(firsts, 1, "PageSilent once per spell");
        assert!(Duration::from_millis(hung_at) < 3 * Duration::from_secs(10));
    }

    #[test]
    fn a_page_that_loads_boots_or_syncs_gets_the_lenient_limit() {
        let t0 = Instant::now();
        // Before any answer in this browser's life (loading).
        let mut w = Watchdog::new(D);
        assert_eq!(silent_until_hung(&mut w, t0, 0).0, 30_000);
        // Linked but still syncing its history.
        let mut w = Watchdog::new(D);
        w.answered(&linked(false));
        assert_eq!(w.limit(), D.hang_after_loading);
        assert_eq!(silent_until_hung(&mut w, t0, 0).0, 30_000);
        // Restoring a login.
        let mut w = Watchdog::new(D);
        w.answered(&snap("OPENING", None));
        assert_eq!(w.limit(), D.hang_after_loading);
    }

    #[test]
    fn a_busy_page_that_answers_within_the_limit_is_not_hung() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(D);
        w.answered(&linked(true));
        // Busy 5 s: two snapshots time out, the third is answered.
        let first = w.silent(ms(t0, 0), ms(t0, 2000));
        assert!(first.first && !first.hung());
        let second = w.silent(ms(t0, 2000), ms(t0, 4000));
        assert!(!second.first && !second.hung());
        assert_eq!(second.silent_for, Duration::from_secs(4));
        w.answered(&linked(true));
        // A new spell starts from nothing: PageSilent again, a full limit again.
        assert_eq!(w.deadline(ms(t0, 5000)), D.answer);
        let again = w.silent(ms(t0, 5000), ms(t0, 7000));
        assert!(again.first && !again.hung());
        assert_eq!(again.silent_for, Duration::from_secs(2));
    }

    #[test]
    fn a_snapshot_that_throws_is_an_answer() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(D);
        w.answered(&linked(true));
        w.silent(ms(t0, 0), ms(t0, 2000));
        w.silent(ms(t0, 2000), ms(t0, 4000));
        // The page navigates: its script fails, but the page answered.
        w.alive();
        assert_eq!(w.limit(), D.hang_after, "its phase is kept");
        let s = w.silent(ms(t0, 4500), ms(t0, 6500));
        assert!(s.first && !s.hung(), "{s:?}");
    }

    #[test]
    fn the_phase_follows_the_last_answer() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(D);
        w.answered(&linked(true));
        assert_eq!(w.limit(), D.hang_after);
        // A reload (the agent's refresh, or WhatsApp's own) starts loading again.
        w.answered(&Snapshot::default());
        assert_eq!(w.limit(), D.hang_after_loading);
        let s = w.silent(ms(t0, 0), ms(t0, 10_000));
        assert!(!s.hung(), "10 s of a loading page is not a hang");
    }

    #[test]
    fn a_limit_below_the_answer_deadline_cuts_the_first_snapshot() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Deadlines {
            answer: Duration::from_secs(2),
            hang_after: Duration::from_millis(500),
            hang_after_loading: Duration::from_secs(30),
        });
        w.answered(&linked(true));
        let (hung_at, firsts) = silent_until_hung(&mut w, t0, 0);
        assert_eq!(
            (hung_at, firsts),
            (2000, 1),
            "first snapshot's deadline, then hung"
        );
    }
}

fn receiving(m: &Machine) -> Option<(String, String)> {
    m.status()
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Receiving.as_str())
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn a_linked_session_that_cannot_receive_says_so_until_it_can() {
    let mut w = World::new();
    w.start();
    w.page("CONNECTED", None, 1);
    assert_eq!(receiving(&w.m), None, "not looked at yet: no condition");
    let missing = Err("WAWebCollections: Requiring unknown module".to_string());
    assert_eq!(
        w.m.handle(Event::Receiving(missing.clone()), t(2)),
        vec![Action::Publish { urgent: false }]
    );
    assert_eq!(
        receiving(&w.m),
        Some(("False".into(), status::MESSAGE_LISTENERS_MISSING.into()))
    );
    let err = w.m.status().last_error.clone().expect("lastError");
    assert_eq!(err.code, error_codes::MESSAGES_NOT_RECEIVED);
    assert!(err.message.contains("WAWebCollections"), "{}", err.message);
    // Still linked, still broken: the error stays (each snapshot of a linked page clears others).
    w.page("CONNECTED", None, 3);
    assert!(
        w.m.handle(Event::Receiving(missing), t(4)).is_empty(),
        "nothing new"
    );
    assert_eq!(
        w.m.status().last_error.as_ref().map(|e| e.code.as_str()),
        Some(error_codes::MESSAGES_NOT_RECEIVED)
    );
    // Attached again: the error goes, the condition turns True.
    w.m.handle(Event::Receiving(Ok(())), t(5));
    assert_eq!(
        receiving(&w.m),
        Some(("True".into(), status::LISTENING.into()))
    );
    assert_eq!(w.m.status().last_error, None);
    // No longer linked (unlinked from the phone): nobody can tell.
    w.page("UNPAIRED", Some("ref,a,b,c,d"), 6);
    w.ended(Outcome::LoggedOutRemotely, true, 6);
    assert_eq!(receiving(&w.m).map(|c| c.0), Some("Unknown".into()));
    assert!(
        w.m.handle(Event::Receiving(Ok(())), t(7)).is_empty(),
        "only a linked page is judged"
    );
}
