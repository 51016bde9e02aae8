//! Launching, driving and closing Chromium over CDP (chromiumoxide). Nothing here knows about
//! WhatsApp: the page scripts come from the driver.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::auth::Credentials;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventAuthRequired, EventRequestPaused, FailRequestParams,
    RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::memory::{
    PressureLevel, SimulatePressureNotificationParams,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::NavigateParams;
use chromiumoxide::cdp::browser_protocol::target::EventAttachedToTarget;
use chromiumoxide::cdp::js_protocol::heap_profiler::CollectGarbageParams;
use chromiumoxide::cdp::js_protocol::runtime::{
    AddBindingParams, EvaluateParams, EventBindingCalled, GetHeapUsageParams,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::driver::{NOTIFY_BINDING, Script};
use crate::error::{Error, Result};

/// Below this /dev/shm size Chromium's shared memory can run out (Docker's default is
/// 64 MiB): then `--disable-dev-shm-usage` makes it use /tmp instead. The operator mounts a
/// 256 MiB memory emptyDir, which one WhatsApp tab fits in.
const MIN_DEV_SHM: u64 = 128 * 1024 * 1024;

/// What the agent says when the proxy refused the credentials (log, and the status of a page
/// that did not load).
pub const PROXY_REFUSED: &str =
    "the proxy refused the credentials (WA_PROXY_USERNAME, WA_PROXY_PASSWORD)";

/// Resource types not needed to log in and keep the session: skipping them saves memory.
const BLOCKED_TYPES: [ResourceType; 3] =
    [ResourceType::Image, ResourceType::Media, ResourceType::Font];

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
    if let Some(js_flags) = js_flags(cfg) {
        args.push(format!("--js-flags={js_flags}"));
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
    // Last, so that a switch given here wins over the agent's own of the same name.
    args.extend(cfg.chromium_extra_args.split_whitespace().map(String::from));
    args
}

/// V8's flags (one `--js-flags` switch: Chromium keeps only the last one given).
fn js_flags(cfg: &Config) -> Option<String> {
    let mut flags = Vec::new();
    if cfg.js_heap_mb > 0 {
        // A runaway page then crashes its renderer (the agent relaunches and restores from
        // the profile) before the pod's memory limit kills everything.
        flags.push(format!("--max-old-space-size={}", cfg.js_heap_mb));
    }
    flags.extend(cfg.js_flags.split_whitespace().map(String::from));
    (!flags.is_empty()).then(|| flags.join(" "))
}

/// Size of /dev/shm from /proc/self/mountinfo (`size=` of the tmpfs), if it is limited.
fn dev_shm_size() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/dev/shm"))?;
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

/// The URL Chromium opens at launch: WhatsApp Web itself, so that its load overlaps Chromium's
/// own start and chromiumoxide's set-up of the tab instead of following them (about 300 ms of
/// a restore; docs/session-agent.md "The start path"). `None` (about:blank, then
/// `Page.navigate`) with proxy credentials: only the agent can answer the proxy's challenge,
/// once `Fetch` is enabled on the tab, so no request may leave before that. The resource block
/// ([`BLOCKED_TYPES`]) also starts only then: images or fonts the page asks for within its
/// first few hundred milliseconds still load (WhatsApp Web's own come after it has booted).
pub fn start_page(cfg: &Config) -> Option<&str> {
    proxy_credentials(cfg).is_none().then_some(cfg.url.as_str())
}

/// The proxy's user name and password, when both are configured.
fn proxy_credentials(cfg: &Config) -> Option<Credentials> {
    match (&cfg.proxy_username, &cfg.proxy_password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    }
}

/// A running Chromium with the one page the agent drives.
pub struct BrowserSession {
    browser: Browser,
    /// Chromium's browser process, leader of its own process group (see [`spawn_chromium`]).
    child: Child,
    page: Page,
    handler: JoinHandle<()>,
    aux: Vec<JoinHandle<()>>,
    /// Becomes true when the CDP connection ends (Chromium exited) or the page's renderer crashed.
    gone: watch::Receiver<bool>,
    /// Set when the proxy challenged a request again after the credentials were sent.
    proxy_refused: Arc<AtomicBool>,
    /// The page calls the notify binding on every change it sees.
    pub notifications: mpsc::Receiver<String>,
    cdp_timeout: Duration,
    /// The URL Chromium was started at ([`start_page`]), already loading in the tab.
    start_page: Option<String>,
    pub pid: Option<u32>,
}

impl BrowserSession {
    pub async fn launch(cfg: &Config, profile_dir: &Path) -> Result<Self> {
        let t0 = std::time::Instant::now();
        let start_page = start_page(cfg).map(String::from);
        let mut child = spawn_chromium(cfg, profile_dir, start_page.as_deref())?;
        let pid = child.id();
        let (ws_url, stderr) = match devtools_url(&mut child, LAUNCH_TIMEOUT).await {
            Ok(found) => found,
            Err(e) => {
                kill_group(&mut child).await;
                return Err(e);
            }
        };
        // Messages chromiumoxide cannot parse come back to the handler loop below (instead of a
        // WARN per message inside chromiumoxide), which tells the expected ones from the others.
        let handler_config = HandlerConfig {
            request_timeout: cfg.cdp_timeout,
            viewport: None,
            ignore_invalid_messages: false,
            // With proxy credentials chromiumoxide answers the challenges ([`intercept`]); this
            // keeps it from also continuing every paused request itself, which the agent does
            // (or fails, for the blocked resource types).
            request_intercept: proxy_credentials(cfg).is_some(),
            ..HandlerConfig::default()
        };
        let (browser, mut handler) =
            match Browser::connect_with_config(ws_url, handler_config).await {
                Ok(connected) => connected,
                Err(e) => {
                    kill_group(&mut child).await;
                    return Err(Error::Launch(format!(
                        "connecting to Chromium's DevTools: {e}"
                    )));
                }
            };
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "Chromium launched (DevTools connected)"
        );
        let (gone_tx, gone) = watch::channel(false);
        let gone_tx = Arc::new(gone_tx);
        let gone_tx2 = gone_tx.clone();
        let handler = tokio::spawn(async move {
            let mut warned = HashSet::new();
            while let Some(event) = handler.next().await {
                match event {
                    Ok(()) => {}
                    // Not fatal: the message is dropped and the handler goes on.
                    Err(CdpError::InvalidMessage(raw, e)) => invalid_message(&raw, &e, &mut warned),
                    // chromiumoxide's handler does not end its stream when the socket breaks
                    // (Chromium killed): it yields the error and goes on, every later command
                    // timing out. Without this the page looked hung and the relaunch waited out
                    // three CDP timeouts (~30 s) instead of starting at once.
                    Err(e) if connection_lost(&e) => {
                        tracing::debug!(error = %e, "CDP connection lost");
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "CDP handler event error"),
                }
            }
            let _ = gone_tx.send(true);
        });
        let proxy_refused = Arc::new(AtomicBool::new(false));
        let opened = open_page(&browser, cfg, gone_tx2, proxy_refused.clone()).await;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "page ready (bindings, listeners, interception)"
        );
        match opened {
            Ok((page, notifications, mut aux)) => {
                aux.push(stderr);
                Ok(Self {
                    browser,
                    child,
                    page,
                    handler,
                    aux,
                    gone,
                    proxy_refused,
                    notifications,
                    cdp_timeout: cfg.cdp_timeout,
                    start_page,
                    pid,
                })
            }
            Err(e) => {
                kill_group(&mut child).await;
                handler.abort();
                stderr.abort();
                Err(e)
            }
        }
    }

    /// Opens `url` in the tab: nothing to do when Chromium was started at it (the page is
    /// already loading, and the agent's poll waits for it to boot), else [`Self::navigate`].
    pub async fn open(&self, url: &str) -> Result<()> {
        if self.start_page.as_deref() == Some(url) {
            tracing::debug!("WhatsApp Web loading as Chromium's start page");
            return Ok(());
        }
        let t0 = std::time::Instant::now();
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
        tokio::time::timeout(self.cdp_timeout, self.page.execute(params))
            .await
            .map_err(|_| Error::ScriptTimeout {
                script: "Page.navigate",
                secs: self.cdp_timeout.as_secs_f64(),
            })??;
        Ok(())
    }

    pub async fn reload(&self) -> Result<()> {
        tokio::time::timeout(
            self.cdp_timeout,
            self.page
                .execute(chromiumoxide::cdp::browser_protocol::page::ReloadParams::default()),
        )
        .await
        .map_err(|_| Error::ScriptTimeout {
            script: "Page.reload",
            secs: self.cdp_timeout.as_secs_f64(),
        })??;
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
        let res = tokio::time::timeout(timeout, self.page.execute(params))
            .await
            .map_err(|_| Error::ScriptTimeout {
                script: script.name,
                secs: timeout.as_secs_f64(),
            })??;
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
        let t0 = std::time::Instant::now();
        let (cdp_timeout, pid, gone) = (self.cdp_timeout, self.pid, self.is_gone());
        let Self { browser, child, .. } = &mut self;
        let ask = async {
            let answered = !gone
                && matches!(
                    tokio::time::timeout(cdp_timeout, browser.close()).await,
                    Ok(Ok(_))
                );
            if !answered {
                tracing::info!("Browser.close not answered; sending Chromium SIGTERM");
                signal(pid, libc::SIGTERM, false);
            }
            std::future::pending::<()>().await
        };
        let exited = tokio::time::timeout(timeout, async {
            tokio::select! {
                status = child.wait() => status,
                _ = ask => unreachable!("pending"),
            }
        })
        .await;
        match exited {
            Ok(Ok(status)) => {
                tracing::info!(ms = t0.elapsed().as_millis() as u64, %status, "Chromium closed")
            }
            _ => {
                tracing::warn!(
                    ms = t0.elapsed().as_millis() as u64,
                    "Chromium did not close in time; killing it"
                );
                kill_group(&mut self.child).await;
            }
        }
        // Children that outlived the browser process (none after a clean close).
        signal(self.pid, libc::SIGKILL, true);
        self.stop_tasks();
    }

    /// Kills Chromium at once (hung or crashed browser), with all its child processes: a
    /// renderer stuck in JavaScript would not notice its browser process dying.
    pub async fn kill(&mut self) {
        kill_group(&mut self.child).await;
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

/// CDP events a newer Chromium sends in a shape chromiumoxide's protocol definitions
/// (chromiumoxide_cdp 0.9.1) cannot parse, and that neither chromiumoxide nor the agent uses:
/// dropping them loses nothing.
/// - `Network.requestWillBeSentExtraInfo`: Chromium (156, Debian's, here) sends `clientSecurityState` with
///   `localNetworkAccessRequestPolicy` where the definitions require
///   `privateNetworkRequestPolicy`; one per network request (several a second while
///   WhatsApp Web loads or syncs). chromiumoxide enables the Network domain for its own
///   request tracking but reads only `requestWillBeSent`/`responseReceived`/`loadingFinished`/
///   `loadingFailed`.
const UNUSED_UNPARSABLE_EVENTS: [&str; 1] = ["Network.requestWillBeSentExtraInfo"];

/// A CDP message chromiumoxide could not parse (and drops). An event listed in
/// [`UNUSED_UNPARSABLE_EVENTS`] is logged at debug; any other at WARN, once per method and
/// browser (then debug): it may be one the agent waits for (`Fetch.requestPaused`,
/// `Runtime.bindingCalled`, `Inspector.targetCrashed`), which would stall it.
fn invalid_message(raw: &str, error: &serde_json::Error, warned: &mut HashSet<String>) {
    let (method, expected) = classify_unparsable(raw);
    if expected || !warned.insert(method.clone()) {
        tracing::debug!(%method, %error, "CDP message chromiumoxide cannot parse; dropped");
    } else {
        let sample: String = raw.chars().take(300).collect();
        tracing::warn!(%method, %error, %sample, "CDP message chromiumoxide cannot parse; dropped (further ones of this method at debug)");
    }
}

/// The method of an unparsable CDP message, and whether it is one known to be harmless.
fn classify_unparsable(raw: &str) -> (String, bool) {
    #[derive(serde::Deserialize)]
    struct Head {
        method: Option<String>,
    }
    let method = serde_json::from_str::<Head>(raw)
        .ok()
        .and_then(|h| h.method)
        .unwrap_or_else(|| "(no method)".into());
    let expected = UNUSED_UNPARSABLE_EVENTS.contains(&method.as_str());
    (method, expected)
}

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts Chromium with the agent's flags and `--remote-debugging-port=0`, in a process group
/// of its own. A signal meant for the agent's group — the devcluster node and `tini -g` send
/// SIGTERM to the container's whole process group, a terminal's Ctrl-C goes to the
/// foreground group — then reaches only the agent, which closes Chromium in order
/// ([`BrowserSession::close`]). In the agent's group, Chromium's renderer and storage
/// service would get SIGTERM too and die at once, cutting the CDP connection and possibly
/// the last writes to the profile. `PR_SET_PDEATHSIG` makes Chromium die with the agent's
/// thread that started it (a tokio worker thread, which lives as long as the runtime: nothing
/// in the agent or its dependencies calls `block_in_place`, which would retire it), so a
/// SIGKILLed agent does not leave a browser behind on the profile; in a pod the container's
/// end takes the rest of the group along.
fn spawn_chromium(cfg: &Config, profile_dir: &Path, start_page: Option<&str>) -> Result<Child> {
    let mut cmd = Command::new(&cfg.chromium_path);
    cmd.args(chromium_args(cfg))
        .arg("--remote-debugging-port=0")
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        // After "--": a URL is never read as a switch.
        .args(start_page.map(|url| ["--", url]).into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| Error::Launch(format!("{}: {e}", cfg.chromium_path.display())))
}

/// Reads Chromium's stderr until it prints `DevTools listening on ws://…`; then keeps draining
/// it (at debug level, target `chromium`) in the returned task so Chromium never writes into
/// a full or closed pipe.
async fn devtools_url(child: &mut Child, timeout: Duration) -> Result<(String, JoinHandle<()>)> {
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| Error::Launch("Chromium's stderr is not piped".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut tail: VecDeque<String> = VecDeque::new();
    let found = tokio::time::timeout(timeout, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some((_, url)) = line.rsplit_once("listening on ")
                        && url.starts_with("ws")
                        && url.contains("devtools/browser")
                    {
                        return Ok(url.trim().to_string());
                    }
                    tail.push_back(line);
                    if tail.len() > 20 {
                        tail.pop_front();
                    }
                }
                Ok(None) => return Err("Chromium exited before DevTools was listening".to_string()),
                Err(e) => return Err(format!("reading Chromium's stderr: {e}")),
            }
        }
    })
    .await;
    let url = match found {
        Ok(Ok(url)) => url,
        Ok(Err(why)) => {
            let status = child
                .try_wait()
                .ok()
                .flatten()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            return Err(Error::Launch(format!(
                "{why}{status}: {}",
                Vec::from(tail).join("\n")
            )));
        }
        Err(_) => {
            return Err(Error::Launch(format!(
                "Chromium did not open DevTools within {timeout:?}: {}",
                Vec::from(tail).join("\n")
            )));
        }
    };
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "chromium", %line);
        }
    });
    Ok((url, drain))
}

