//! Chromium's command line, and why each switch is there (docs/session-agent.md "Chromium
//! command line (why)").

use crate::config::Config;

use super::interception::proxy_credentials;

/// Below this /dev/shm size Chromium's shared memory can run out (Docker's default is
/// 64 MiB): then `--disable-dev-shm-usage` makes it use /tmp instead. The operator mounts a
/// 256 MiB memory emptyDir, which one WhatsApp tab fits in.
const MIN_DEV_SHM: u64 = 128 * 1024 * 1024;

/// Chromium features switched off (`--disable-features`).
const DISABLED_FEATURES: [&str; 11] = [
    "IsolateOrigins",
    "site-per-process",
    "SpareRendererForSitePerProcess",
    "PreloadTopChromeWebUI",
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "Translate",
    "MediaRouter",
    "OptimizationHints",
    // Network time: clients2.google.com/time, asked at start-up.
    "NetworkTimeServiceQuerying",
    "AudioServiceOutOfProcess",
];

/// Chromium's command line. We pass our own list (chromiumoxide's defaults include
/// `--enable-automation`, which sets `navigator.webdriver` and which WhatsApp Web can see).
pub(super) fn chromium_args(cfg: &Config) -> Vec<String> {
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
        // renderer of its own); features the page does not need; and the audio service's own
        // process (WhatsApp Web plays notification sounds: muted, they would still start it).
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
    // Requests go to WhatsApp only, through `WA_PROXY_URL` when set (egress.rs). Proxy
    // credentials are never put on the command line (visible in /proc); they are answered to
    // the proxy's auth challenge over CDP instead.
    args.push(super::egress::pac_switch(cfg));
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

/// Size of the file system at /dev/shm (the tmpfs' `size=`), if there is one.
fn dev_shm_size() -> Option<u64> {
    let fs = nix::sys::statvfs::statvfs("/dev/shm").ok()?;
    fs.blocks().checked_mul(fs.fragment_size())
}

/// The URL Chromium opens at launch: WhatsApp Web itself, so that its load overlaps Chromium's
/// own start and chromiumoxide's set-up of the tab instead of following them
/// (docs/session-agent.md "The start path"). `None` (about:blank, then `Page.navigate`) with
/// proxy credentials: only the agent can answer the proxy's challenge, once `Fetch` is enabled
/// on the tab, so no request may leave before that. The resource block also starts only then:
/// images or fonts the page asks for within its first few hundred milliseconds still load
/// (WhatsApp Web's own come after it has booted).
pub(super) fn start_page(cfg: &Config) -> Option<&str> {
    proxy_credentials(cfg).is_none().then_some(cfg.url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::tests::config;

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
}
