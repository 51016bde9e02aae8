//! wa-session: the session agent. One per WhatsAppSession, in the session's pod: runs WhatsApp
//! Web in Chromium with the login kept on the data volume and publishes QR and state to the
//! CR's status (docs/design.md §2, §6).

mod backup;
mod browser;
mod canary;
mod config;
mod driver;
mod error;
mod http;
mod messages;
mod metrics;
mod oom;
mod own_cr;
mod profile;
mod publisher;
mod session;
mod state;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use crds::WhatsAppSession;
use kube::Api;
use runtime::shutdown::Shutdown;

use crate::config::Config;
use crate::error::{Error, Result};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "canary") {
        return canary_main();
    }
    let cfg = Config::parse();
    // chromiumoxide's handler logs a broken CDP socket (Chromium gone) at ERROR, and then
    // hands the same error to our handler loop (browser/handler.rs), which ends the browser
    // and says so once, at the level of what it means (a relaunch, WARN).
    // kube-client's duplicates are off too (runtime::logs::QUIET_LIBRARIES).
    init_logs(
        &runtime::logs::default_directives("chromiumoxide=warn,chromiumoxide::handler=off"),
        std::io::stdout,
    );
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "wa-session failed");
            ExitCode::FAILURE
        }
    }
}

/// JSON logs to `writer`, filtered by `RUST_LOG` (else `default`).
fn init_logs<W>(default: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_writer(writer)
        .with_env_filter(runtime::logs::filter_or(default))
        .init();
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            None
        }
    }
}

/// `wa-session canary [--url URL] [--driver-dir DIR] [--timeout 90s] [--json]`: the report on
/// stdout; exit 0 when every assumption holds, 1 when some do not, 2 when it could not run.
fn canary_main() -> ExitCode {
    let args = canary::CanaryArgs::parse_from(
        std::iter::once("wa-session canary".into()).chain(std::env::args_os().skip(2)),
    );
    // Only problems on stderr: the report is the output.
    init_logs("warn,chromiumoxide=error", std::io::stderr);
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(canary::run(&args)) {
        Ok(report) => {
            let printed = if args.json {
                serde_json::to_string_pretty(&report).map(|j| j + "\n")
            } else {
                Ok(report.text())
            };
            match printed {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot print the report");
                    return ExitCode::from(2);
                }
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "canary could not run");
            ExitCode::from(2)
        }
    }
}

/// The message API until `shutdown`; a failure to listen is logged (the session itself goes on:
/// linking and status do not need it).
async fn serve_messages(
    cfg: Config,
    client: kube::Client,
    page: messages::page::PageClient,
    requests: tokio::sync::watch::Receiver<own_cr::Requests>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let journal_dir = cfg.data_dir.join("messages").join("idempotency");
    let journal = match messages::journal::Journal::open(&journal_dir, cfg.message_keys_max) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the idempotency journal; the message API is off");
            return;
        }
    };
    let limits = watch_limits(requests);
    let sender = messages::send::Sender::new(
        format!("{}/{}", cfg.session_namespace, cfg.session_name),
        page,
        journal.clone(),
        limits,
        messages::send::Deadlines {
            send: cfg.message_send_timeout,
            queue: cfg.message_queue_wait,
        },
        cfg.message_jitter,
    );
    let auth: Arc<dyn messages::auth::Auth> = match cfg.messages_caller.clone() {
        Some(caller) => Arc::new(messages::auth::TokenReviews::new(
            client,
            cfg.messages_audience.clone(),
            caller,
        )),
        None => {
            tracing::warn!("WA_MESSAGES_CALLER is not set: the message API refuses every caller");
            Arc::new(messages::auth::NoCaller)
        }
    };
    // Keys older than 24 h go hourly, besides at start and when the journal is full.
    let expiry = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let j = journal.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || j.expire()).await {
                tracing::warn!(error = %e, "expiring idempotency keys failed");
            }
        }
    });
    let api = messages::api::Api {
        sender: Arc::new(sender),
        auth,
    };
    if let Err(e) = messages::api::serve(cfg.messages_addr, api, shutdown.cancelled_owned()).await {
        tracing::error!(addr = %cfg.messages_addr, error = %e, "the message API failed");
    }
    expiry.abort();
}

