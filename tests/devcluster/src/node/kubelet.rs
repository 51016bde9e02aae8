//! The one part of the kubelet API that devcluster serves: container logs, so `kubectl logs`
//! (and `-f`) work. kube-apiserver answers `pods/log` by calling
//! `GET https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}`
//! with its `--kubelet-client-certificate`; this server listens on the bridge address, accepts
//! only clients with a certificate from the cluster CA (the API server's), and streams the
//! container's log file (`devcluster logs` reads the same file).
//!
//! Supported query parameters: `follow`, `tailLines`, `limitBytes`. `timestamps`, `sinceSeconds`,
//! `sinceTime` and `previous` are ignored (the file holds every run of the container, without
//! timestamps). Everything else (exec, attach, port-forward, stats) answers 404.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use super::NodeError;

/// Where the kubelet's serving certificate and the CA that signs the API server's client
/// certificate are.
pub struct KubeletTls {
    pub ca_crt: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls_err(path: &Path, message: impl std::fmt::Display) -> NodeError {
    NodeError::Io { path: path.to_path_buf(), source: std::io::Error::other(message.to_string()) }
}

fn acceptor(tls: &KubeletTls) -> Result<TlsAcceptor, NodeError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca_crt).map_err(|e| tls_err(&tls.ca_crt, e))? {
        roots.add(cert.map_err(|e| tls_err(&tls.ca_crt, e))?).map_err(|e| tls_err(&tls.ca_crt, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(&tls.ca_crt, e))?;
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| tls_err(&tls.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&tls.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| tls_err(&tls.key, e))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&tls.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&tls.cert, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the kubelet port on the bridge address (a free one: several clusters run side by side).
pub async fn bind(host_ip: Ipv4Addr) -> Result<TcpListener, NodeError> {
    TcpListener::bind((host_ip, 0))
        .await
        .map_err(|source| NodeError::Io { path: PathBuf::from(format!("{host_ip}:0 (kubelet port)")), source })
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: KubeletTls,
    client: kube::Client,
    state_dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let acceptor = acceptor(&tls)?;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet port: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, client, state_dir, shutdown) = (acceptor.clone(), client.clone(), state_dir.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "kubelet port: TLS handshake refused");
                    return;
                }
            };
            if let Err(e) = handle(stream, &client, &state_dir, &shutdown).await {
                tracing::debug!(%peer, error = %e, "kubelet port: request ended");
            }
        });
    }
}

/// A parsed `containerLogs` request.
#[derive(Debug, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
}

/// Parses the request line's target; None for anything but `/containerLogs/ns/pod/container`.
pub fn parse_target(target: &str) -> Option<LogRequest> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut parts = path.strip_prefix("/containerLogs/")?.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [namespace, pod, container].iter().any(|s| s.is_empty() || s.contains("..")) {
        return None;
    }
    let mut req = LogRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        follow: false,
        tail_lines: None,
        limit_bytes: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "follow" => req.follow = v == "true" || v == "1",
            "tailLines" => req.tail_lines = v.parse().ok(),
            "limitBytes" => req.limit_bytes = v.parse().ok(),
            _ => {}
        }
    }
    Some(req)
}

/// The last `n` lines of `text` (the whole of it when it has fewer).
pub fn tail(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    // a final newline ends the last line; it does not start another
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    client: &kube::Client,
    state_dir: &Path,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await.map_err(std::io::Error::other)??;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut line = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
    let Some(req) = (method == "GET").then(|| parse_target(target)).flatten() else {
        return respond(&mut wr, "404 Not Found", "devcluster serves only /containerLogs\n").await;
    };
    let Some(path) = super::log_path(state_dir, &req.namespace, &req.pod, &req.container) else {
        let msg = format!("no log of container {} of pod {}/{} on this node\n", req.container, req.namespace, req.pod);
        return respond(&mut wr, "404 Not Found", &msg).await;
    };
    let mut file = tokio::fs::File::open(&path).await?;
    let mut content = Vec::new();
    file.read_to_end(&mut content).await?;
    let mut offset = content.len() as u64;
    let mut body: &[u8] = &content;
    if let Some(n) = req.tail_lines {
        body = tail(body, n);
    }
    let mut budget = req.limit_bytes.unwrap_or(usize::MAX);
    let first = &body[..body.len().min(budget)];
    budget -= first.len();
    // No Content-Length: the body ends when the connection closes (follow streams until then).
    wr.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n").await?;
    wr.write_all(first).await?;
    wr.flush().await?;
    if req.follow && budget > 0 {
        follow(&mut file, &mut offset, &mut rd, &mut wr, budget, client, &req, shutdown).await?;
    }
    wr.shutdown().await
}

/// Streams what is appended to the log until the client leaves, the container has stopped for
/// good (pod gone or container terminated), the byte limit is reached or the node stops.
#[allow(clippy::too_many_arguments)]
async fn follow<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    file: &mut tokio::fs::File,
    offset: &mut u64,
    rd: &mut R,
    wr: &mut W,
    mut budget: usize,
    client: &kube::Client,
    req: &LogRequest,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut idle_ticks = 0u32;
    let mut client_buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // the API server closes its side when kubectl goes away
            n = rd.read(&mut client_buf) => if n.unwrap_or(0) == 0 { return Ok(()) },
            _ = tick.tick() => {}
        }
        file.seek(std::io::SeekFrom::Start(*offset)).await?;
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk).await?;
        if !chunk.is_empty() {
            idle_ticks = 0;
            *offset += chunk.len() as u64;
            let part = &chunk[..chunk.len().min(budget)];
            budget -= part.len();
            wr.write_all(part).await?;
            wr.flush().await?;
            if budget == 0 {
                return Ok(());
            }
            continue;
        }
        idle_ticks += 1;
        // Nothing new for 2 s: is there still a container that could write?
        if idle_ticks.is_multiple_of(10) && container_done(&pods, req).await {
            return Ok(());
        }
    }
}

async fn container_done(pods: &Api<Pod>, req: &LogRequest) -> bool {
    let pod = match pods.get_opt(&req.pod).await {
        Ok(Some(p)) => p,
        Ok(None) => return true,
        Err(_) => return false,
    };
    let status = pod.status.unwrap_or_default();
    let phase_done = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    let terminated = status
        .container_statuses
        .unwrap_or_default()
        .iter()
        .chain(status.init_container_statuses.unwrap_or_default().iter())
        .find(|c| c.name == req.container)
        .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    phase_done || (terminated && pod.metadata.deletion_timestamp.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_container_logs_targets() {
        let r = parse_target("/containerLogs/ns1/web-0/main?follow=true&tailLines=5&timestamps=false").unwrap();
        assert_eq!((r.namespace.as_str(), r.pod.as_str(), r.container.as_str()), ("ns1", "web-0", "main"));
        assert!(r.follow);
        assert_eq!(r.tail_lines, Some(5));
        assert!(!parse_target("/containerLogs/ns1/web-0/main").unwrap().follow);
        assert!(parse_target("/exec/ns1/web-0/main").is_none());
        assert!(parse_target("/containerLogs/ns1/web-0").is_none());
        assert!(parse_target("/containerLogs/ns1/../main").is_none());
        assert!(parse_target("/containerLogs/a/b/c/d").is_none());
    }

    #[test]
    fn tails_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
    }
}
