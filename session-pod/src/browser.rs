//! Launching, driving and closing Chromium over CDP (chromiumoxide). Nothing here knows about
//! WhatsApp: the page scripts come from the driver.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, AuthChallengeResponse, AuthChallengeResponseResponse, AuthChallengeSource,
    ContinueRequestParams, ContinueWithAuthParams, EventAuthRequired, EventRequestPaused,
    FailRequestParams, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::NavigateParams;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EvaluateParams, EventBindingCalled};
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::driver::{NOTIFY_BINDING, Script};
use crate::error::{Error, Result};

/// Below this /dev/shm size Chromium's shared memory can run out (Docker's default is
/// 64 MiB): then `--disable-dev-shm-usage` makes it use /tmp instead. The operator mounts a
/// 256 MiB memory emptyDir, which one WhatsApp tab fits in.
const MIN_DEV_SHM: u64 = 128 * 1024 * 1024;

/// Resource types not needed to log in and keep the session: skipping them saves memory.
const BLOCKED_TYPES: [ResourceType; 3] = [ResourceType::Image, ResourceType::Media, ResourceType::Font];

/// Chromium features switched off (`--disable-features`).
const DISABLED_FEATURES: [&str; 10] = [
    "IsolateOrigins",
    "site-per-process",
    "SpareRendererForSitePerProcess",
    "PreloadTopChromeWebUI",
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "Translate",
    "MediaRouter",
    "OptimizationHints",
    "AudioServiceOutOfProcess",
];

/// Chromium's command line. We pass our own list (chromiumoxide's defaults include
/// `--enable-automation`, which sets `navigator.webdriver` and which WhatsApp Web can see).
pub fn chromium_args(cfg: &Config) -> Vec<String> {
    let mut args: Vec<String> = [
        // A desktop user agent: the headless one ("HeadlessChrome") is refused by WhatsApp Web.
        format!("--user-agent={}", cfg.user_agent),
        // navigator.webdriver = false, as whatsapp-web.js does.
        "--disable-blink-features=AutomationControlled".into(),
        // Memory (see docs/session-agent.md for the measured effect of each):
        // - one renderer: the agent drives one page of one site;
        "--renderer-process-limit=1".into(),
        // - no site isolation: the only site is WhatsApp Web and the pod is the security
        //   boundary (the sandbox is off anyway), so cross-site frames need no processes of
        //   their own;
        "--disable-site-isolation-trials".into(),
        // - the GPU and network services run inside the browser process instead of two
        //   processes of their own (no GPU work is done: --disable-gpu);
        "--in-process-gpu".into(),
        "--enable-features=NetworkServiceInProcess2".into(),
        // - a tiny HTTP cache (0 would mean "default size" to Chromium; WhatsApp Web keeps its
        //   app in Cache Storage anyway);
        "--disk-cache-size=1048576".into(),
        "--disable-gpu".into(),
        "--disable-software-rasterizer".into(),
        "--disable-extensions".into(),
        // No background traffic or work unrelated to the page.
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-breakpad".into(),
        "--disable-client-side-phishing-detection".into(),
        "--disable-domain-reliability".into(),
        // Features off: site isolation (above); the spare renderer Chromium keeps warm for the
        // next navigation and the omnibox WebUI it preloads even when headless (each a
        // renderer of ~170 MB RSS here); features the page does not need; and the audio
        // service's own process (WhatsApp Web plays notification sounds: muted, they would
        // still start it).
        format!("--disable-features={}", DISABLED_FEATURES.join(",")),
        "--metrics-recording-only".into(),
        "--password-store=basic".into(),
        "--use-mock-keychain".into(),
        // The page must keep running while nobody looks at it.
        "--disable-background-timer-throttling".into(),
        "--disable-renderer-backgrounding".into(),
        "--disable-backgrounding-occluded-windows".into(),
        // Chromium's sandbox needs user namespaces or a setuid helper, which a non-root pod
        // with all capabilities dropped does not have; the pod itself is the isolation
        // boundary. Without the sandbox the zygote only costs an extra process, so drop it.
        "--no-sandbox".into(),
        "--no-zygote".into(),
        "--headless".into(),
        "--hide-scrollbars".into(),
        "--mute-audio".into(),
        "--window-size=1280,800".into(),
    ]
    .into();
    if cfg.js_heap_mb > 0 {
        // A runaway page then crashes its renderer (the agent relaunches and restores from
        // the profile) before the pod's memory limit kills everything.
        args.push(format!("--js-flags=--max-old-space-size={}", cfg.js_heap_mb));
    }
    if dev_shm_size().is_some_and(|size| size < MIN_DEV_SHM) {
        args.push("--disable-dev-shm-usage".into());
    }
    if let Some(proxy) = &cfg.proxy_url {
        // Credentials are never put on the command line (visible in /proc); they are answered
        // to the proxy's auth challenge over CDP instead.
        args.push(format!("--proxy-server={proxy}"));
        args.push("--proxy-bypass-list=<-loopback>".into());
    }
    args
}

