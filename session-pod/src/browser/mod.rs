//! Chromium driven over CDP (chromiumoxide): [`BrowserSession`] launches it with the one page
//! the agent drives, runs the driver's scripts there and closes it. Nothing here knows about
//! WhatsApp: the page scripts come from the driver. One concern per module:
//! - `command_line`: Chromium's switches and why each is there, and the page it starts at;
//! - `process`: the Chromium process, in a process group of its own, killed on drop;
//! - `devtools`: the DevTools address Chromium prints on stderr;
//! - `handler`: chromiumoxide's handler loop and the CDP messages it cannot parse;
//! - `page`: the initial tab, the notify binding and the renderer-crash listener;
//! - `interception`: blocked resource types and the proxy's auth challenge;
//! - `memory_relief`: the periodic memory-pressure signal and garbage collection.

mod command_line;
mod devtools;
mod egress;
mod handler;
mod interception;
mod memory_relief;
mod page;
mod process;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::page::{NavigateParams, ReloadParams};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::driver::Script;
use crate::error::{Error, Result};

pub use interception::PROXY_REFUSED;
use process::Chromium;

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A call of one of the driver's bindings.
pub enum BindingCall {
    /// The notify binding: something changed, read the page.
    Notify,
    /// A message event (JSON, `driver::messages`).
    Message(String),
}

/// A running Chromium with the one page the agent drives. Dropping it kills Chromium.
pub struct BrowserSession {
    browser: Browser,
    chromium: Chromium,
    page: Page,
    /// What serves this browser — the CDP handler loop, the stderr drain, the page's listeners
    /// and memory relief —, aborted when its life ends.
    tasks: JoinSet<()>,
    /// Becomes true when the CDP connection ends (Chromium exited) or the page's renderer crashed.
    gone: watch::Receiver<bool>,
    /// Set when the proxy challenged a request again after the credentials were sent.
    proxy_refused: Arc<AtomicBool>,
    /// The page calls the notify binding on every change it sees.
    notifications: mpsc::Receiver<String>,
    /// The page's message events (`driver::messages::MESSAGE_BINDING`).
    messages: mpsc::UnboundedReceiver<String>,
    cdp_timeout: Duration,
    /// The URL Chromium was started at, already loading in the tab.
    start_page: Option<String>,
}

