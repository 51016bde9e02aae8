//! Writes the agent's part of the status with server-side apply (field manager `wa-agent`):
//! a new QR at once, other changes coalesced, an unchanged status never rewritten.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use crds::{SessionApply, SessionState, WhatsAppSession, WhatsAppSessionStatus, Writer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use runtime::outage::Outage;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::{Metrics, ResultLabel, StateLabel};
use crate::state::agent_part;
use crds::now;

enum Msg {
    // Boxed: a status is ~600 bytes and every other message is a word.
    Update {
        status: Box<WhatsAppSessionStatus>,
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

/// The SSA request: the agent's fields (as the state machine keeps them, `Authenticated`
/// condition included) stamped with `updatedAt`.
pub fn apply_body(name: &str, s: &WhatsAppSessionStatus, updated_at: Time) -> SessionApply {
    SessionApply::status(
        name,
        WhatsAppSessionStatus {
            updated_at: Some(updated_at),
            ..s.clone()
        },
    )
}

/// Wait before retrying a failed status write: 500 ms, doubling up to 5 s, for as long as
/// writes fail.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

fn retry_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

fn connected(s: &WhatsAppSessionStatus) -> bool {
    s.status == Some(SessionState::Connected)
}

impl Publisher {
    /// `current` is the CR as found at start-up: its agent fields count as already published.
    /// A write that failed because the API server is away goes to `outage` (INFO, one WARN
    /// past the bound; the write is retried until it succeeds); any other failure is a WARN.
    pub fn spawn(
        api: Api<WhatsAppSession>,
        name: String,
        current: Option<&WhatsAppSession>,
        coalesce: Duration,
        metrics: Metrics,
        outage: Arc<Outage>,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut published: Option<WhatsAppSessionStatus> =
            current.and_then(|c| c.status.as_ref()).and_then(agent_part);
        tokio::spawn(async move {
            let mut pending: Option<WhatsAppSessionStatus> = None;
            let mut deadline: Option<Instant> = None;
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            let mut failures = 0u32;
            let mut retry = retry_backoff();
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
                        let body = apply_body(&name, &status, now());
                        match body.apply(&api, Writer::Agent).await {
                            Ok(_) => {
                                failures = 0;
                                retry = retry_backoff();
                                outage.recovered();
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
                                let state = status.status.unwrap_or(SessionState::Init);
                                if published.as_ref().and_then(|p| p.status) != Some(state) {
                                    metrics
                                        .state_transitions
                                        .get_or_create(&StateLabel {
                                            state: state.as_str().into(),
                                        })
                                        .inc();
                                }
                                metrics.connected.set(i64::from(connected(&status)));
                                tracing::info!(
                                    status = state.as_str(),
                                    qr_status = status.qr_status.map(|q| q.as_str()),
                                    last_error =
                                        status.last_error.as_ref().map(|e| e.code.as_str()),
                                    "status published"
                                );
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
                                if runtime::kube_errors::is_transient(&e) {
                                    outage.failed(&e);
                                } else {
                                    tracing::warn!(error = %e, failures, "status write failed; retrying");
                                }
                                pending = Some(status);
                                let delay = retry.next().unwrap_or(RETRY_MAX);
                                deadline = Some(Instant::now() + delay);
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

    pub fn publish(&self, status: &WhatsAppSessionStatus, urgent: bool) {
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
    use crate::driver::Snapshot;
    use crate::own_cr::Requests;
    use crate::state::{Event, Machine, Timings};
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn body_carries_only_agent_fields_and_updated_at() {
        let t1 = Time(Timestamp::from_second(1_800_000_000).expect("ts"));
        let mut m = Machine::new(
            None,
            Timings {
                qr_first_ttl: Duration::from_secs(60),
                qr_next_ttl: Duration::from_secs(20),
                takeover_delay: Duration::from_secs(5),
            },
        );
        let snap = Snapshot {
            loaded: true,
            state: Some("UNPAIRED".into()),
            qr: Some("r,k".into()),
            ..Default::default()
        };
        m.handle(
            Event::Observed {
                snap: &snap,
                requests: &Requests::default(),
                at: Instant::now(),
            },
            t1.clone(),
        );
        let body = serde_json::to_value(apply_body("s1", m.status(), t1)).expect("serializes");
        assert_eq!(body["apiVersion"], "whatsapp.leadmaster.io/v1alpha1");
        assert_eq!(body["metadata"]["name"], "s1");
        let st = &body["status"];
        assert_eq!(st["status"], "qr_required");
        assert_eq!(st["qr"], "r,k");
        assert_eq!(st["updatedAt"], "2027-01-15T08:00:00Z");
        assert!(st.get("observedGeneration").is_none());
        assert!(st.get("podName").is_none());
        assert_eq!(st["conditions"].as_array().map(|a| a.len()), Some(1));
        assert_eq!(st["conditions"][0]["type"], "Authenticated");
        assert_eq!(st["conditions"][0]["status"], "False");
    }
}