/// Size of /dev/shm from /proc/self/mountinfo (`size=` of the tmpfs), if it is limited.
fn dev_shm_size() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some("/dev/shm"))?;
    let opts = line.rsplit(' ').next()?;
    let size = opts.split(',').find_map(|o| o.strip_prefix("size="))?;
    let (num, mult) = match size.chars().last()? {
        'k' => (&size[..size.len() - 1], 1024),
        'm' => (&size[..size.len() - 1], 1024 * 1024),
        'g' => (&size[..size.len() - 1], 1024 * 1024 * 1024),
        _ => (size, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// A running Chromium with the one page the agent drives.
pub struct BrowserSession {
    browser: Browser,
    page: Page,
    handler: JoinHandle<()>,
    aux: Vec<JoinHandle<()>>,
    /// Becomes true when the CDP connection ends (Chromium exited) or the page's renderer crashed.
    gone: watch::Receiver<bool>,
    /// The page calls the notify binding on every change it sees.
    pub notifications: mpsc::Receiver<String>,
    cdp_timeout: Duration,
    pub pid: Option<u32>,
}

impl BrowserSession {
    pub async fn launch(cfg: &Config, profile_dir: &Path) -> Result<Self> {
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&cfg.chromium_path)
            .user_data_dir(profile_dir)
            .disable_default_args()
            .with_head(); // no chromiumoxide headless flags: --headless is in our own argument list
        // chromiumoxide prefixes every argument with "--" itself (and splits key=value), so
        // "--no-sandbox" given as is would reach Chromium as "----no-sandbox" and be ignored.
        for flag in chromium_args(cfg) {
            let flag = flag.trim_start_matches("--");
            builder = match flag.split_once('=') {
                Some((key, value)) => builder.arg((key, value)),
                None => builder.arg(flag),
            };
        }
        let config = builder
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(cfg.cdp_timeout)
            .viewport(None)
            .build()
            .map_err(Error::Launch)?;
        let t0 = std::time::Instant::now();
        let (mut browser, mut handler) = Browser::launch(config).await.map_err(|e| Error::Launch(e.to_string()))?;
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "Chromium launched (DevTools connected)");
        let pid = browser.get_mut_child().and_then(|c| c.as_mut_inner().id());
        let (gone_tx, gone) = watch::channel(false);
        let gone_tx = Arc::new(gone_tx);
        let gone_tx2 = gone_tx.clone();
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    // Deserialization hiccups are not fatal; a closed socket ends the stream.
                    tracing::debug!(error = %e, "CDP handler event error");
                }
            }
            let _ = gone_tx.send(true);
        });
        let opened = open_page(&browser, cfg, gone_tx2).await;
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "page ready (bindings, listeners, interception)");
        match opened {
            Ok((page, notifications, aux)) => Ok(Self {
                browser,
                page,
                handler,
                aux,
                gone,
                notifications,
                cdp_timeout: cfg.cdp_timeout,
                pid,
            }),
            Err(e) => {
                let _ = browser.kill().await;
                let _ = tokio::time::timeout(Duration::from_secs(5), browser.wait()).await;
                handler.abort();
                Err(e)
            }
        }
    }

    /// Starts loading `url` (does not wait for the load: the agent polls the page).
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let params = NavigateParams::builder().url(url).referrer("https://whatsapp.com/").build().map_err(Error::Launch)?;
        tokio::time::timeout(self.cdp_timeout, self.page.execute(params))
            .await
            .map_err(|_| Error::ScriptTimeout { script: "Page.navigate", secs: self.cdp_timeout.as_secs_f64() })??;
        Ok(())
    }

    pub async fn reload(&self) -> Result<()> {
        tokio::time::timeout(self.cdp_timeout, self.page.execute(chromiumoxide::cdp::browser_protocol::page::ReloadParams::default()))
            .await
            .map_err(|_| Error::ScriptTimeout { script: "Page.reload", secs: self.cdp_timeout.as_secs_f64() })??;
        Ok(())
    }

    /// Runs a driver script and returns its JSON result. A script not answering within the
    /// CDP timeout is reported as such (the page is hung or Chromium is gone).
    pub async fn run(&self, script: &Script, args: &[serde_json::Value]) -> Result<serde_json::Value> {
        let params = EvaluateParams::builder()
            .expression(script.call(args))
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(|message| Error::Script { script: script.name, message })?;
        let res = tokio::time::timeout(self.cdp_timeout, self.page.execute(params))
            .await
            .map_err(|_| Error::ScriptTimeout { script: script.name, secs: self.cdp_timeout.as_secs_f64() })??;
        if let Some(ex) = &res.result.exception_details {
            let message = ex.exception.as_ref().and_then(|e| e.description.clone()).unwrap_or_else(|| ex.text.clone());
            return Err(Error::Script { script: script.name, message });
        }
        Ok(res.result.result.value.clone().unwrap_or(serde_json::Value::Null))
    }

    /// True once Chromium's CDP connection is gone.
    pub fn is_gone(&self) -> bool {
        *self.gone.borrow()
    }

    /// Becomes true when Chromium exits, its CDP connection drops or the page crashes.
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.clone()
    }

    /// Closes Chromium the clean way (Browser.close) so the profile is flushed to disk, and
    /// waits for the process to exit; kills it if that takes longer than `timeout`.
    pub async fn close(mut self, timeout: Duration) {
        let graceful = async {
            let _ = self.browser.close().await;
            self.browser.wait().await
        };
        match tokio::time::timeout(timeout, graceful).await {
            Ok(Ok(_)) => tracing::info!("Chromium closed"),
            _ => {
                tracing::warn!("Chromium did not close in time; killing it");
                let _ = self.browser.kill().await;
            }
        }
        self.stop_tasks();
    }

    /// Kills Chromium at once (hung or crashed browser), with all its child processes: a
    /// renderer stuck in JavaScript would not notice its browser process dying.
    pub async fn kill(&mut self) {
        let children = self.pid.map(descendants).unwrap_or_default();
        let _ = self.browser.kill().await;
        for pid in children {
            // SAFETY: kill(2) with a PID we just read as a descendant of our own child; the
            // worst case of a reused PID is a failed or misdirected signal within our own
            // process tree's lifetime window, which is milliseconds.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.browser.wait()).await;
        self.stop_tasks();
    }

    fn stop_tasks(&mut self) {
        self.handler.abort();
        for t in self.aux.drain(..) {
            t.abort();
        }
    }
}