/// The send rate from the CR's watch, as the message API reads it.
fn watch_limits(
    mut requests: tokio::sync::watch::Receiver<own_cr::Requests>,
) -> tokio::sync::watch::Receiver<messages::rate::Limits> {
    let (tx, rx) = tokio::sync::watch::channel(requests.borrow().send_rate);
    tokio::spawn(async move {
        while requests.changed().await.is_ok() {
            let limits = requests.borrow().send_rate;
            tx.send_if_modified(|cur| std::mem::replace(cur, limits) != limits);
        }
    });
    rx
}

async fn run(cfg: Config) -> Result<()> {
    tracing::info!(
        session = %cfg.session_name,
        namespace = %cfg.session_namespace,
        url = %cfg.url,
        data_dir = %cfg.data_dir.display(),
        proxy = cfg.proxy_url.is_some(),
        "wa-session starting"
    );
    let driver = driver::Driver::load(cfg.driver_dir.as_deref())?;
    // In a pod: in-cluster config (the session's own ServiceAccount); outside: KUBECONFIG.
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::KubeConfig(e.to_string()))?;
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), &cfg.session_namespace);
    let cr = own_cr::get(&api, &cfg.session_namespace, &cfg.session_name).await?;

    let metrics = metrics::Metrics::default();
    // Nothing to receive from before a page is linked: only a linked page that cannot be
    // listened to reads 0 (the WhatsAppSessionNotReceiving alert).
    metrics.message_listeners.set(1);
    let mut registry = prometheus_client::registry::Registry::with_prefix("wa_session");
    metrics.register(&mut registry);
    let health = Arc::new(http::Health::default());
    health.beat();
    // SIGTERM or SIGINT: the agent closes Chromium in order and exits.
    let shutdown = Shutdown::on_signals().map_err(Error::Signals)?;
    // an OOM kill in the container restarts the whole container (docs/session-agent.md,
    // "Memory limit"), once per agent
    oom::watch_container();

    let http = http::serve(
        cfg.http_addr,
        health.clone(),
        Arc::new(registry),
        shutdown.token(),
    );
    let http_task = tokio::spawn(async move {
        // Without probes the pod would be restarted anyway; say why right away.
        if let Err(e) = http.await {
            tracing::error!(error = %e, "health and metrics server failed");
        }
    });
    // The API server away (its restart, etcd's) is one streak for the watch and the status
    // writes (docs/session-agent.md "Logs"); the watch resumes without a word, so a probe
    // (a GET of the own CR, which the session's Role allows) tells when it is back.
    let outage = Arc::new(runtime::outage::Outage::new("the Kubernetes API"));
    {
        let (api, name) = (api.clone(), cfg.session_name.clone());
        outage.spawn_probe(Duration::from_secs(2), move || {
            let (api, name) = (api.clone(), name.clone());
            async move { api.get_metadata(&name).await.is_ok() }
        });
    }
    let requests = own_cr::watch_requests(
        api.clone(),
        &cfg.session_name,
        own_cr::Requests::of(&cr),
        outage.clone(),
    );
    // The message API's requests queue while the loop is busy with the page; events keep the
    // last ones for late subscribers.
    let (page_client, page_server) = messages::page::channel(64, 1024);
    let messages_task = tokio::spawn(serve_messages(
        cfg.clone(),
        client.clone(),
        page_client,
        requests.clone(),
        shutdown.token(),
    ));
    let publisher = publisher::Publisher::spawn(
        api,
        cfg.session_name.clone(),
        Some(&cr),
        cfg.status_coalesce,
        metrics.clone(),
        outage,
    );
    let machine = state::Machine::new(
        cr.status.as_ref(),
        state::Timings {
            qr_first_ttl: cfg.qr_first_ttl,
            qr_next_ttl: cfg.qr_next_ttl,
            takeover_delay: cfg.takeover_delay,
        },
    );
    let profile = profile::Profile::new(&cfg.data_dir);
    let backups = backup::Backups::new(
        &cfg.data_dir,
        profile.dir(),
        backup::Limits {
            keep: cfg.backup_keep,
            max_bytes: cfg.backup_max_mb.saturating_mul(1 << 20),
            settle: cfg.backup_settle,
        },
    );
    let agent = session::Agent {
        cfg,
        driver,
        profile,
        backups,
        backup_task: None,
        machine,
        publisher,
        requests,
        health,
        metrics,
        shutdown: shutdown.token(),
        page: page_server,
        sends: Vec::new(),
    };
    agent.run().await;
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), messages_task).await;
    tracing::info!("wa-session stopped");
    Ok(())
}
