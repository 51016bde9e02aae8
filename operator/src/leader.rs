//! Leader election on a `coordination.k8s.io/v1` Lease, the client-go algorithm: only the
//! holder runs the controller, so two replicas never reconcile the same session at once.
//!
//! - Every write is a compare-and-swap (create, or replace with the `resourceVersion` read), so
//!   two replicas cannot both believe they took the Lease.
//! - Expiry is judged by how long the Lease has stayed unchanged *as seen by this replica*
//!   (client-go's `observedTime`), never by comparing `renewTime` with the local clock, so clock
//!   skew between nodes cannot hand the Lease to two replicas.
//! - A standby watches the Lease, so a release or deletion is acted on at once instead of after
//!   the lease duration.
//! - On shutdown the holder releases the Lease (client-go's `ReleaseOnCancel`) and then deletes
//!   it, guarded by the released `resourceVersion`: `helm uninstall` leaves no Lease behind, and a
//!   standby that already took the released Lease keeps it (the delete's precondition fails).
//! - A replica that loses the Lease stops reconciling and exits (its pod restarts as a standby):
//!   simpler and safer than trying to resume a half-stopped controller.
//!
//! Why ours and not a crate (compared in issue 27; to be reused for one Lease per
//! WhatsAppSession held by its agent, with the agent's Pod as owner):
//! - kubert's `lease` (0.25) pins `kube-client >=1.1, <1.2`; with our kube 5 cargo resolves two
//!   kube-clients whose `Client` and `Api<Lease>` are different types, so it cannot take our
//!   client. It also judges expiry by `renewTime + duration` against the local clock.
//! - kube-lease-manager (0.13, kube 5) builds, but takes a Lease when `renewTime + duration`
//!   has passed on the local clock (skew is only tolerated up to its `grace`), renews by a
//!   merge patch without a resourceVersion precondition, polls instead of watching (a standby
//!   takes over a released Lease only at its next poll), sets no ownerReference (our Pod-owned
//!   Lease is what lets the garbage collector remove it after SIGKILL or `helm uninstall`),
//!   and releases without deleting; it also brings a second major of `rand`.
//!
//! Each of those is behaviour our tests pin (take-over within seconds of a release, no Lease
//! left after uninstall, no split brain under clock skew), and per-session leases need the same:
//! [`LeaseLock`] is already one Lease by namespace, name, identity and owner.
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Call, During, Result, Verb};

/// The Lease and who we are.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The holder's Pod, set as the Lease's only owner while it holds it (see `--pod-uid`).
    owner: Option<OwnerReference>,
}

/// What this replica last saw of the Lease and since when, for expiry (see the module doc).
#[derive(Default)]
struct Observed {
    resource_version: Option<String>,
    since: Option<Instant>,
}

impl Observed {
    /// How long the Lease has been unchanged here.
    fn unchanged_for(&mut self, lease: &Lease, now: Instant) -> Duration {
        if self.resource_version != lease.metadata.resource_version || self.since.is_none() {
            self.resource_version = lease.metadata.resource_version.clone();
            self.since = Some(now);
        }
        self.since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// What to do with the Lease as found (pure, unit-tested).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    Take,
    /// Someone else holds it; it expires in this long at the earliest.
    Wait {
        holder: String,
        expires_in: Duration,
    },
}

/// `spec` of an existing Lease, as `me`, that has stayed unchanged for `unchanged_for`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty());
    match holder {
        None => Decision::Take,
        Some(h) if h == me => Decision::Renew,
        Some(holder) => {
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|d| u64::try_from(d).ok())
                .map_or(default_duration, Duration::from_secs);
            if unchanged_for >= duration {
                Decision::Take
            } else {
                Decision::Wait {
                    holder,
                    expires_in: duration - unchanged_for,
                }
            }
        }
    }
}