type Aux = Vec<JoinHandle<()>>;

async fn open_page(browser: &Browser, cfg: &Config, gone: Arc<watch::Sender<bool>>) -> Result<(Page, mpsc::Receiver<String>, Aux)> {
    let t0 = std::time::Instant::now();
    let page = tokio::time::timeout(cfg.cdp_timeout, browser.new_page("about:blank"))
        .await
        .map_err(|_| Error::ScriptTimeout { script: "Target.createTarget", secs: cfg.cdp_timeout.as_secs_f64() })??;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "page target created");
    // The initial tab Chromium opens by itself would cost a renderer: close it.
    if let Ok(pages) = browser.pages().await {
        for other in pages {
            if other.target_id() != page.target_id() {
                let _ = other.close().await;
            }
        }
    }
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "initial tab closed");
    let mut aux = Vec::new();
    // Page -> agent wake-ups (Runtime.addBinding survives navigations).
    page.execute(AddBindingParams::new(NOTIFY_BINDING)).await?;
    let mut calls = page.event_listener::<EventBindingCalled>().await?;
    let (tx, rx) = mpsc::channel(64);
    aux.push(tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            // A full queue already guarantees a wake-up; only a closed one ends the task.
            if call.name == NOTIFY_BINDING && tx.try_send(call.payload.clone()).is_err() && tx.is_closed() {
                break;
            }
        }
    }));
    // A crashed renderer ("Aw, Snap!") leaves the browser process alive but the page dead:
    // treat it like a browser crash (relaunch and restore from the profile).
    let mut crashed = page.event_listener::<EventTargetCrashed>().await?;
    aux.push(tokio::spawn(async move {
        if crashed.next().await.is_some() {
            tracing::error!("the page's renderer crashed");
            let _ = gone.send(true);
        }
    }));
    intercept(cfg, &page, &mut aux).await?;
    Ok((page, rx, aux))
}

