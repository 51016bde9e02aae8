//! Command line and environment configuration (`wa-hub --help`).

use std::net::SocketAddr;
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

    /// Seconds an unauthenticated socket may stay connected.
    #[arg(long, env = "HUB_AUTH_TIMEOUT_SECS", default_value_t = 10)]
    pub auth_timeout_secs: u64,

    /// Failed logins allowed per username and per client address within the window (429 beyond).
    #[arg(long, env = "HUB_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

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
    /// are closed on accept. Behind a proxy the hub sees the proxy's address, not the
    /// client's: set 0 (no limit) there and limit clients at the proxy.
    #[arg(long, env = "HUB_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
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