/// The outcome of one attempt.
enum Attempt {
    Held,
    /// Held by `holder` (None: a write lost a race); try again in at most `retry_in`.
    NotHeld {
        holder: Option<String>,
        retry_in: Duration,
    },
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

/// The outcome of a compare-and-swap write of the Lease: ours, or lost to a concurrent writer
/// (try again at once, with what it wrote).
fn written(result: kube::Result<Lease>, call: Call) -> Result<Attempt> {
    match result {
        Ok(_) => Ok(Attempt::Held),
        Err(e) if conflict(&e) => Ok(Attempt::NotHeld {
            holder: None,
            retry_in: Duration::ZERO,
        }),
        Err(e) => Err(e).during(call),
    }
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
        owner: Option<OwnerReference>,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            owner,
        }
    }

    /// The Lease's owners while we hold it: our Pod only (a previous holder's Pod must not take
    /// our Lease with it), none without a Pod.
    /// `verb` on our Lease, for errors.
    fn call(&self, verb: Verb) -> Call {
        Call::on::<Lease>(verb, self.api.namespace(), &self.name)
    }

    fn owners(&self) -> Option<Vec<OwnerReference>> {
        self.owner.clone().map(|o| vec![o])
    }

    /// How often the holder renews and a standby re-checks: a third of the duration, ≥ 1 s.
    fn retry_period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_secs(1))
    }

    fn held_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        let ours =
            previous.and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(self.duration.as_secs()).ok(),
            acquire_time: if ours {
                previous.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    /// One client-go `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&self, observed: &mut Observed) -> Result<Attempt> {
        let retry = self.retry_period();
        let read = self.api.get_opt(&self.name).await;
        let Some(mut lease) = read.during(self.call(Verb::Get))? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    owner_references: self.owners(),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..self.held_spec(None)
                }),
            };
            return written(
                self.api.create(&PostParams::default(), &lease).await,
                self.call(Verb::Create),
            );
        };
        let unchanged_for = observed.unchanged_for(&lease, Instant::now());
        match decide(
            lease.spec.as_ref(),
            &self.identity,
            unchanged_for,
            self.duration,
        ) {
            Decision::Wait { holder, expires_in } => Ok(Attempt::NotHeld {
                holder: Some(holder),
                retry_in: expires_in.min(retry),
            }),
            Decision::Renew | Decision::Take => {
                // replace carries the resourceVersion read above: a concurrent writer makes it fail.
                lease.spec = Some(self.held_spec(lease.spec.as_ref()));
                lease.metadata.owner_references = self.owners();
                written(
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await,
                    self.call(Verb::Replace),
                )
            }
        }
    }

    /// Changes of the Lease (any event), so a standby reacts to a release or deletion at once.
    fn changes(&self) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        Box::pin(watcher(self.api.clone(), cfg).default_backoff().map(|_| ()))
    }

    /// Gives the Lease up if we hold it, then deletes it unless someone took it meanwhile.
    async fn release(&self) -> Result<Released> {
        let read = self.api.get_opt(&self.name).await;
        let Some(mut lease) = read.during(self.call(Verb::Get))? else {
            return Ok(Released::Gone);
        };
        if lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            != Some(self.identity.as_str())
        {
            return Ok(Released::NotOurs);
        }
        // As client-go's ReleaseOnCancel: no holder, 1 s duration, renewed now.
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(Timestamp::now())),
            acquire_time: None,
            ..lease.spec.unwrap_or_default()
        });
        let released = match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => l,
            Err(e) if conflict(&e) => return Ok(Released::NotOurs),
            Err(e) => return Err(e).during(self.call(Verb::Replace)),
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: released.resource_version(),
                uid: released.uid(),
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &dp).await {
            Ok(_) => Ok(Released::Deleted),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Released::Deleted),
            // A standby took the released Lease between our two writes: it is theirs now.
            Err(e) if conflict(&e) => Ok(Released::TakenOver),
            // Older RBAC without `delete` on leases: released is enough for a fast take-over.
            Err(kube::Error::Api(s)) if s.is_forbidden() => Ok(Released::KeptForbidden),
            Err(e) => Err(e).during(self.call(Verb::Delete)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Released {
    Deleted,
    TakenOver,
    KeptForbidden,
    NotOurs,
    Gone,
}

/// Leadership held; `changes` turns false when it is lost.
pub struct Leadership {
    pub changes: watch::Receiver<bool>,
    lock: LeaseLock,
    renew: JoinHandle<()>,
}

/// Joins the election; returns once this replica holds the Lease.
pub async fn acquire(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration_secs: u64,
    owner: Option<OwnerReference>,
) -> Result<Leadership> {
    let lock = LeaseLock::new(
        client,
        namespace,
        name,
        identity,
        Duration::from_secs(duration_secs.max(1)),
        owner,
    );
    tracing::info!(lease = name, namespace, identity, "waiting for leadership");
    let mut changes = lock.changes();
    let mut observed = Observed::default();
    let mut last_holder = None;
    loop {
        let retry_in = match lock.try_acquire_or_renew(&mut observed).await {
            Ok(Attempt::Held) => break,
            Ok(Attempt::NotHeld { holder, retry_in }) => {
                if holder.is_some() && holder != last_holder {
                    tracing::info!(holder = ?holder, "the Lease is held by another replica; standing by");
                    last_holder = holder;
                }
                retry_in
            }
            Err(e) => {
                // A standby meeting an API server restart tries again in a moment.
                if e.is_transient() {
                    tracing::info!(error = %e, "leader election attempt failed; retrying");
                } else {
                    tracing::warn!(error = %e, "leader election attempt failed");
                }
                lock.retry_period()
            }
        };
        if retry_in.is_zero() {
            continue;
        }
        tokio::select! {
            _ = changes.next() => {}
            _ = tokio::time::sleep(retry_in) => {}
        }
    }
    tracing::info!(lease = name, namespace, identity, "acquired leadership");
    let (tx, rx) = watch::channel(true);
    let renew = tokio::spawn(keep(lock.clone(), observed, tx));
    Ok(Leadership {
        changes: rx,
        lock,
        renew,
    })
}

/// Renews every retry period; reports loss when another replica holds the Lease or no renewal
/// succeeded within two thirds of the duration (the Lease may be taken after the full one).
async fn keep(lock: LeaseLock, mut observed: Observed, held: watch::Sender<bool>) {
    let renew_deadline = lock.duration * 2 / 3;
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(lock.retry_period()).await;
        match lock.try_acquire_or_renew(&mut observed).await {
            Ok(Attempt::Held) => {
                last_renewed = Instant::now();
                continue;
            }
            Ok(Attempt::NotHeld {
                holder: Some(holder),
                ..
            }) => {
                tracing::error!(%holder, "the Lease was taken by another replica");
                break;
            }
            Ok(Attempt::NotHeld { holder: None, .. }) => {
                tracing::warn!("renewing the Lease lost a race; retrying")
            }
            // The API server away for a moment: the next renewal is in a retry period, and if
            // none succeeds in time that is the ERROR below.
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "renewing the Lease failed; retrying")
            }
            Err(e) => tracing::warn!(error = %e, "renewing the Lease failed"),
        }
        if last_renewed.elapsed() >= renew_deadline {
            tracing::error!(
                deadline_secs = renew_deadline.as_secs_f64(),
                "could not renew the Lease in time"
            );
            break;
        }
    }
    let _ = held.send(false);
}

