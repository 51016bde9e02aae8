//! hub-alt — a MEASURING STICK, not product code.
//!
//! Issue 15 asks for wa-hub's peak RSS at 5,000 socket.io clients to be ≤ 0.33× the Node peer's.
//! wa-hub's remaining per-socket memory is inside engineioxide (a tokio mpsc queue whose first
//! block is allocated at creation, three tasks and three channels per socket: docs/hub.md,
//! "Memory per socket"). This server answers "what would a different websocket layer cost?":
//! the same hyper/axum stack and the same tungstenite version as wa-hub, speaking engine.io v4
//! / socket.io v5 over websocket only, with ONE task per socket and a queue that owns no memory
//! while empty. It does what bench/hub-fanout's clients need and nothing else: the open
//! packet, ping/pong, CONNECT (any `auth` accepted), `authenticated`, `subscribe-session` with
//! its ack and the session's status, and `session-status` broadcasts to a session's room. No
//! Kubernetes, no JWT, no polling transport, no binary, namespace "/" only.
//!
//! It takes wa-hub's command line (`--listen`, and ignores `--namespace`, `--jwt-secret-file`,
//! `--metrics-addr`) so `HUB_BIN=.../hub-alt node bench/hub-fanout/memory.mjs` measures it
//! unchanged. Results: bench/results/hub-memory-alt.json; reading: docs/hub.md.

mod conn;
mod protocol;
mod rooms;

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const USAGE: &str = "\
hub-alt: a bench-only engine.io/socket.io server, one task per socket (bench/hub-fanout/alt)

  --listen ADDR                 address to serve (required)
  --ws-read-buffer-bytes N      initial websocket read buffer (default 1024, as wa-hub)
  --ping-interval-ms N          engine.io ping interval (default 20000, as wa-hub)
  --ping-timeout-ms N           engine.io ping timeout (default 20000, as wa-hub)
  --queue-cap N                 frames queued per socket before dropping (default 128,
                                engineioxide's max_buffer_size)
  --broadcast-per-s N           status broadcasts per second, one session each, round robin
                                (default 0: none; memory.mjs measures without patch load)
  --namespace, --jwt-secret-file, --metrics-addr VALUE
                                accepted and ignored (wa-hub's flags, as memory.mjs passes them)";

pub struct Config {
    listen: SocketAddr,
    ws_read_buffer_bytes: usize,
    ping_interval: Duration,
    ping_timeout: Duration,
    queue_cap: usize,
    broadcast_per_s: u64,
    /// As wa-hub's `max_payload` (16 KiB): the client learns it in the open packet.
    max_payload: u64,
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        ws_read_buffer_bytes: 1024,
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(20),
        queue_cap: 128,
        broadcast_per_s: 0,
        max_payload: 16 * 1024,
    };
    let mut listen = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value}: {e}"))?,
                )
            }
            "--ws-read-buffer-bytes" => cfg.ws_read_buffer_bytes = num()? as usize,
            "--ping-interval-ms" => cfg.ping_interval = Duration::from_millis(num()?),
            "--ping-timeout-ms" => cfg.ping_timeout = Duration::from_millis(num()?),
            "--queue-cap" => cfg.queue_cap = num()?.max(1) as usize,
            "--broadcast-per-s" => cfg.broadcast_per_s = num()?,
            "--namespace" | "--jwt-secret-file" | "--metrics-addr" => {}
            _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
        }
    }
    cfg.listen = listen.ok_or_else(|| format!("--listen is required\n\n{USAGE}"))?;
    Ok(cfg)
}

/// What every socket task shares.
pub struct Shared {
    config: Config,
    rooms: rooms::Rooms,
    next: AtomicU64,
    /// Per-process random keys for the sids (unguessable enough for a bench; not a security
    /// boundary).
    seed: std::collections::hash_map::RandomState,
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A 16-character url-safe sid for socket `id` (`which`: 0 engine.io, 1 socket.io).
    fn sid(&self, id: u64, which: u8) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let (a, b) = (
            self.seed.hash_one((id, which, 0u8)),
            self.seed.hash_one((id, which, 1u8)),
        );
        (0..16)
            .map(|i| {
                let word = if i < 8 { a } else { b };
                char::from(ALPHABET[((word >> ((i % 8) * 6)) & 63) as usize])
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = parse_args()?;
    let listen = config.listen;
    let shared = Arc::new(Shared {
        config,
        rooms: rooms::Rooms::default(),
        next: AtomicU64::new(0),
        seed: Default::default(),
    });
    if shared.config.broadcast_per_s > 0 {
        tokio::spawn(drive(shared.clone()));
    }
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/socket.io/", get(upgrade))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("hub-alt listening on {listen}");
    // SIGTERM (memory.mjs's stop) or Ctrl-C ends the process; open websockets just drop.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        res = axum::serve(listener, app) => res?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// `GET /socket.io/?EIO=4&transport=websocket` with a websocket upgrade: answer 101 and hand
/// the connection to one spawned task. The request (and with it hyper's read buffer, which its
/// header values point into) is dropped here, not kept for the socket's life.
async fn upgrade(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let has = |kv: &str| query.split('&').any(|p| p == kv);
    if !has("EIO=4") || !has("transport=websocket") {
        // Polling is not implemented: the bench's clients use the websocket transport only.
        return (StatusCode::BAD_REQUEST, "websocket transport, EIO=4 only").into_response();
    }
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_ws)
    else {
        return (StatusCode::BAD_REQUEST, "websocket upgrade expected").into_response();
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    tokio::spawn(conn::run(hyper::upgrade::on(req), shared));
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}

/// Optional load: `--broadcast-per-s` status changes, each to one session's room in turn, with
/// the send time in `phoneNumber` as bench/hub-fanout's driver writes it.
async fn drive(shared: Arc<Shared>) {
    let every = Duration::from_secs_f64(1.0 / shared.config.broadcast_per_s as f64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for nth in 0usize.. {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        shared
            .rooms
            .broadcast_nth(nth, serde_json::json!(format!("t{now}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_distinct_and_url_safe() {
        let shared = Shared {
            config: Config {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ws_read_buffer_bytes: 1024,
                ping_interval: Duration::from_secs(1),
                ping_timeout: Duration::from_secs(1),
                queue_cap: 1,
                broadcast_per_s: 0,
                max_payload: 1,
            },
            rooms: rooms::Rooms::default(),
            next: AtomicU64::new(0),
            seed: Default::default(),
        };
        let (a, b, c) = (shared.sid(1, 0), shared.sid(1, 1), shared.sid(2, 0));
        assert_eq!(a.len(), 16);
        assert!(a != b && a != c && b != c);
        assert!(
            a.bytes()
                .all(|x| x.is_ascii_alphanumeric() || x == b'-' || x == b'_')
        );
    }
}
