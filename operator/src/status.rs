//! The part of `status` the operator owns: conditions `Ready` and `Progressing`,
//! `observedGeneration`, `podName`, `restarts`. Computed by a pure function from the CR and what
//! the cluster shows, then compared with what is already there: the status patch is sent only
//! when something changed, so re-running a reconcile (after an agent status write, a resync or a
//! child event) costs no write and triggers no further event.
use crds::{
    ConditionType, DesiredState, WhatsAppSession, WhatsAppSessionStatus, agent_status,
    set_condition,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What the operator saw of a session's workload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub pod: Option<&'a Pod>,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why the pod is not ready, from its container states (e.g. ErrImagePull, CrashLoopBackOff).
fn pod_waiting_reason(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone()?;
        Some(match &waiting.message {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason,
        })
    })
}

/// When the session container of `pod` started, if it runs (it may be starting, waiting to
/// restart after a crash, or finished).
fn agent_started_at(pod: &Pod) -> Option<&Time> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let c = statuses
        .iter()
        .find(|c| c.name == crate::children::CONTAINER_NAME)?;
    c.state.as_ref()?.running.as_ref()?.started_at.as_ref()
}

/// Whether the agent that wrote `part` may still hold the session: its container runs and
/// started before that write (a container started since has not spoken yet: what the CR says
/// is the previous agent's word).
fn writer_alive(part: &WhatsAppSessionStatus, pod: Option<&Pod>) -> bool {
    let Some(started) = pod.and_then(agent_started_at) else {
        return false;
    };
    part.updated_at
        .as_ref()
        .is_some_and(|wrote| wrote.0 >= started.0)
}

/// The agent's part of the status as the operator writes it when no agent can: the agent
/// said `connected` (or showed a QR) and then died without a word — `kill -9`, an OOM kill,
/// its pod gone with the node — so its SIGTERM path never wrote that nothing holds the session
/// any more. Told by the session container: not running, or restarted after the agent's last
/// write (`updatedAt`; whole seconds, so a restart within the same second is left to the new
/// agent, which writes `connecting` when its browser starts). `Some` with the stopped agent's status (`connecting`, `Authenticated` Unknown
/// `AgentStopped`: what the agent itself writes on SIGTERM), to be written as the agent, with the
/// CR's `resourceVersion` as precondition (an agent that started meanwhile wins).
pub fn stand_in_for_agent(
    session: &WhatsAppSession,
    obs: Observed<'_>,
    now: Time,
) -> Option<WhatsAppSessionStatus> {
    let current = session.status.as_ref()?;
    let mut part = agent_status::agent_part(current)?;
    // (agent_part leaves updatedAt out: the agent's publisher compares without it.)
    part.updated_at = current.updated_at.clone();
    if !agent_status::needs_a_live_agent(&part) || writer_alive(&part, obs.pod) {
        return None;
    }
    let mut stopped = agent_status::stopped(&part)?;
    // Nobody listens to the page's messages either.
    agent_status::sync_receiving(&mut stopped, None, now.clone());
    agent_status::sync_condition(&mut stopped, true, false, now);
    // updatedAt stays when the agent last wrote; the operator's write is told apart by the
    // condition's reason, the Event and managedFields.
    Some(stopped)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// (progressing, reason, message) from the StatefulSet's own bookkeeping.
fn progressing(session: &WhatsAppSession, obs: Observed<'_>) -> (bool, &'static str, String) {
    if session.spec.desired_state == DesiredState::Stopped {
        return match obs.pod {
            Some(p) => (
                true,
                "ScalingDown",
                format!(
                    "stopping pod {}",
                    p.metadata.name.clone().unwrap_or_default()
                ),
            ),
            None => (false, "Stopped", "desiredState is Stopped".into()),
        };
    }
    let Some(sts) = obs.statefulset else {
        return (true, "Creating", "creating the StatefulSet".into());
    };
    let status = sts.status.clone().unwrap_or_default();
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if status.observed_generation.unwrap_or(0) < sts.metadata.generation.unwrap_or(0) {
        return (
            true,
            "Updating",
            "the StatefulSet controller has not seen the latest change yet".into(),
        );
    }
    if let (Some(cur), Some(upd)) = (&status.current_revision, &status.update_revision)
        && cur != upd
    {
        return (
            true,
            "RollingUpdate",
            format!("replacing the pod with revision {upd}"),
        );
    }
    if status.ready_replicas.unwrap_or(0) < want {
        return (
            true,
            "Starting",
            "waiting for the session pod to become ready".into(),
        );
    }
    (
        false,
        "Stable",
        "the session pod runs the current revision".into(),
    )
}

/// The operator's status fields as they should be, keeping `lastTransitionTime` of conditions
/// whose status did not change (`crds::set_condition`).
pub fn desired(session: &WhatsAppSession, obs: Observed<'_>, now: Time) -> WhatsAppSessionStatus {
    let generation = session.metadata.generation;
    let mut conditions = owned(session.status.as_ref()).conditions;
    let stopped = session.spec.desired_state == DesiredState::Stopped;
    let (ready, reason, message) = match obs.pod {
        _ if stopped => (false, "Stopped", "desiredState is Stopped".to_string()),
        None => (
            false,
            "PodMissing",
            "waiting for the session pod to be created".to_string(),
        ),
        Some(p) if pod_ready(p) => (true, "PodReady", "the session pod is ready".to_string()),
        Some(p) => (
            false,
            "PodNotReady",
            pod_waiting_reason(p).unwrap_or_else(|| "the session pod is not ready yet".to_string()),
        ),
    };
    set_condition(
        &mut conditions,
        ConditionType::Ready,
        ready,
        reason,
        &message,
        generation,
        now.clone(),
    );
    let (prog, reason, message) = progressing(session, obs);
    set_condition(
        &mut conditions,
        ConditionType::Progressing,
        prog,
        reason,
        &message,
        generation,
        now,
    );
    WhatsAppSessionStatus {
        conditions,
        observed_generation: generation,
        pod_name: obs.pod.and_then(|p| p.metadata.name.clone()),
        restarts: obs.pod.map(restarts),
        ..Default::default()
    }
}

/// Only the operator's fields of a status (conditions in a fixed order).
pub fn owned(status: Option<&WhatsAppSessionStatus>) -> WhatsAppSessionStatus {
    let Some(status) = status else {
        return WhatsAppSessionStatus::default();
    };
    let pick = |kind: ConditionType| -> Option<Condition> {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind.as_str())
            .cloned()
    };
    WhatsAppSessionStatus {
        conditions: [pick(ConditionType::Ready), pick(ConditionType::Progressing)]
            .into_iter()
            .flatten()
            .collect(),
        observed_generation: status.observed_generation,
        pod_name: status.pod_name.clone(),
        restarts: status.restarts,
        ..Default::default()
    }
}

