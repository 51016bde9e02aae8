//! wa-operator entry point: configuration, logging, metrics server, leader election, controller.
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::client::ClientBuilder;
use operator::children::Settings;
use operator::config::Config;
use operator::context::Context;
use operator::controller::run;
use operator::events::Events;
use operator::leader::{Leadership, acquire};
use operator::metrics::{CountRequestsLayer, Metrics, listen};
use runtime::shutdown::Shutdown;
use tokio::sync::watch;

fn identity(cfg: &Config) -> String {
    cfg.identity
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("wa-operator-{}", std::process::id()))
}

/// Why the controller stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM or SIGINT: a graceful shutdown.
    Signal,
    /// Another replica holds the Lease now: exit non-zero so the pod restarts as a standby.
    LostLeadership,
    /// The controller ended by itself.
    ControllerEnded,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Signal => "signal",
            Stop::LostLeadership => "lost leadership",
            Stop::ControllerEnded => "controller stopped",
        })
    }
}

/// Resolves with the reason to stop: the shutdown started, or the leadership was lost (which
/// then starts the shutdown, so the controller drains as on a signal).
async fn stop_reason(shutdown: Shutdown, leadership: Option<watch::Receiver<bool>>) -> Stop {
    let Some(changes) = leadership else {
        shutdown.started().await;
        return Stop::Signal;
    };
    tokio::select! {
        _ = shutdown.started() => Stop::Signal,
        _ = Leadership::lost(changes) => {
            shutdown.trigger();
            Stop::LostLeadership
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let shutdown = Shutdown::on_signals().context("installing the SIGTERM and SIGINT handlers")?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        // "span": {"name": "reconcile", "session": .., "namespace": ..} on every line logged
        // within a reconcile; the list of enclosing spans would repeat it.
        .with_current_span(true)
        .with_span_list(false)
        // docs/operator.md "Logs": kube-client's duplicates of errors we report are off.
        .with_env_filter(runtime::logs::filter(""))
        .init();

    let metrics = Arc::new(Metrics::default());
    let kube_config = kube::Config::infer()
        .await
        .context("loading Kubernetes configuration")?;
    let default_ns = kube_config.default_namespace.clone();
    let client = ClientBuilder::try_from(kube_config)
        .context("building the Kubernetes client")?
        .with_layer(&CountRequestsLayer(metrics.kube_requests.clone()))
        .build();

    let server = listen(cfg.metrics_addr, metrics.clone())
        .await
        .context("the metrics listener (--metrics-addr)")?;
    let server = tokio::spawn(server);
    let identity = identity(&cfg);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), namespace = ?cfg.watch_namespace(), %identity,
        image = %cfg.session_image, "starting wa-operator");

    let leadership = if cfg.leader_election {
        let lease_ns = cfg
            .lease_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or(default_ns);
        // Our Pod owns the Lease while we hold it (garbage-collected with the Pod).
        let owner = match (cfg.identity.as_deref(), cfg.pod_uid.as_deref()) {
            (Some(pod), Some(uid)) if !pod.is_empty() && !uid.is_empty() => Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.into(),
                uid: uid.into(),
                ..Default::default()
            }),
            _ => None,
        };
        let acquired = tokio::select! {
            l = acquire(client.clone(), &lease_ns, &cfg.lease_name, &identity, cfg.lease_duration_seconds, owner) => l?,
            _ = shutdown.started() => return Ok(()),
        };
        Some(acquired)
    } else {
        None
    };
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(
        client.clone(),
        Settings::from_config(&cfg),
        cfg.logout_timeout,
        metrics.clone(),
        Events::new(client.clone(), &identity),
    ));
    let stop = tokio::spawn(stop_reason(
        shutdown.clone(),
        leadership.as_ref().map(|l| l.changes.clone()),
    ));
    run(
        ctx,
        cfg.watch_namespace(),
        cfg.concurrency,
        shutdown.token().cancelled_owned(),
    )
    .await;
    server.abort();
    // Once the shutdown started, `stop` has its reason (or is about to).
    let reason = if shutdown.is_started() {
        stop.await.unwrap_or(Stop::Signal)
    } else {
        stop.abort();
        Stop::ControllerEnded
    };
    tracing::info!(%reason, "controller stopped");
    if let Some(l) = leadership {
        l.release().await;
        metrics.leader.set(0);
    }
    if reason == Stop::LostLeadership {
        anyhow::bail!("lost leadership of the Lease; exiting so the pod restarts as a standby");
    }
    Ok(())
}
