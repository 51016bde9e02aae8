//! The agent's own WhatsAppSession: read once at start-up ([`get`]), then watched for the
//! requests of its spec ([`watch_requests`]; a field selector on its name, so a Role limited
//! by resourceNames allows the list/watch).

use std::sync::Arc;
use std::time::Duration;

use crds::WhatsAppSession;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use runtime::kube_errors::WatchFailure;
use runtime::outage::Outage;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// The requests of the spec the agent acts on, once per value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    pub qr_requested_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    pub logout_requested_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    pub pairing_phone: Option<String>,
    /// The send rate (`spec.messaging`): read live by the message API.
    pub send_rate: crate::messages::rate::Limits,
}

impl Requests {
    pub fn of(cr: &WhatsAppSession) -> Self {
        Self {
            qr_requested_at: cr.spec.qr_requested_at.clone(),
            logout_requested_at: cr.spec.logout_requested_at.clone(),
            pairing_phone: cr.spec.pairing.as_ref().map(|p| p.phone_number.clone()),
            send_rate: crate::messages::rate::Limits::of(cr.spec.messaging.as_ref()),
        }
    }
}

/// Spawns the watch; the receiver always holds the newest spec requests. A watch failure
/// because the API server is away goes to `outage` (INFO, one WARN past the bound; the watch
/// resumes by itself); any other (a 403: the session's Role) is a WARN.
pub fn watch_requests(
    api: Api<WhatsAppSession>,
    name: &str,
    initial: Requests,
    outage: Arc<Outage>,
) -> watch::Receiver<Requests> {
    let (tx, rx) = watch::channel(initial);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(cr) => {
                    outage.recovered();
                    let req = Requests::of(&cr);
                    tx.send_if_modified(|cur| {
                        if *cur != req {
                            *cur = req;
                            true
                        } else {
                            false
                        }
                    });
                }
                Err(e) => match runtime::kube_errors::classify_watch(&e) {
                    WatchFailure::Outage => {
                        outage.failed(&e);
                    }
                    WatchFailure::Relist => {
                        tracing::debug!(error = %e, "watch of the session CR lists again")
                    }
                    WatchFailure::Other => {
                        tracing::warn!(error = %e, "watch of the session CR failed; retrying")
                    }
                },
            }
        }
    });
    rx
}

/// The CR must exist (the operator creates the pod for it); retry briefly for a fresh
/// apiserver or RBAC still propagating. A refusal (401/403) that outlasts the RBAC grace
/// period ends the agent with an error naming the CR: these credentials are not this
/// session's (the operator's Role grants a session pod its own CR only), and retrying for
/// longer would only hide that.
pub async fn get(
    api: &Api<WhatsAppSession>,
    namespace: &str,
    name: &str,
) -> Result<WhatsAppSession> {
    let mut last = None;
    for attempt in 0..10u64 {
        match api.get(name).await {
            Ok(cr) => return Ok(cr),
            Err(kube::Error::Api(e)) if e.code == 401 || e.code == 403 => {
                // `detail`, not `message`: that key is the event's own text in the JSON log.
                tracing::warn!(code = e.code, reason = %e.reason, detail = %e.message, attempt, "reading the session CR was refused");
                if attempt + 1 >= REFUSED_ATTEMPTS {
                    return Err(Error::Refused {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        code: e.code,
                        message: e.message,
                    });
                }
                tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            }
            Err(e) => {
                // The API server away (restarting) is mended by the next attempts; the final
                // failure is the ERROR `wa-session failed`.
                if runtime::kube_errors::is_transient(&e) {
                    tracing::info!(error = %e, attempt, "reading the session CR failed; retrying");
                } else {
                    tracing::warn!(error = %e, attempt, "reading the session CR failed");
                }
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            }
        }
    }
    Err(last
        .map(Error::Kube)
        .unwrap_or_else(|| Error::KubeConfig("no attempt made".into())))
}

/// Attempts (0.5 s + 1 s + 1.5 s apart) before a 401/403 is taken as final: the operator
/// creates the Role and RoleBinding before the pod, so only authorizer cache lag is waited out.
const REFUSED_ATTEMPTS: u64 = 4;
