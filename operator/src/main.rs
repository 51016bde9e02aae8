//! wa-operator entry point: configuration, logging, metrics server, leader election, controller.
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::client::ClientBuilder;
use operator::children::Settings;
use operator::config::Config;
use operator::events::Events;
use operator::leader::{Leadership, acquire};
use operator::metrics::{CountRequestsLayer, Metrics, listen};
use operator::reconcile::{Context, run};

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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
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
            _ = shutdown_signal() => return Ok(()),
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
    let lost = leadership.as_ref().map(|l| l.changes.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let watcher = tokio::spawn(async move {
        let reason = match lost {
            Some(changes) => tokio::select! {
                _ = shutdown_signal() => "signal",
                _ = Leadership::lost(changes) => "lost leadership",
            },
            None => {
                shutdown_signal().await;
                "signal"
            }
        };
        let _ = stop_tx.send(reason);
    });
    let (reason_tx, reason_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let shutdown = async move {
        let reason = stop_rx.await.unwrap_or("signal");
        let _ = reason_tx.send(reason);
    };
    run(ctx, cfg.watch_namespace(), cfg.concurrency, shutdown).await;
    watcher.abort();
    server.abort();
    let reason = reason_rx.await.unwrap_or("controller stopped");
    tracing::info!(reason, "controller stopped");
    if let Some(l) = leadership {
        l.release().await;
        metrics.leader.set(0);
    }
    if reason == "lost leadership" {
        anyhow::bail!("lost leadership of the Lease; exiting so the pod restarts as a standby");
    }
    Ok(())
}