impl Leadership {
    /// Resolves when leadership is lost.
    pub async fn lost(mut changes: watch::Receiver<bool>) {
        loop {
            if !*changes.borrow_and_update() {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once instead of after expiry,
    /// and deletes it so an uninstall leaves nothing behind.
    pub async fn release(self) {
        self.renew.abort();
        let _ = self.renew.await;
        match tokio::time::timeout(Duration::from_secs(5), self.lock.release()).await {
            Ok(Ok(Released::Deleted)) => tracing::info!("released and deleted the Lease"),
            Ok(Ok(Released::TakenOver)) => {
                tracing::info!("released the Lease; another replica took it over")
            }
            Ok(Ok(Released::KeptForbidden)) => {
                tracing::info!(
                    "released the Lease; not allowed to delete it (RBAC lacks delete on leases)"
                )
            }
            Ok(Ok(Released::NotOurs)) => {
                tracing::info!("the Lease was no longer ours; nothing to release")
            }
            Ok(Ok(Released::Gone)) => tracing::info!("the Lease was already gone"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the Lease"),
            Err(_) => tracing::warn!("timed out releasing the Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(h: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(h.into()),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn free_lease_is_taken_and_own_lease_renewed() {
        assert_eq!(decide(None, "me", Duration::ZERO, D), Decision::Take);
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            decide(Some(&empty), "me", Duration::ZERO, D),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&held_by("me", 15)), "me", Duration::ZERO, D),
            Decision::Renew
        );
    }

    #[test]
    fn another_holder_is_waited_out_by_local_observation() {
        let other = held_by("other", 6);
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(2), D),
            Decision::Wait {
                holder: "other".into(),
                expires_in: Duration::from_secs(4)
            }
        );
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(6), D),
            Decision::Take
        );
        // no duration on the Lease: ours applies
        let bare = LeaseSpec {
            holder_identity: Some("other".into()),
            ..Default::default()
        };
        assert!(matches!(
            decide(Some(&bare), "me", Duration::from_secs(14), D),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn observation_restarts_when_the_lease_changes() {
        let mut o = Observed::default();
        let t0 = Instant::now();
        let mut l = Lease {
            metadata: ObjectMeta {
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: None,
        };
        assert_eq!(o.unchanged_for(&l, t0), Duration::ZERO);
        assert_eq!(
            o.unchanged_for(&l, t0 + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        l.metadata.resource_version = Some("2".into());
        assert_eq!(
            o.unchanged_for(&l, t0 + Duration::from_secs(4)),
            Duration::ZERO
        );
    }
}
