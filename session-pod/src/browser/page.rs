//! The one page the agent drives: Chromium's initial tab, with the driver's notify binding,
//! the crash listener, interception and memory relief set up on it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::target::EventAttachedToTarget;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::driver::NOTIFY_BINDING;
use crate::driver::messages::MESSAGE_BINDING;
use crate::error::{Error, Result};

use super::{interception, memory_relief};

/// The page's calls of the driver's bindings.
pub(super) struct Bindings {
    /// Wake-ups (a full queue already guarantees one: extra calls are dropped).
    pub notify: mpsc::Receiver<String>,
    /// Message events, each kept (unbounded: the session loop drains them on every turn).
    pub messages: mpsc::UnboundedReceiver<String>,
}

/// Sets up the page; its listeners run in `tasks`. Returns it with the receivers of its
/// bindings' calls. A renderer crash is said on `gone`.
pub(super) async fn open(
    browser: &Browser,
    cfg: &Config,
    gone: Arc<watch::Sender<bool>>,
    proxy_refused: Arc<AtomicBool>,
    tasks: &mut JoinSet<()>,
) -> Result<(Page, Bindings)> {
    let t0 = std::time::Instant::now();
    let page = super::within(
        "Target.attachToTarget (Chromium's initial tab)",
        cfg.cdp_timeout,
        initial_tab(browser),
    )
    .await?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "initial tab attached");
    // Page -> agent wake-ups (Runtime.addBinding survives navigations).
    page.execute(AddBindingParams::new(NOTIFY_BINDING)).await?;
    page.execute(AddBindingParams::new(MESSAGE_BINDING)).await?;
    let mut calls = page.event_listener::<EventBindingCalled>().await?;
    let (tx, rx) = mpsc::channel(64);
    let (msg_tx, msg_rx) = mpsc::unbounded_channel();
    tasks.spawn(async move {
        while let Some(call) = calls.next().await {
            if call.name == MESSAGE_BINDING {
                if msg_tx.send(call.payload.clone()).is_err() {
                    break;
                }
            // A full queue already guarantees a wake-up; only a closed one ends the task.
            } else if call.name == NOTIFY_BINDING
                && tx.try_send(call.payload.clone()).is_err()
                && tx.is_closed()
            {
                break;
            }
        }
    });
    // A crashed renderer ("Aw, Snap!") leaves the browser process alive but the page dead:
    // treat it like a browser crash (relaunch and restore from the profile).
    let mut crashed = page.event_listener::<EventTargetCrashed>().await?;
    tasks.spawn(async move {
        if crashed.next().await.is_some() {
            tracing::warn!("the page's renderer crashed; relaunching");
            let _ = gone.send(true);
        }
    });
    interception::enable(cfg, &page, tasks, proxy_refused).await?;
    if !cfg.memory_relief_interval.is_zero() {
        tasks.spawn(memory_relief::run(page.clone(), cfg.memory_relief_interval));
    }
    Ok((
        page,
        Bindings {
            notify: rx,
            messages: msg_rx,
        },
    ))
}

/// The tab Chromium opens by itself at launch (about:blank), once chromiumoxide has attached
/// to it. The agent drives that tab instead of creating a second one and closing the first
/// (`Target.createTarget`, the load of its about:blank and the close; docs/session-agent.md
/// "The start path"). chromiumoxide discovers and attaches to every page target by itself from
/// the moment it connects (`Target.setDiscoverTargets`, then `attachToTarget` and its own page
/// set-up, which runs before any command of ours reaches the tab), so the tab is only waited
/// for here, never fetched: `Browser::fetch_targets` would register the targets a second time
/// and lose the session chromiumoxide attached. `Browser::pages` lists only attached tabs; the
/// listener is registered before the first look, so an attach in between is not missed.
/// Normally there is one tab; should there be more (a restored session), the first is driven,
/// the others closed.
async fn initial_tab(browser: &Browser) -> Result<Page> {
    let mut attached = browser.event_listener::<EventAttachedToTarget>().await?;
    loop {
        let mut pages = browser.pages().await?.into_iter();
        if let Some(page) = pages.next() {
            for other in pages {
                let _ = other.close().await;
            }
            return Ok(page);
        }
        if attached.next().await.is_none() {
            return Err(Error::Launch(
                "the CDP connection ended before Chromium's initial tab was attached".into(),
            ));
        }
    }
}