/// Sends `sig` to Chromium's browser process, or with `group` to its whole process group
/// (Chromium leads its own group: [`spawn_chromium`]).
fn signal(pid: Option<u32>, sig: libc::c_int, group: bool) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill(2) on our own child (not reaped yet, so the PID is still ours) or on the
    // process group it leads.
    unsafe {
        libc::kill(if group { -pid } else { pid }, sig);
    }
}

/// SIGKILL to Chromium's whole process group (a renderer stuck in JavaScript would not notice
/// its browser process dying), then reaps the browser process.
async fn kill_group(child: &mut Child) {
    signal(child.id(), libc::SIGKILL, true);
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// Whether a CDP handler error means the connection to Chromium is gone (the socket failed
/// or closed), as opposed to one message or command going wrong.
fn connection_lost(e: &CdpError) -> bool {
    matches!(e, CdpError::Ws(_) | CdpError::Io(_))
}

async fn open_page(
    browser: &Browser,
    cfg: &Config,
    gone: Arc<watch::Sender<bool>>,
    proxy_refused: Arc<AtomicBool>,
) -> Result<(Page, mpsc::Receiver<String>, Aux)> {
    let t0 = std::time::Instant::now();
    let page = tokio::time::timeout(cfg.cdp_timeout, initial_tab(browser))
        .await
        .map_err(|_| Error::ScriptTimeout {
            script: "Target.attachToTarget (Chromium's initial tab)",
            secs: cfg.cdp_timeout.as_secs_f64(),
        })??;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "initial tab attached");
    let mut aux = Vec::new();
    // Page -> agent wake-ups (Runtime.addBinding survives navigations).
    page.execute(AddBindingParams::new(NOTIFY_BINDING)).await?;
    let mut calls = page.event_listener::<EventBindingCalled>().await?;
    let (tx, rx) = mpsc::channel(64);
    aux.push(tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            // A full queue already guarantees a wake-up; only a closed one ends the task.
            if call.name == NOTIFY_BINDING
                && tx.try_send(call.payload.clone()).is_err()
                && tx.is_closed()
            {
                break;
            }
        }
    }));
    // A crashed renderer ("Aw, Snap!") leaves the browser process alive but the page dead:
    // treat it like a browser crash (relaunch and restore from the profile).
    let mut crashed = page.event_listener::<EventTargetCrashed>().await?;
    aux.push(tokio::spawn(async move {
        if crashed.next().await.is_some() {
            tracing::warn!("the page's renderer crashed; relaunching");
            let _ = gone.send(true);
        }
    }));
    intercept(cfg, &page, &mut aux, proxy_refused).await?;
    if !cfg.memory_relief_interval.is_zero() {
        aux.push(tokio::spawn(relieve_memory(
            page.clone(),
            cfg.memory_relief_interval,
        )));
    }
    Ok((page, rx, aux))
}

