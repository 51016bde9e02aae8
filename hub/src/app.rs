//! The hub's shared state and its two HTTP servers: the public one (REST + socket.io + static
//! files) and the metrics one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socketioxide::SocketIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::Jwt;
use crate::auth::password::PasswordChecker;
use crate::auth::throttle::{Limits, LoginThrottle};
use crate::auth::users::UsersSource;
use crate::client_addr::TrustedProxies;
use crate::config::ServeArgs;
use crate::metrics::Metrics;
use crate::qr_image::QrRenderer;
use crate::ratelimit::{QrLimiter, RequestBudget};
use crate::tenancy::Tenancy;
use crate::view::View;

/// The largest socket.io message the hub accepts, on either transport (docs/hub.md).
pub const SOCKET_MESSAGE_LIMIT: usize = 16 * 1024;

pub struct Hub {
    pub config: ServeArgs,
    pub client: kube::Client,
    pub view: View,
    pub tenancy: Tenancy,
    pub jwt: Jwt,
    pub users: Option<UsersSource>,
    pub passwords: PasswordChecker,
    pub login_throttle: LoginThrottle,
    pub trusted_proxies: TrustedProxies,
    pub qr: QrRenderer,
    pub metrics: Arc<Metrics>,
    pub limiter: QrLimiter,
    pub budget: RequestBudget,
    pub agents: crate::agents::Agents,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Jwt(#[from] crate::auth::jwt::JwtError),
    #[error(transparent)]
    Users(#[from] crate::auth::users::UsersError),
    #[error("--trusted-proxies: {0}")]
    TrustedProxies(String),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics server: {0}")]
    Metrics(#[from] runtime::metrics::ServeError),
}

/// Re-read the users file now and then (sockets whose tokens it revoked lose their
/// subscriptions at `socket::expiry`'s next sweep).
async fn reload_users(hub: Arc<Hub>) {
    let Some(source) = hub.users.as_ref() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(hub.config.users_reload_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match source.reload() {
            Ok(false) => failing = false,
            Ok(true) => {
                failing = false;
                tracing::info!(users = source.current().len(), "users file reloaded");
            }
            // Once per run of failures: a Secret being rewritten can be unreadable for a moment.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "users file not reloaded; the users loaded before stay");
            }
            Err(_) => {}
        }
    }
}

/// Build the hub from configuration and serve until `shutdown` resolves.
pub async fn run(
    config: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let jwt = Jwt::from_files(
        config.jwt_secret_file.as_deref(),
        config.jwt_public_key_file.as_deref(),
        config.jwt_private_key_file.as_deref(),
        config.jwt_issuer.clone(),
        config.jwt_audience.clone(),
    )?;
    let users = match &config.users_file {
        Some(p) => Some(UsersSource::load(p)?),
        None => None,
    };
    let trusted_proxies =
        TrustedProxies::parse(&config.trusted_proxies).map_err(StartError::TrustedProxies)?;
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::unbounded_channel();
    let view = View::start(
        client.clone(),
        config.namespace.clone(),
        metrics.clone(),
        tx,
    );
    let tenancy = Tenancy::start(client.clone(), config.namespace.as_deref());
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        algorithm = ?jwt.algorithm(),
        login = users.is_some() && jwt.can_issue(),
        users = users.as_ref().map(|u| u.current().len()).unwrap_or(0),
        "starting wa-hub"
    );
    let hub = Arc::new(Hub {
        login_throttle: LoginThrottle::new(Limits {
            per_pair: config.login_max_failures,
            per_client: config.login_max_failures.saturating_mul(4),
            per_user: config.login_max_failures_per_user,
            window: config.login_window(),
        }),
        passwords: PasswordChecker::new(config.login_workers as usize, config.login_queue as usize),
        trusted_proxies,
        limiter: QrLimiter::new(config.qr_rate_limit()),
        budget: {
            let (rate, burst) = config.session_request_budget();
            RequestBudget::new(rate, burst)
        },
        qr: QrRenderer::new(),
        agents: crate::agents::Agents::new(
            config.agent_token_file.clone(),
            config.agent_port,
            config.agent_send_timeout,
        ),
        config,
        client,
        view,
        tenancy,
        jwt,
        users,
        metrics,
    });

    let (io_layer, io) = SocketIo::builder()
        .with_state(hub.clone())
        // Payloads are tiny JSON objects; anything large is abuse. One limit for both
        // transports: a polling request body (413 beyond), and a websocket message and frame
        // (the connection is closed). engineioxide's websocket defaults are 64 MiB / 16 MiB,
        // and tungstenite reserves a frame's announced length before reading it, so the frame
        // limit is what keeps an announced 8 MB frame from costing 8 MB.
        .max_payload(SOCKET_MESSAGE_LIMIT as u64)
        .ws_max_message_size(SOCKET_MESSAGE_LIMIT)
        .ws_max_frame_size(SOCKET_MESSAGE_LIMIT)
        .ping_interval(Duration::from_secs(20))
        .ws_read_buffer_size(hub.config.ws_read_buffer_bytes as usize)
        .build_layer();
    crate::socket::register(&io);
    tokio::spawn(crate::socket::push::run(io.clone(), hub.clone(), rx));
    tokio::spawn(reload_users(hub.clone()));
    tokio::spawn(crate::socket::expiry::run(io.clone(), hub.clone()));

    // The outer layer runs first: the request head is copied before engineioxide keeps it.
    // The security headers go on every answer, socket.io's included.
    let router = crate::routes::router(hub.clone())
        .layer(io_layer)
        .layer(axum::middleware::map_request(
            crate::socket::detach::detach_head,
        ))
        .layer(axum::middleware::map_response(crate::security_headers::add));
    let addr = hub.config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!(%addr, "listening");
    // The metrics server stops with the public one.
    let stopped = CancellationToken::new();
    let metrics = runtime::metrics::serve(
        hub.config.metrics_addr,
        runtime::metrics::router(hub.clone()),
        stopped.clone().cancelled_owned(),
    );
    let limits = hub.config.connection_limits();
    let public = async move {
        crate::server::serve(
            listener,
            router,
            limits,
            hub.trusted_proxies.clone(),
            &hub.metrics,
            shutdown,
            async move {
                stopped.cancel();
                // Open websockets would hold a graceful shutdown forever: close them first.
                io.close().await;
            },
        )
        .await;
        Ok::<(), StartError>(())
    };
    tokio::try_join!(public, async { metrics.await.map_err(StartError::from) }).map(|_| ())
}
