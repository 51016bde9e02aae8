//! NodePort Services: `127.0.0.1:<nodePort>` forwards to a ready endpoint (pod IP:targetPort)
//! taken from the Service's EndpointSlices, round-robin. TCP only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which service port a node port belongs to.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Target {
    namespace: String,
    service: String,
    port_name: String,
}

/// Picks a ready endpoint of the service port.
fn endpoints(slices: &Store<EndpointSlice>, t: &Target) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in slices.state() {
        if s.metadata.namespace.as_deref() != Some(&t.namespace)
            || s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).map(String::as_str) != Some(t.service.as_str())
            || s.address_type != "IPv4"
        {
            continue;
        }
        let Some(port) = s
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == t.port_name && p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in &s.endpoints {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<std::net::IpAddr>()
                    && let Ok(port) = u16::try_from(port)
                {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out.sort();
    out
}

async fn serve(listener: TcpListener, target: Target, slices: Store<EndpointSlice>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let eps = endpoints(&slices, &target);
        if eps.is_empty() {
            tracing::info!(service = %target.service, namespace = %target.namespace, "node port: no ready endpoint");
            continue;
        }
        let ep = eps[next.fetch_add(1, Ordering::Relaxed) % eps.len()];
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(ep).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Watches Services and EndpointSlices and keeps one listener per node port.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let svc_stream = reflector::reflector(svc_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .for_each(|_| async {});
    let eps_stream = reflector::reflector(eps_writer, watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .for_each(|_| async {});
    let watchers = tokio::spawn(async move {
        futures::join!(svc_stream, eps_stream);
    });
    let mut listeners: BTreeMap<u16, (Target, JoinHandle<()>)> = BTreeMap::new();
    let mut busy: BTreeMap<u16, Target> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut wanted: BTreeMap<u16, Target> = BTreeMap::new();
        for svc in svc_store.state() {
            let Some(spec) = &svc.spec else { continue };
            if !matches!(spec.type_.as_deref(), Some("NodePort") | Some("LoadBalancer")) {
                continue;
            }
            for p in spec.ports.as_deref().unwrap_or_default() {
                if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                    continue;
                }
                if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                    wanted.insert(
                        np,
                        Target {
                            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                            service: svc.metadata.name.clone().unwrap_or_default(),
                            port_name: p.name.clone().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        listeners.retain(|port, (t, h)| {
            let keep = wanted.get(port) == Some(t);
            if !keep {
                h.abort();
            }
            keep
        });
        busy.retain(|port, t| wanted.get(port) == Some(t));
        for (port, target) in wanted {
            if listeners.contains_key(&port) || busy.get(&port) == Some(&target) {
                continue;
            }
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => {
                    tracing::info!(port, service = %target.service, namespace = %target.namespace, "node port forwarding");
                    let h = tokio::spawn(serve(l, target.clone(), eps_store.clone()));
                    listeners.insert(port, (target, h));
                }
                Err(e) => {
                    tracing::warn!(port, service = %target.service, namespace = %target.namespace, error = %e, "node port is busy on 127.0.0.1; not forwarded");
                    busy.insert(port, target);
                }
            }
        }
    }
    for (_, (_, h)) in listeners {
        h.abort();
    }
    watchers.abort();
}