/// The tab Chromium opens by itself at launch (about:blank), once chromiumoxide has attached
/// to it. The agent drives that tab instead of creating a second one and closing the first
/// (`Target.createTarget`, the load of its about:blank and the close: connected → page ready
/// took 590 ms at load 8, the initial tab 435 ms; docs/session-agent.md "Restore time").
/// chromiumoxide discovers and attaches to every page target by itself from the moment it
/// connects (`Target.setDiscoverTargets`, then `attachToTarget` and its own page set-up, which
/// runs before any command of ours reaches the tab), so the tab is only waited for here, never
/// fetched: `Browser::fetch_targets` would register the targets a second time and lose the
/// session chromiumoxide attached. `Browser::pages` lists only attached tabs; the listener is
/// registered before the first look, so an attach in between is not missed. Normally there is
/// one tab; should there be more (a restored session), the first is driven, the others closed.
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

/// Every `interval`: a critical memory-pressure signal to the page's renderer (Blink and V8
/// drop caches they can rebuild) and a full garbage collection, then the page's JavaScript
/// heap at debug level (what the page keeps alive). Failures are logged and retried on the
/// next tick: the page may be navigating, and a dead browser ends the task with the session.
async fn relieve_memory(page: Page, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let relieved = async {
            page.execute(SimulatePressureNotificationParams::new(
                PressureLevel::Critical,
            ))
            .await?;
            page.execute(CollectGarbageParams::default()).await?;
            page.execute(GetHeapUsageParams::default()).await
        };
        match tokio::time::timeout(interval, relieved).await {
            Ok(Ok(heap)) => tracing::debug!(
                used_mib = heap.result.used_size / 1048576.0,
                total_mib = heap.result.total_size / 1048576.0,
                "memory relief: the page's JavaScript heap after a full collection"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "memory relief"),
            Err(_) => tracing::debug!("memory relief: no answer"),
        }
    }
}