impl BrowserSession {
    /// Starts Chromium on `profile_dir` and sets up its page. On any failure Chromium is
    /// killed (the process guard's drop) and the tasks started so far aborted.
    pub async fn launch(cfg: &Config, profile_dir: &Path) -> Result<Self> {
        let t0 = Instant::now();
        let start_page = command_line::start_page(cfg).map(String::from);
        let mut chromium = Chromium::spawn(cfg, profile_dir, start_page.as_deref())?;
        let mut tasks = JoinSet::new();
        let ws_url = devtools::address(&mut chromium, LAUNCH_TIMEOUT, &mut tasks).await?;
        let (browser, cdp) = Browser::connect_with_config(ws_url, handler::config(cfg))
            .await
            .map_err(|e| Error::Launch(format!("connecting to Chromium's DevTools: {e}")))?;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "Chromium launched (DevTools connected)"
        );
        let (gone_tx, gone) = watch::channel(false);
        let gone_tx = Arc::new(gone_tx);
        tasks.spawn(handler::run(cdp, gone_tx.clone()));
        let proxy_refused = Arc::new(AtomicBool::new(false));
        let opened = page::open(&browser, cfg, gone_tx, proxy_refused.clone(), &mut tasks).await;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "page ready (bindings, listeners, interception)"
        );
        let (page, bindings) = opened?;
        Ok(Self {
            browser,
            chromium,
            page,
            tasks,
            gone,
            proxy_refused,
            notifications: bindings.notify,
            messages: bindings.messages,
            cdp_timeout: cfg.cdp_timeout,
            start_page,
        })
    }

    /// The browser process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.chromium.pid()
    }

    /// Opens `url` in the tab: nothing to do when Chromium was started at it (the page is
    /// already loading, and the agent's poll waits for it to boot), else [`Self::navigate`].
    pub async fn open(&self, url: &str) -> Result<()> {
        if self.start_page.as_deref() == Some(url) {
            tracing::debug!("WhatsApp Web loading as Chromium's start page");
            return Ok(());
        }
        let t0 = Instant::now();
        self.navigate(url).await?;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "WhatsApp Web loaded (Page.navigate answered)"
        );
        Ok(())
    }

    /// Loads `url`. chromiumoxide answers `Page.navigate` only once the page's `load` event
    /// has fired (its navigation watcher), within the CDP timeout; the agent then polls the page.
    async fn navigate(&self, url: &str) -> Result<()> {
        let params = NavigateParams::builder()
            .url(url)
            .referrer("https://whatsapp.com/")
            .build()
            .map_err(Error::Launch)?;
        within("Page.navigate", self.cdp_timeout, self.page.execute(params)).await?;
        Ok(())
    }

    pub async fn reload(&self) -> Result<()> {
        let reload = self.page.execute(ReloadParams::default());
        within("Page.reload", self.cdp_timeout, reload).await?;
        Ok(())
    }

    /// Runs a driver script and returns its JSON result. A script not answering within the
    /// CDP timeout is reported as such (the page is hung or Chromium is gone).
    pub async fn run(
        &self,
        script: &Script,
        args: &[serde_json::Value],
    ) -> Result<serde_json::Value> {
        self.run_within(script, args, self.cdp_timeout).await
    }

    /// As [`Self::run`], answered within `timeout` (the page snapshot has a deadline of its
    /// own: the hang watchdog's, `state/watchdog.rs`).
    pub async fn run_within(
        &self,
        script: &Script,
        args: &[serde_json::Value],
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let params = EvaluateParams::builder()
            .expression(script.call(args))
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(|message| Error::Script {
                script: script.name,
                message,
            })?;
        let res = within(script.name, timeout, self.page.execute(params)).await?;
        if let Some(ex) = &res.result.exception_details {
            let message = ex
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| ex.text.clone());
            return Err(Error::Script {
                script: script.name,
                message,
            });
        }
        Ok(res
            .result
            .result
            .value
            .clone()
            .unwrap_or(serde_json::Value::Null))
    }

    /// The page's next call of a driver binding, message events first (`None` once the page
    /// is gone).
    pub async fn binding_call(&mut self) -> Option<BindingCall> {
        tokio::select! {
            biased;
            Some(payload) = self.messages.recv() => Some(BindingCall::Message(payload)),
            Some(_) = self.notifications.recv() => Some(BindingCall::Notify),
            else => None,
        }
    }

    /// Whether the proxy refused the credentials (a request challenged again after them): a
    /// page that does not load says why.
    pub fn proxy_refused(&self) -> bool {
        self.proxy_refused.load(Ordering::Relaxed)
    }

    /// True once Chromium's CDP connection is gone.
    pub fn is_gone(&self) -> bool {
        *self.gone.borrow()
    }

    /// Becomes true when Chromium exits, its CDP connection drops or the page crashes.
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.clone()
    }

    /// Closes Chromium the clean way and waits for it to exit: `Browser.close` over CDP, after
    /// which Chromium shuts its processes down in order (the storage service writes the
    /// login's IndexedDB/LevelDB and cookies to the profile) and exits. Without a CDP answer
    /// (the connection is gone) Chromium is sent SIGTERM, which it also handles as a clean
    /// shutdown. Its exit is awaited all along, so a Chromium that is already gone ends the
    /// wait at once; only one still running after `timeout` is killed (its whole process group).
    pub async fn close(mut self, timeout: Duration) {
        let t0 = Instant::now();
        let (cdp_timeout, gone) = (self.cdp_timeout, self.is_gone());
        let terminate = self.chromium.terminator();
        let Self {
            browser, chromium, ..
        } = &mut self;
        let exited = tokio::time::timeout(timeout, async {
            let ask = async {
                let answered = !gone
                    && matches!(
                        tokio::time::timeout(cdp_timeout, browser.close()).await,
                        Ok(Ok(_))
                    );
                if !answered {
                    tracing::info!("Browser.close not answered; sending Chromium SIGTERM");
                    terminate();
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                status = chromium.wait() => status,
                _ = ask => unreachable!("pending"),
            }
        })
        .await;
        match exited {
            Ok(Ok(status)) => {
                tracing::info!(ms = t0.elapsed().as_millis() as u64, %status, "Chromium closed")
            }
            _ => tracing::warn!(
                ms = t0.elapsed().as_millis() as u64,
                "Chromium did not close in time; killing it"
            ),
        }
        // Also the children that outlived the browser process (none after a clean close).
        self.kill().await;
    }

    /// Kills Chromium at once (hung or crashed browser), with all its child processes: a
    /// renderer stuck in JavaScript would not notice its browser process dying.
    pub async fn kill(&mut self) {
        self.chromium.kill().await;
        self.tasks.abort_all();
    }
}

/// `call`'s result, or [`Error::ScriptTimeout`] naming `script` when it takes longer than
/// `timeout` (the page is hung or Chromium is gone).
async fn within<T, E: Into<Error>>(
    script: &'static str,
    timeout: Duration,
    call: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Error::ScriptTimeout {
            script,
            secs: timeout.as_secs_f64(),
        })?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The agent's configuration with `extra` flags.
    pub(super) fn config(extra: &[&str]) -> Config {
        use clap::Parser;
        let mut argv = vec![
            "wa-session",
            "--session-name",
            "s",
            "--session-namespace",
            "n",
        ];
        argv.extend_from_slice(extra);
        Config::try_parse_from(argv).expect("parses")
    }
}
