//! Leader election on a Lease (kube-lease-manager): only the holder runs the controller, so two
//! replicas never reconcile the same session at once. A replica that loses the Lease stops
//! reconciling and exits (its pod restarts as a standby) — simpler and safer than trying to
//! resume a half-stopped controller.
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;

pub struct Leadership {
    pub changes: watch::Receiver<bool>,
    pub task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Joins the election; returns once this replica holds the Lease.
pub async fn acquire(client: Client, namespace: &str, name: &str, identity: &str, duration_secs: u64) -> Result<Leadership> {
    // Renew well before expiry: a third of the duration, at least 2 s.
    let grace = (duration_secs / 3).max(2).min(duration_secs.saturating_sub(1).max(1));
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_secs)
        .with_grace(grace)
        .build()
        .await?;
    let (mut changes, task) = manager.watch().await;
    tracing::info!(lease = name, namespace, identity, "waiting for leadership");
    while !*changes.borrow_and_update() {
        if changes.changed().await.is_err() {
            // The manager task ended (API error it could not recover from): surface it.
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(join) => tracing::error!(%join, "lease task failed"),
            }
            return Err(crate::error::Error::MissingField("lease manager stopped before leadership"));
        }
    }
    tracing::info!(lease = name, namespace, identity, "acquired leadership");
    Ok(Leadership { changes, task })
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

    /// Gives the Lease up (on shutdown) so a standby takes over at once instead of after expiry.
    pub async fn release(self) {
        drop(self.changes);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released leadership"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
            Err(_) => tracing::warn!("timed out releasing the lease"),
        }
    }
}