/// Fetch interception: blocks heavy resource types and answers the proxy's auth challenge.
/// Only requests matching the patterns are paused, so without proxy credentials ordinary
/// requests never wait on the agent.
async fn intercept(
    cfg: &Config,
    page: &Page,
    aux: &mut Aux,
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
    aux.push(tokio::spawn(async move {
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
    }));
    if let Some(credentials) = credentials.clone() {
        // chromiumoxide (0.9.1) answers every `Fetch.authRequired` of a page itself, before any
        // listener of ours sees it: without credentials of its own with `Default`, which
        // headless Chromium takes as a cancel, so the agent's own answer then failed ("Invalid
        // state for continueInterceptedRequest") and WhatsApp Web never loaded through an
        // authenticating proxy (tests/proxy.rs found it). So chromiumoxide is given the
        // credentials and answers: the first challenge of a request with them, a second one for
        // the same request (credentials refused) with a cancel, so a refusal is never retried.
        page.authenticate(credentials).await?;
        // The agent only watches, to tell a refusal: a page that then does not load says why
        // (the loop's load timeout; the relaunch is the incident's one WARN).
        let mut auth = page.event_listener::<EventAuthRequired>().await?;
        aux.push(tokio::spawn(async move {
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
        }));
    }
    let enable = fetch::EnableParams::builder()
        .patterns(patterns)
        .handle_auth_requests(credentials.is_some())
        .build();
    page.execute(enable).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chromiumoxide::cdp::events::CdpEventMessage;
    use chromiumoxide::types::Message;

    /// As Chromium 156 sends it (headers shortened): chromiumoxide cannot parse it, and it is
    /// the one expected.
    const EXTRA_INFO: &str = r#"{"method":"Network.requestWillBeSentExtraInfo","params":{"requestId":"19408.2","associatedCookies":[],"headers":{"Accept":"*/*"},"connectTiming":{"requestTime":3772.323393},"clientSecurityState":{"initiatorIsSecureContext":true,"initiatorIPAddressSpace":"Loopback","localNetworkAccessRequestPolicy":"PermissionBlock"},"siteHasCookieInOtherPartition":false},"sessionId":"3D9112EC4134E645FBAEDB81BBA73A83"}"#;

    fn config(extra: &[&str]) -> Config {
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

    #[test]
    fn chromium_starts_at_whatsapp_web_unless_a_proxy_needs_credentials_first() {
        let plain = config(&["--url", "https://web.whatsapp.com/"]);
        assert_eq!(start_page(&plain), Some("https://web.whatsapp.com/"));
        // A proxy without credentials takes the first request like any other.
        let proxied = config(&["--proxy-url", "http://proxy:3128"]);
        assert_eq!(start_page(&proxied), Some(proxied.url.as_str()));
        let authenticated = config(&[
            "--proxy-url",
            "http://proxy:3128",
            "--proxy-username",
            "u",
            "--proxy-password",
            "p",
        ]);
        assert_eq!(start_page(&authenticated), None);
    }

    #[test]
    fn js_flags_are_one_switch_with_the_heap_limit_first() {
        let args = chromium_args(&config(&["--js-flags", "--optimize-for-size  --foo"]));
        let js: Vec<_> = args
            .iter()
            .filter(|a| a.starts_with("--js-flags="))
            .collect();
        assert_eq!(
            js,
            ["--js-flags=--max-old-space-size=512 --optimize-for-size --foo"]
        );
        let args = chromium_args(&config(&["--js-heap-mb", "0"]));
        assert!(
            !args.iter().any(|a| a.starts_with("--js-flags")),
            "{args:?}"
        );
    }

    #[test]
    fn extra_switches_come_last_so_they_win() {
        let args = chromium_args(&config(&[
            "--chromium-extra-args",
            " --single-process --disable-features=Translate ",
        ]));
        assert_eq!(
            args[args.len() - 2..],
            ["--single-process", "--disable-features=Translate"]
        );
        // Chromium keeps the last value of a repeated switch: the agent's own comes first.
        let own = args
            .iter()
            .position(|a| a.starts_with("--disable-features=IsolateOrigins"))
            .expect("the agent's --disable-features");
        assert!(own < args.len() - 1);
    }

    #[test]
    fn a_broken_socket_ends_the_browser_a_failed_command_does_not() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(connection_lost(&CdpError::Io(reset)));
        assert!(!connection_lost(&CdpError::Timeout));
        assert!(!connection_lost(&CdpError::NoResponse));
    }

    #[test]
    fn unparsable_events_the_agent_does_not_use_are_expected_others_are_not() {
        assert!(
            serde_json::from_str::<Message<CdpEventMessage>>(EXTRA_INFO).is_err(),
            "chromiumoxide parses it now: drop it from the list"
        );
        assert_eq!(
            classify_unparsable(EXTRA_INFO),
            ("Network.requestWillBeSentExtraInfo".into(), true)
        );
        let paused = r#"{"method":"Fetch.requestPaused","params":{"requestId":"x","resourceType":"SomethingNew"}}"#;
        assert_eq!(
            classify_unparsable(paused),
            ("Fetch.requestPaused".into(), false)
        );
        assert_eq!(
            classify_unparsable("not json"),
            ("(no method)".into(), false)
        );
    }
}