/// Whether the operator's part differs from what the CR shows.
pub fn needs_patch(session: &WhatsAppSession, desired: &WhatsAppSessionStatus) -> bool {
    owned(session.status.as_ref()) != *desired
}

/// True when the session's `Ready` condition is True.
pub fn is_ready(status: &WhatsAppSessionStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SessionFixture, connected_agent};
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }
    fn session() -> WhatsAppSession {
        WhatsAppSession::test("s1").generation(3)
    }
    fn pod(ready: bool, restarts: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("wa-s1-0".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn sts(ready: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                ready_replicas: Some(ready),
                current_revision: Some("r1".into()),
                update_revision: Some("r1".into()),
                ..Default::default()
            }),
        }
    }
    fn cond(s: &WhatsAppSessionStatus, t: ConditionType) -> &Condition {
        s.conditions.iter().find(|c| c.type_ == t.as_str()).unwrap()
    }

    #[test]
    fn ready_pod_gives_ready_true_and_stable() {
        let (p, st) = (pod(true, 2), sts(1));
        let d = desired(
            &session(),
            Observed {
                statefulset: Some(&st),
                pod: Some(&p),
            },
            at(10),
        );
        assert_eq!(cond(&d, ConditionType::Ready).status, "True");
        assert_eq!(cond(&d, ConditionType::Progressing).status, "False");
        assert_eq!(d.observed_generation, Some(3));
        assert_eq!(d.pod_name.as_deref(), Some("wa-s1-0"));
        assert_eq!(d.restarts, Some(2));
        assert_eq!(cond(&d, ConditionType::Ready).observed_generation, Some(3));
    }

    #[test]
    fn unchanged_facts_need_no_patch_and_keep_transition_time() {
        let (p, st) = (pod(true, 0), sts(1));
        let obs = Observed {
            statefulset: Some(&st),
            pod: Some(&p),
        };
        let mut s = session();
        let first = desired(&s, obs, at(10));
        // The agent's fields and condition are kept apart and do not count as differences.
        let mut full = first.clone();
        full.status = Some(crds::SessionState::Connected);
        set_condition(
            &mut full.conditions,
            ConditionType::Authenticated,
            true,
            "Linked",
            "",
            None,
            at(5),
        );
        s.status = Some(full);
        let second = desired(&s, obs, at(99));
        assert!(!needs_patch(&s, &second));
        assert_eq!(
            cond(&second, ConditionType::Ready).last_transition_time,
            at(10)
        );
        // A real transition moves the time and needs a patch.
        let p2 = pod(false, 1);
        let third = desired(
            &s,
            Observed {
                statefulset: Some(&st),
                pod: Some(&p2),
            },
            at(120),
        );
        assert!(needs_patch(&s, &third));
        assert_eq!(
            cond(&third, ConditionType::Ready).last_transition_time,
            at(120)
        );
        assert_eq!(cond(&third, ConditionType::Ready).reason, "PodNotReady");
    }

    #[test]
    fn creating_and_stopped() {
        let d = desired(&session(), Observed::default(), at(1));
        assert_eq!(cond(&d, ConditionType::Ready).reason, "PodMissing");
        assert_eq!(cond(&d, ConditionType::Progressing).status, "True");
        let s = session().stopped();
        let st = sts(0);
        let d = desired(
            &s,
            Observed {
                statefulset: Some(&st),
                pod: None,
            },
            at(1),
        );
        assert_eq!(cond(&d, ConditionType::Ready).reason, "Stopped");
        assert_eq!(cond(&d, ConditionType::Progressing).status, "False");
        assert_eq!(d.pod_name, None);
        assert_eq!(d.restarts, None);
    }

    #[test]
    fn rolling_update_is_progressing() {
        let mut st = sts(1);
        st.status.as_mut().unwrap().update_revision = Some("r2".into());
        let p = pod(true, 0);
        let d = desired(
            &session(),
            Observed {
                statefulset: Some(&st),
                pod: Some(&p),
            },
            at(1),
        );
        assert_eq!(cond(&d, ConditionType::Progressing).reason, "RollingUpdate");
    }

    fn with_agent(status: WhatsAppSessionStatus) -> WhatsAppSession {
        session().with_status(status)
    }
    fn running(mut p: Pod, running: bool) -> Pod {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateWaiting,
        };
        let started = at(if running { 1 } else { 0 });
        if let Some(cs) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            cs[0].name = crate::children::CONTAINER_NAME.into();
            cs[0].state = Some(if running {
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(started.clone()),
                    }),
                    ..Default::default()
                }
            } else {
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            });
        }
        p
    }

    #[test]
    fn a_connected_agent_whose_container_died_is_marked_stopped() {
        let p = running(pod(false, 1), false);
        let s = with_agent(connected_agent());
        let obs = Observed {
            statefulset: None,
            pod: Some(&p),
        };
        let st = stand_in_for_agent(&s, obs, at(20)).expect("the operator stands in");
        assert_eq!(st.status, Some(crds::SessionState::Connecting));
        assert_eq!(st.connected_at, None);
        assert_eq!(st.phone_number.as_deref(), Some("5491100000000"));
        assert_eq!(
            st.updated_at,
            Some(at(5)),
            "the agent's last write time is kept"
        );
        assert!(agent_status::agent_stopped(&st));
        // Only the agent's fields: none of the operator's.
        assert!(st.conditions.iter().all(|c| c.type_ == "Authenticated"));
        assert_eq!(st.pod_name, None);
        // A container restarted after the agent's last write: the new agent has not spoken,
        // and what the CR says is the killed one's word.
        let mut restarted = running(pod(false, 1), true);
        if let Some(r) = restarted
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
            .and_then(|cs| cs[0].state.as_mut())
            .and_then(|st| st.running.as_mut())
        {
            r.started_at = Some(at(6));
        }
        let obs = Observed {
            statefulset: None,
            pod: Some(&restarted),
        };
        assert!(stand_in_for_agent(&s, obs, at(20)).is_some());
        // The same with no pod at all (deleted with the node, force-deleted).
        let gone = stand_in_for_agent(&s, Observed::default(), at(20)).expect("no pod");
        assert_eq!(gone.status, Some(crds::SessionState::Connecting));
    }

    #[test]
    fn a_running_agent_or_a_session_with_nothing_to_hold_is_left_to_the_agent() {
        let live = running(pod(false, 0), true);
        let obs = Observed {
            statefulset: None,
            pod: Some(&live),
        };
        // Running since before its last write (e.g. not ready: restoring): its word stands.
        assert_eq!(
            stand_in_for_agent(&with_agent(connected_agent()), obs, at(20)),
            None
        );
        // Already stopped (its SIGTERM wrote it, or the operator did): written once.
        let mut stopped = agent_status::stopped(&connected_agent()).expect("stoppable");
        agent_status::sync_condition(&mut stopped, true, false, at(6));
        assert_eq!(
            stand_in_for_agent(&with_agent(stopped), Observed::default(), at(20)),
            None
        );
        // Never written by an agent, or logged out: nothing to withdraw.
        assert_eq!(
            stand_in_for_agent(&session(), Observed::default(), at(20)),
            None
        );
        let out = WhatsAppSessionStatus {
            status: Some(crds::SessionState::Disconnected),
            ..Default::default()
        };
        assert_eq!(
            stand_in_for_agent(&with_agent(out), Observed::default(), at(20)),
            None
        );
    }
}
