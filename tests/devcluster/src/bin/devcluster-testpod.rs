//! devcluster-testpod: a tiny HTTP program run as a pod in devcluster's own tests and as a
//! stand-in session agent in the operator's tests.
//!
//! Listens on `0.0.0.0:$PORT` (default 8080):
//! - `GET /healthz`, `/livez` → 200; `/readyz` → 200, or 503 after `/ready?value=false`
//! - `GET /env` → the environment as a JSON object
//! - `GET /read?path=P` → the file's content (404 if missing); `/write?path=P&data=D` writes it
//! - `GET /kube?path=/api/...` → an in-cluster GET as the pod's ServiceAccount; answers with the
//!   API server's status code and body
//! - `GET /exit?code=N` → exits with code N (after answering)
//! - `GET /ready?value=true|false` → sets what `/readyz` answers
//! - `GET /alloc?mb=N` → allocates and touches N MiB, kept until the process ends (memory
//!   limits, OOM kills)
//! - `GET /resolve?name=N` → the addresses N resolves to through the C library's resolver
//!   (cluster DNS), one per line; 404 when it does not resolve
//!
//! As a client, run inside a pod with `kubectl exec` (the image has no shell), for the network
//! policy tests: `devcluster-testpod connect HOST:PORT [--timeout 3s]` opens a TCP connection
//! and exits 0 (`connected`) or 1 (why not); `devcluster-testpod resolve NAME` resolves a
//! name through the pod's DNS and exits 0 (the addresses) or 1.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use clap::Parser;

/// A tiny HTTP test program for devcluster pods.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (all addresses).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    #[command(subcommand)]
    probe: Option<Probe>,
}

/// One network check from inside the pod, instead of serving.
#[derive(clap::Subcommand, Debug)]
enum Probe {
    /// Open a TCP connection to HOST:PORT; exit 0 when it is accepted, 1 when refused, reset
    /// or not answered within the timeout (a NetworkPolicy drop).
    Connect {
        addr: String,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Resolve NAME through the pod's resolver (cluster DNS); exit 0 with the addresses, 1
    /// when it does not resolve within the timeout.
    Resolve {
        name: String,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// Runs one probe; the exit code says whether it got through.
async fn probe(p: Probe) -> std::process::ExitCode {
    let (what, result) = match p {
        Probe::Connect { addr, timeout } => {
            let r =
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await;
            let r = match r {
                Ok(Ok(_)) => Ok("connected".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (format!("connect {addr}"), r)
        }
        Probe::Resolve { name, timeout } => {
            let r =
                tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), 0))).await;
            let r = match r {
                Ok(Ok(addrs)) => Ok(addrs
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (format!("resolve {name}"), r)
        }
    };
    match result {
        Ok(out) => {
            println!("{what}: {out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{what}: failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Clone)]
struct AppState {
    ready: Arc<AtomicBool>,
}

async fn ok() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn env() -> Json<BTreeMap<String, String>> {
    Json(std::env::vars().collect())
}

async fn read(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(path) = q.get("path") else {
        return (StatusCode::BAD_REQUEST, "path required").into_response();
    };
    match std::fs::read(path) {
        Ok(data) => (StatusCode::OK, data).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn write(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let (Some(path), Some(data)) = (q.get("path"), q.get("data")) else {
        return (StatusCode::BAD_REQUEST, "path and data required").into_response();
    };
    match std::fs::write(path, data) {
        Ok(()) => (StatusCode::OK, "written").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn kube_get(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(path) = q.get("path") else {
        return (StatusCode::BAD_REQUEST, "path required").into_response();
    };
    let result = async {
        let config = kube::Config::incluster()?;
        let client = kube::Client::try_from(config)?;
        let req = axum::http::Request::get(path.as_str()).body(Vec::<u8>::new())?;
        let resp = client.send(req.map(kube::client::Body::from)).await?;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 16 << 20).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    }
    .await;
    match result {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        )
            .into_response(),
        // 599: the request never got an answer from the API server (config, TLS, network).
        Err(e) => (
            StatusCode::from_u16(599).unwrap_or(StatusCode::BAD_GATEWAY),
            format!("in-cluster request failed: {e}"),
        )
            .into_response(),
    }
}

async fn exit(Query(q): Query<BTreeMap<String, String>>) -> &'static str {
    let code: i32 = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(0);
    // Answer first, then exit.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        std::process::exit(code);
    });
    "exiting"
}

async fn set_ready(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> &'static str {
    let v = q.get("value").map(String::as_str) != Some("false");
    s.ready.store(v, Ordering::SeqCst);
    if v { "ready" } else { "not ready" }
}

/// Memory `/alloc` keeps alive.
static HELD: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

async fn alloc(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(mb) = q.get("mb").and_then(|m| m.parse::<usize>().ok()) else {
        return (StatusCode::BAD_REQUEST, "mb required").into_response();
    };
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..mb {
        // non-zero bytes: the pages are really touched, so they count against the limit
        held.push(vec![1u8; 1 << 20]);
    }
    (StatusCode::OK, format!("holding {} MiB", held.len())).into_response()
}

async fn resolve(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(name) = q.get("name").cloned() else {
        return (StatusCode::BAD_REQUEST, "name required").into_response();
    };
    match tokio::net::lookup_host((name.as_str(), 0)).await {
        Ok(addrs) => {
            let text: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            (StatusCode::OK, text.join("\n")).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(p) = args.probe {
        return Ok(probe(p).await);
    }
    let state = AppState {
        ready: Arc::new(AtomicBool::new(true)),
    };
    let app = Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(readyz))
        .route("/env", get(env))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/kube", get(kube_get))
        .route("/exit", get(exit))
        .route("/ready", get(set_ready))
        .route("/alloc", get(alloc))
        .route("/resolve", get(resolve))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port)).await?;
    eprintln!("devcluster-testpod listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(std::process::ExitCode::SUCCESS)
}