/// Fetch interception: blocks heavy resource types and answers the proxy's auth challenge.
/// Only requests matching the patterns are paused, so without proxy credentials ordinary
/// requests never wait on the agent.
async fn intercept(cfg: &Config, page: &Page, aux: &mut Aux) -> Result<()> {
    let credentials = match (&cfg.proxy_username, &cfg.proxy_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        _ => None,
    };
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
    aux.push(tokio::spawn(async move {
        while let Some(ev) = paused.next().await {
            let res = if block && BLOCKED_TYPES.contains(&ev.resource_type) {
                p.execute(FailRequestParams::new(ev.request_id.clone(), ErrorReason::BlockedByClient)).await.map(|_| ())
            } else {
                p.execute(ContinueRequestParams::new(ev.request_id.clone())).await.map(|_| ())
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "answering a paused request");
            }
        }
    }));
    if let Some((user, pass)) = credentials.clone() {
        let mut auth = page.event_listener::<EventAuthRequired>().await?;
        let p = page.clone();
        let creds = Arc::new((user, pass));
        aux.push(tokio::spawn(async move {
            // A second challenge for the same request means the credentials were refused.
            let mut tried = HashSet::new();
            while let Some(ev) = auth.next().await {
                let is_proxy = ev.auth_challenge.source == Some(AuthChallengeSource::Proxy);
                let response = if is_proxy && tried.insert(ev.request_id.inner().clone()) {
                    AuthChallengeResponse {
                        response: AuthChallengeResponseResponse::ProvideCredentials,
                        username: Some(creds.0.clone()),
                        password: Some(creds.1.clone()),
                    }
                } else {
                    let response = if is_proxy { AuthChallengeResponseResponse::CancelAuth } else { AuthChallengeResponseResponse::Default };
                    AuthChallengeResponse { response, username: None, password: None }
                };
                if let Err(e) = p.execute(ContinueWithAuthParams::new(ev.request_id.clone(), response)).await {
                    tracing::debug!(error = %e, "answering an auth challenge");
                }
            }
        }));
    }
    let enable = fetch::EnableParams::builder().patterns(patterns).handle_auth_requests(credentials.is_some()).build();
    page.execute(enable).await?;
    Ok(())
}

/// All descendants of `root` (from /proc/<pid>/stat parent links).
fn descendants(root: u32) -> Vec<u32> {
    let mut links: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
                // The command name is parenthesised and may contain spaces: parse after it.
                s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()))
            });
            if let Some(ppid) = ppid {
                links.push((pid, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &links {
            if *ppid == parent && !out.contains(pid) {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}
