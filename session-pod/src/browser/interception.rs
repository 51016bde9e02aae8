//! Request interception (CDP `Fetch`): heavy resource types blocked, the proxy's auth
//! challenge answered with its credentials, and a refusal of them told.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chromiumoxide::Page;
use chromiumoxide::auth::Credentials;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventAuthRequired, EventRequestPaused, FailRequestParams,
    RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use futures::StreamExt;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::Result;

/// What the agent says when the proxy refused the credentials (log, and the status of a page
/// that did not load).
pub const PROXY_REFUSED: &str =
    "the proxy refused the credentials (WA_PROXY_USERNAME, WA_PROXY_PASSWORD)";

/// Resource types not needed to log in and keep the session: skipping them saves memory.
const BLOCKED_TYPES: [ResourceType; 3] =
    [ResourceType::Image, ResourceType::Media, ResourceType::Font];

/// The proxy's user name and password, when both are configured.
pub(super) fn proxy_credentials(cfg: &Config) -> Option<Credentials> {
    match (&cfg.proxy_username, &cfg.proxy_password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    }
}

/// Enables interception on `page`, its listeners running in `tasks`. Only requests matching
/// the patterns are paused, so without proxy credentials ordinary requests never wait on the
/// agent. `proxy_refused` is set when the proxy challenges a request again after the
/// credentials were sent.
pub(super) async fn enable(
    cfg: &Config,
    page: &Page,
    tasks: &mut JoinSet<()>,
    proxy_refused: Arc<AtomicBool>,
) -> Result<()> {
    let credentials = proxy_credentials(cfg);
    let mut patterns = Vec::new();
    if cfg.block_resources {
        for t in BLOCKED_TYPES {
            patterns.push(RequestPattern::builder().resource_type(t).build());
        }
    }
    if credentials.is_some() {
        patterns = vec![RequestPattern::builder().url_pattern("*").build()];
    }
    if patterns.is_empty() {
        return Ok(());
    }
    let block = cfg.block_resources;
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let p = page.clone();
    tasks.spawn(async move {
        while let Some(ev) = paused.next().await {
            let res = if block && BLOCKED_TYPES.contains(&ev.resource_type) {
                p.execute(FailRequestParams::new(
                    ev.request_id.clone(),
                    ErrorReason::BlockedByClient,
                ))
                .await
                .map(|_| ())
            } else {
                p.execute(ContinueRequestParams::new(ev.request_id.clone()))
                    .await
                    .map(|_| ())
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "answering a paused request");
            }
        }
    });
    if let Some(credentials) = credentials.clone() {
        // chromiumoxide (0.9.1) answers every `Fetch.authRequired` of a page itself, before any
        // listener of ours sees it (without credentials of its own with `Default`, which
        // headless Chromium takes as a cancel), so an answer of the agent's would come second
        // and fail ("Invalid state for continueInterceptedRequest"). So chromiumoxide is given
        // the credentials and answers: the first challenge of a request with them, a second
        // one for the same request (credentials refused) with a cancel, so a refusal is never
        // retried.
        page.authenticate(credentials).await?;
        // The agent only watches, to tell a refusal: a page that then does not load says why
        // (the loop's load timeout; the relaunch is the incident's one WARN).
        let mut auth = page.event_listener::<EventAuthRequired>().await?;
        tasks.spawn(async move {
            let mut challenged = HashSet::new();
            while let Some(ev) = auth.next().await {
                let source = ev.auth_challenge.source.clone();
                if challenged.insert(ev.request_id.inner().clone()) {
                    tracing::debug!(?source, url = %ev.request.url, "auth challenge answered with the proxy credentials");
                } else {
                    proxy_refused.store(true, Ordering::Relaxed);
                    tracing::info!(?source, url = %ev.request.url, "{PROXY_REFUSED}");
                }
            }
        });
    }
    let enable = fetch::EnableParams::builder()
        .patterns(patterns)
        .handle_auth_requests(credentials.is_some())
        .build();
    page.execute(enable).await?;
    Ok(())
}
