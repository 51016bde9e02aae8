//! Command line and environment configuration (`wa-hub --help`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(name = "wa-hub", version, about = "REST + socket.io hub for WhatsAppSession resources", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Read a password on stdin and print its argon2id hash (for the users file).
    HashPassword,
    /// Serve (the default when no subcommand is given).
    Serve,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Public address (REST, socket.io, frontend): what the Ingress exposes.
    #[arg(long, env = "HUB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of `/metrics`, kept off the public listener so the Ingress never exposes it.
    #[arg(long, env = "HUB_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// Namespace whose WhatsAppSessions are served; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// YAML users file for POST /api/auth/login: `users: [{username, passwordHash, tenants, role}]`.
    #[arg(long, env = "HUB_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// File holding the HS256 secret (pins the algorithm to HS256).
    #[arg(
        long,
        env = "HUB_JWT_SECRET_FILE",
        conflicts_with = "jwt_public_key_file"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM RSA public key verifying tokens (pins the algorithm to RS256).
    #[arg(long, env = "HUB_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// PEM RSA private key used to issue RS256 tokens from /api/auth/login (without it, login
    /// is disabled in RS256 mode and tokens come from an external issuer).
    #[arg(
        long,
        env = "HUB_JWT_PRIVATE_KEY_FILE",
        requires = "jwt_public_key_file"
    )]
    pub jwt_private_key_file: Option<PathBuf>,

    /// Required `iss` claim (also written into issued tokens).
    #[arg(long, env = "HUB_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim (also written into issued tokens).
    #[arg(long, env = "HUB_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Lifetime of tokens issued by login, in seconds.
    #[arg(long, env = "HUB_TOKEN_TTL_SECS", default_value_t = 12 * 3600)]
    pub token_ttl_secs: u64,

    /// Built frontend served at / with SPA fallback (default: frontend/dist if present).
    #[arg(long, env = "HUB_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Minimum seconds between two new QR rounds of one session (429 within).
    #[arg(long, env = "HUB_QR_RATE_LIMIT_SECS", default_value_t = 60)]
    pub qr_rate_limit_secs: u64,

    /// QR and logout requests a caller (a token's `sub`) may make per minute on average (at
    /// most a third of them, at least 5, at once); beyond that 429 with Retry-After. Each reads
    /// the session from the API server and may write it.
    #[arg(long, env = "HUB_SESSION_REQUESTS_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub session_requests_per_minute: u32,

    /// Seconds an unauthenticated socket may stay connected.
    #[arg(long, env = "HUB_AUTH_TIMEOUT_SECS", default_value_t = 10)]
    pub auth_timeout_secs: u64,

    /// Failed logins allowed per username from one client address within the window (429
    /// beyond); one client address gets 4× this over all usernames.
    #[arg(long, env = "HUB_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

    /// Failed logins allowed per username over all client addresses within the window: bounds a
    /// guesser spread over many addresses (only such a guesser can lock an account out).
    #[arg(long, env = "HUB_LOGIN_MAX_FAILURES_PER_USER", default_value_t = 50)]
    pub login_max_failures_per_user: u32,

    /// Password checks (argon2) run at once; each holds a buffer of the users file's argon2
    /// memory cost (19 MiB with `hash-password`'s defaults) for the hub's lifetime.
    #[arg(long, env = "HUB_LOGIN_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub login_workers: u32,

    /// Logins that may wait for a password check; more are answered 503 with Retry-After.
    #[arg(long, env = "HUB_LOGIN_QUEUE", default_value_t = 32)]
    pub login_queue: u32,

    /// Proxies in front of the hub (addresses or CIDRs, comma-separated: the Ingress
    /// controller's pods, the nodes behind a NodePort): only from them is `X-Forwarded-For`
    /// believed when the login throttle counts by client address.
    #[arg(long, env = "HUB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Seconds between two reads of the users file: users added and tokens revoked
    /// (`tokensNotBefore`) take effect within this, without a restart.
    #[arg(long, env = "HUB_USERS_RELOAD_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub users_reload_secs: u64,

    /// Window of the login throttle, in seconds.
    #[arg(long, env = "HUB_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub login_window_secs: u64,

    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, env = "HUB_BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,

    /// Initial read buffer of each websocket, in bytes: one per connected browser, so it is
    /// most of a socket's memory. Client events are JSON of a few hundred bytes; a larger
    /// message grows the buffer to its size (up to 16 KiB, the payload limit).
    #[arg(long, env = "HUB_WS_READ_BUFFER_BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(64..=1024 * 1024))]
    pub ws_read_buffer_bytes: u32,

    /// Seconds a client has to send a request head, counted from when the connection waits for
    /// one: a new connection, or an idle keep-alive one between requests (so this is also the
    /// idle timeout). Longer than the 60 s idle timeout of the proxies usually in front
    /// (ingress-nginx's upstream keep-alive, cloud load balancers), so the proxy closes its idle
    /// connections first and never sends a request into one the hub is closing.
    #[arg(long, env = "HUB_HEADER_READ_TIMEOUT_SECS", default_value_t = 65,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,

    /// Seconds a client has to send a whole request body, counted from its request head
    /// (408 `TIMEOUT` beyond). Bodies are at most --body-limit-bytes.
    #[arg(long, env = "HUB_BODY_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,

    /// Open connections on the public listener, websockets included; more are closed on
    /// accept. About 20 KiB each as a socket (docs/hub.md "Memory per socket"): 8192 stay well
    /// under the chart's 256Mi limit. 0: no limit.
    #[arg(long, env = "HUB_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,

    /// Open connections from one client address (IPv6: one /64), websockets included; more
    /// are closed on accept. The `--trusted-proxies` have none (they carry many clients);
    /// behind a proxy that is not one of them, set 0 (no limit) and limit clients at the proxy.
    #[arg(long, env = "HUB_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,

    /// The hub's token for the session agents' message API: a projected ServiceAccount token
    /// for the agents' audience, re-read on every send (the kubelet rotates it). Unset: sending
    /// messages answers 503.
    #[arg(long, env = "HUB_AGENT_TOKEN_FILE")]
    pub agent_token_file: Option<std::path::PathBuf>,

    /// The session agents' message API port (container port `messages`).
    #[arg(long, env = "HUB_AGENT_PORT", default_value_t = 8081)]
    pub agent_port: u16,

    /// How long a send may take through the session's agent, its rate queue (20 s) and the
    /// page's hand-over (30 s) included, before the caller gets 504 `TIMEOUT`.
    #[arg(long, env = "HUB_AGENT_SEND_TIMEOUT", default_value = "55s", value_parser = humantime::parse_duration)]
    pub agent_send_timeout: Duration,
}

impl ServeArgs {
    pub fn qr_rate_limit(&self) -> Duration {
        Duration::from_secs(self.qr_rate_limit_secs)
    }
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }
    pub fn login_window(&self) -> Duration {
        Duration::from_secs(self.login_window_secs)
    }
    /// The per-caller budget of session requests: (per minute, burst).
    pub fn session_request_budget(&self) -> (NonZeroU32, NonZeroU32) {
        let rate = NonZeroU32::new(self.session_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new((rate.get() / 3).max(5)).unwrap_or(NonZeroU32::MIN);
        (rate, burst)
    }
    /// What each connection of the public listener may take (`crate::server`).
    pub fn connection_limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
        }
    }
    /// The static directory: explicit, else `frontend/dist` when it exists.
    pub fn static_dir(&self) -> Option<PathBuf> {
        match &self.static_dir {
            Some(d) => Some(d.clone()),
            None => {
                let d = PathBuf::from("frontend/dist");
                d.join("index.html").is_file().then_some(d)
            }
        }
    }
}
