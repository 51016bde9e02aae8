//! Probes: httpGet (plain HTTP/1.1 against the pod IP), tcpSocket and exec (run in the
//! container's namespaces through `nsenter`). HTTPS httpGet probes only check that the port
//! accepts connections: the agent carries no TLS client for probes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The timings of a probe with Kubernetes' defaults.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

fn port_of(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs the probe once; true = success.
pub async fn check(p: &Probe, container: &Container, pod_ip: IpAddr, pid: Option<u32>) -> bool {
    let t = timing(p);
    let fut = async {
        if let Some(h) = &p.http_get {
            let Some(port) = port_of(&h.port, container) else { return false };
            let host: IpAddr = h.host.as_deref().and_then(|s| s.parse().ok()).unwrap_or(pod_ip);
            let path = h.path.as_deref().unwrap_or("/");
            if h.scheme.as_deref() == Some("HTTPS") {
                return TcpStream::connect(SocketAddr::new(host, port)).await.is_ok();
            }
            let headers: Vec<(String, String)> = h.http_headers.as_deref().unwrap_or_default().iter().map(|h| (h.name.clone(), h.value.clone())).collect();
            return http_get(SocketAddr::new(host, port), path, &headers).await.is_some_and(|s| (200..400).contains(&s));
        }
        if let Some(tcp) = &p.tcp_socket {
            let Some(port) = port_of(&tcp.port, container) else { return false };
            let host: IpAddr = tcp.host.as_deref().and_then(|s| s.parse().ok()).unwrap_or(pod_ip);
            return TcpStream::connect(SocketAddr::new(host, port)).await.is_ok();
        }
        if let Some(exec) = &p.exec {
            let Some(pid) = pid else { return false };
            let cmd = exec.command.as_deref().unwrap_or_default();
            if cmd.is_empty() {
                return false;
            }
            let status = tokio::process::Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-n", "-m", "-u", "--"])
                .args(cmd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await;
            return status.is_ok_and(|s| s.success());
        }
        // grpc probes: not supported; treated as passing rather than killing the container.
        true
    };
    tokio::time::timeout(t.timeout, fut).await.unwrap_or(false)
}

/// A minimal HTTP/1.1 GET; returns the status code.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: devcluster-probe\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    // Read until the status line is complete.
    while n < buf.len() {
        let r = s.read(&mut buf[n..]).await.ok()?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    let line = std::str::from_utf8(&buf[..n]).ok()?.lines().next()?.to_string();
    line.split_whitespace().nth(1)?.parse().ok()
}
