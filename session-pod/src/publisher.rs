//! Writes the agent's part of the status with server-side apply (field manager `wa-agent`):
//! a new QR at once, other changes coalesced, an unchanged status never rewritten.

use std::time::Duration;

use crds::{ConditionType, WhatsAppSession, WhatsAppSessionStatus, managers, set_condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::{Metrics, ResultLabel, StateLabel};
use crate::state::AgentStatus;
use crds::now;

enum Msg {
    // Boxed: a status is ~300 bytes and every other message is a word.
    Update {
        status: Box<AgentStatus>,
        urgent: bool,
    },
    Flush(oneshot::Sender<()>),
    /// The coalescing period is over.
    Deadline,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Msg>,
}

/// The SSA body: only the agent's fields and its `Authenticated` condition.
pub fn apply_body(
    name: &str,
    s: &AgentStatus,
    previous_condition: Option<&Condition>,
    updated_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> (serde_json::Value, Condition) {
    let mut conditions: Vec<Condition> = previous_condition.cloned().into_iter().collect();
    let (reason, message) = s.condition_reason();
    set_condition(
        &mut conditions,
        ConditionType::Authenticated,
        s.authenticated(),
        reason,
        message,
        None,
        updated_at.clone(),
    );
    let condition = conditions.remove(0);
    let status = WhatsAppSessionStatus {
        status: Some(s.status),
        qr_status: Some(s.qr_status),
        qr: s.qr.clone(),
        qr_generated_at: s.qr_generated_at.clone(),
        qr_expires_at: s.qr_expires_at.clone(),
        pairing_code: s.pairing_code.clone(),
        phone_number: s.phone_number.clone(),
        push_name: s.push_name.clone(),
        connected_at: s.connected_at.clone(),
        updated_at: Some(updated_at),
        last_error: s.last_error.clone(),
        handled: Some(s.handled.clone()),
        conditions: vec![condition.clone()],
        ..Default::default()
    };
    let body = serde_json::json!({
        "apiVersion": "whatsapp.leadmaster.io/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": { "name": name },
        "status": status,
    });
    (body, condition)
}

impl Publisher {
    /// `current` is the CR as found at start-up: its agent fields count as already published.
    pub fn spawn(
        api: Api<WhatsAppSession>,
        name: String,
        current: Option<&WhatsAppSession>,
        coalesce: Duration,
        metrics: Metrics,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut published: Option<AgentStatus> = current
            .and_then(|c| c.status.as_ref())
            .and_then(AgentStatus::from_cr);
        let mut condition: Option<Condition> = current
            .and_then(|c| c.condition(ConditionType::Authenticated))
            .cloned();
        tokio::spawn(async move {
            let mut pending: Option<AgentStatus> = None;
            let mut deadline: Option<Instant> = None;
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            let mut failures = 0u32;
            loop {
                let msg = match deadline {
                    Some(d) => tokio::select! {
                        m = rx.recv() => m,
                        _ = tokio::time::sleep_until(d) => Some(Msg::Deadline),
                    },
                    None => rx.recv().await,
                };
                let Some(msg) = msg else { break };
                let mut flush_now = false;
                match msg {
                    Msg::Update { status, urgent } => {
                        pending = Some(*status);
                        if urgent {
                            flush_now = true;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + coalesce);
                        }
                    }
                    Msg::Flush(w) => {
                        waiters.push(w);
                        flush_now = true;
                    }
                    Msg::Deadline => flush_now = true,
                }
                if !flush_now {
                    continue;
                }
                deadline = None;
                if let Some(status) = pending.take() {
                    if published.as_ref() == Some(&status) {
                        // Nothing new for the API server.
                    } else {
                        let (body, cond) = apply_body(&name, &status, condition.as_ref(), now());
                        let pp = PatchParams::apply(managers::AGENT).force();
                        match api.patch_status(&name, &pp, &Patch::Apply(&body)).await {
                            Ok(_) => {
                                failures = 0;
                                metrics
                                    .status_writes
                                    .get_or_create(&ResultLabel {
                                        result: "ok".into(),
                                    })
                                    .inc();
                                if status.qr.is_some()
                                    && published.as_ref().and_then(|p| p.qr.as_ref())
                                        != status.qr.as_ref()
                                {
                                    metrics.qr_published.inc();
                                }
                                if published.as_ref().map(|p| p.status) != Some(status.status) {
                                    metrics
                                        .state_transitions
                                        .get_or_create(&StateLabel {
                                            state: status.status.as_str().into(),
                                        })
                                        .inc();
                                }
                                metrics.connected.set(i64::from(status.authenticated()));
                                tracing::info!(
                                    status = status.status.as_str(),
                                    qr_status = status.qr_status.as_str(),
                                    last_error =
                                        status.last_error.as_ref().map(|e| e.code.as_str()),
                                    "status published"
                                );
                                condition = Some(cond);
                                published = Some(status);
                            }
                            Err(e) => {
                                failures += 1;
                                metrics
                                    .status_writes
                                    .get_or_create(&ResultLabel {
                                        result: "error".into(),
                                    })
                                    .inc();
                                tracing::warn!(error = %e, failures, "status write failed; retrying");
                                pending = Some(status);
                                let backoff =
                                    Duration::from_millis(500 * u64::from(failures.min(10)));
                                deadline = Some(Instant::now() + backoff);
                                // Waiters are only released once written (or at shutdown).
                                continue;
                            }
                        }
                    }
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        Self { tx }
    }

    pub fn publish(&self, status: &AgentStatus, urgent: bool) {
        let _ = self.tx.send(Msg::Update {
            status: Box::new(status.clone()),
            urgent,
        });
    }

    /// Waits until everything sent so far is written (bounded by `timeout`).
    pub async fn flush(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{QrStatus, SessionState};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn body_carries_only_agent_fields_and_keeps_transition_time() {
        let t1 = Time(Timestamp::from_second(1_800_000_000).expect("ts"));
        let t2 = Time(Timestamp::from_second(1_800_000_100).expect("ts"));
        let s = AgentStatus {
            status: SessionState::QrRequired,
            qr_status: QrStatus::Generated,
            qr: Some("r,k".into()),
            ..Default::default()
        };
        let (body, cond) = apply_body("s1", &s, None, t1.clone());
        let st = &body["status"];
        assert_eq!(st["status"], "qr_required");
        assert_eq!(st["qr"], "r,k");
        assert!(st.get("observedGeneration").is_none());
        assert!(st.get("podName").is_none());
        assert_eq!(st["conditions"].as_array().map(|a| a.len()), Some(1));
        assert_eq!(st["conditions"][0]["type"], "Authenticated");
        assert_eq!(st["conditions"][0]["status"], "False");
        let (_, cond2) = apply_body("s1", &s, Some(&cond), t2);
        assert_eq!(cond2.last_transition_time, t1);
    }
}
