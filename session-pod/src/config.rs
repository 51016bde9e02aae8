//! Command line and environment (docs/design.md §6). The operator sets the `WA_*` variables in the
//! session pod; every flag can also be given on the command line for local runs and tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "wa-session",
    version,
    about = "Session agent: drives WhatsApp Web in Chromium over CDP and publishes the session's state to its WhatsAppSession",
    after_help = "`wa-session canary --help`: check WhatsApp Web against the page driver's assumptions, linking nothing."
)]
pub struct Config {
    /// Name of the WhatsAppSession this agent serves.
    #[arg(long, env = "WA_SESSION_NAME")]
    pub session_name: String,

    /// Namespace of the WhatsAppSession.
    #[arg(long, env = "WA_SESSION_NAMESPACE")]
    pub session_namespace: String,

    /// WhatsApp Web URL (the fake's URL in tests).
    #[arg(long, env = "WA_URL", default_value = "https://web.whatsapp.com/")]
    pub url: String,

    /// Data volume; the Chromium profile (the saved login) lives in `<dir>/profile`.
    #[arg(long, env = "WA_DATA_DIR", default_value = "/data")]
    pub data_dir: PathBuf,

    /// Chromium executable. Default: Debian's real binary when present, else its launcher.
    #[arg(long, env = "CHROMIUM_PATH", default_value_os_t = default_chromium())]
    pub chromium_path: PathBuf,

    /// V8 old-space limit of the page's renderer in MiB (`--js-flags=--max-old-space-size`);
    /// 0 leaves V8's default, which is sized from the host's memory, not the pod's limit.
    #[arg(long, env = "WA_JS_HEAP_MB", default_value_t = 512)]
    pub js_heap_mb: u32,

    /// More V8 flags for the page's renderer, space separated, added to `--js-flags` after the
    /// heap limit, e.g. `--optimize-for-size` (docs/session-agent.md lists what each saved).
    #[arg(
        long,
        env = "WA_JS_FLAGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub js_flags: String,

    /// More Chromium switches, space separated, added after the agent's own; Chromium takes the
    /// last value of a repeated switch, so one here overrides the agent's (e.g.
    /// `--disable-features=…`). For levers that trade safety for memory, such as
    /// `--single-process` (one crash then takes the whole browser down): see docs/session-agent.md.
    #[arg(
        long,
        env = "WA_CHROMIUM_EXTRA_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub chromium_extra_args: String,

    /// Every this long, tell the page's renderer memory is short (CDP
    /// `Memory.simulatePressureNotification`, critical) and collect its JavaScript garbage
    /// (`HeapProfiler.collectGarbage`), so an idle session gives back what it no longer uses;
    /// `0s` never does.
    #[arg(long, env = "WA_MEMORY_RELIEF_INTERVAL", default_value = "0s", value_parser = humantime::parse_duration)]
    pub memory_relief_interval: Duration,

    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "WA_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Address of the message API (`POST /v1/messages`, only for the hub; container port
    /// `messages`), apart from the probes and `/metrics`.
    #[arg(long, env = "WA_MESSAGES_ADDR", default_value = "0.0.0.0:8081")]
    pub messages_addr: SocketAddr,

    /// The audience the hub's token must be issued for (a projected ServiceAccount token).
    #[arg(
        long,
        env = "WA_MESSAGES_AUDIENCE",
        default_value = "whatsapp.leadmaster.io/messages"
    )]
    pub messages_audience: String,

    /// The only caller of the message API: the hub's ServiceAccount as the API server names it
    /// (`system:serviceaccount:<namespace>:<name>`). Unset: every caller is refused.
    #[arg(long, env = "WA_MESSAGES_CALLER")]
    pub messages_caller: Option<String>,

    /// How long the page may take to look a number up and hand a message to WhatsApp's server
    /// before the caller gets 504 `TIMEOUT` (a retry with the same key is safe).
    #[arg(long, env = "WA_MESSAGE_SEND_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub message_send_timeout: Duration,

    /// The longest a send waits for the session's rate (`spec.messaging`) before it is refused
    /// with 429 and `Retry-After`.
    #[arg(long, env = "WA_MESSAGE_QUEUE_WAIT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub message_queue_wait: Duration,

    /// Random delay added to each send, at most half the rate's interval.
    #[arg(long, env = "WA_MESSAGE_JITTER", default_value = "2s", value_parser = humantime::parse_duration)]
    pub message_jitter: Duration,

    /// Idempotency keys remembered (24 h each) at most: above the highest rate's day
    /// (60 a minute), so only a fault fills it.
    #[arg(long, env = "WA_MESSAGE_KEYS_MAX", default_value_t = 100_000)]
    pub message_keys_max: usize,

    /// Directory with page-driver script overrides (`<name>.js`, e.g. a mounted ConfigMap);
    /// scripts not found there use the built-in versions.
    #[arg(long, env = "WA_DRIVER_DIR")]
    pub driver_dir: Option<PathBuf>,

    /// Block images, media and fonts in Chromium to save memory and bandwidth.
    #[arg(long, env = "WA_BLOCK_RESOURCES", default_value_t = true, action = clap::ArgAction::Set)]
    pub block_resources: bool,

    /// Egress proxy for Chromium: http://, https:// or socks5:// host:port (from spec.proxy).
    #[arg(long, env = "WA_PROXY_URL")]
    pub proxy_url: Option<String>,

    /// Proxy user name (from spec.proxy.credentialsSecretRef); never logged.
    #[arg(long, env = "WA_PROXY_USERNAME", hide_env_values = true)]
    pub proxy_username: Option<String>,

    /// Proxy password (from spec.proxy.credentialsSecretRef); never logged.
    #[arg(long, env = "WA_PROXY_PASSWORD", hide_env_values = true)]
    pub proxy_password: Option<String>,

    /// User agent Chromium presents; WhatsApp Web rejects headless user agents.
    #[arg(
        long,
        env = "WA_USER_AGENT",
        default_value = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/145.0.0.0 Safari/537.36"
    )]
    pub user_agent: String,

    /// Lifetime announced in qrExpiresAt for the first QR of a round.
    #[arg(long, env = "WA_QR_FIRST_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub qr_first_ttl: Duration,

    /// Lifetime announced in qrExpiresAt for every following QR of a round.
    #[arg(long, env = "WA_QR_NEXT_TTL", default_value = "20s", value_parser = humantime::parse_duration)]
    pub qr_next_ttl: Duration,

    /// Delay before taking the session back when WhatsApp reports CONFLICT (opened elsewhere).
    #[arg(long, env = "WA_TAKEOVER_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub takeover_delay: Duration,

    /// How often the page state is polled (page events also trigger an immediate read).
    #[arg(long, env = "WA_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// Deadline of a CDP command (launch, navigation, page actions such as logout or takeover).
    /// The page's liveness has its own deadlines (below).
    #[arg(long, env = "WA_CDP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub cdp_timeout: Duration,

    /// How long a page snapshot (a tiny script a healthy page answers in milliseconds) may
    /// take before the page counts as silent: from the first silent one the session is
    /// `connecting` (nobody vouches for it) until the page answers again.
    #[arg(long, env = "WA_PAGE_ANSWER_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub page_answer_timeout: Duration,

    /// A settled page (linked and synced, or showing a QR) silent this long is hung: Chromium
    /// is relaunched and the login restored from the profile.
    #[arg(long, env = "WA_HANG_AFTER", default_value = "6s", value_parser = humantime::parse_duration)]
    pub hang_after: Duration,

    /// The same while the page loads, boots, restores a login or syncs its history, when the
    /// real WhatsApp Web can block its main thread for seconds (a false relaunch would start
    /// all of it again).
    #[arg(long, env = "WA_HANG_AFTER_LOADING", default_value = "30s", value_parser = humantime::parse_duration)]
    pub hang_after_loading: Duration,

    /// How long the page may take to expose WhatsApp's modules after loading.
    #[arg(long, env = "WA_PAGE_LOAD_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub page_load_timeout: Duration,

    /// Quiet period used to coalesce status changes (a new QR is published at once).
    #[arg(long, env = "WA_STATUS_COALESCE", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub status_coalesce: Duration,

    /// Time allowed for closing Chromium on SIGTERM (keep below the pod's grace period).
    #[arg(long, env = "WA_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Last-good copies of the login kept in `<data-dir>/backups` (taken once connected,
    /// put back when the profile loses the login); 0 disables backups.
    #[arg(long, env = "WA_BACKUP_KEEP", default_value_t = 2)]
    pub backup_keep: usize,

    /// A login store (IndexedDB, Local Storage, cookies) larger than this is not copied (MiB).
    #[arg(long, env = "WA_BACKUP_MAX_MB", default_value_t = 256)]
    pub backup_max_mb: u64,

    /// How long after connecting (and between attempts, while the profile keeps changing)
    /// the agent waits before copying the login.
    #[arg(long, env = "WA_BACKUP_SETTLE", default_value = "3s", value_parser = humantime::parse_duration)]
    pub backup_settle: Duration,
}

/// Debian's `/usr/bin/chromium` is a shell launcher that sources `/etc/chromium.d/*`, which
/// adds flags of its own (`--enable-gpu-rasterization`, `--load-extension=…`,
/// `--enable-remote-extensions`, …) and costs a shell; the binary it ends up running is
/// `/usr/lib/chromium/chromium`. Launch that directly when it is there.
const CHROMIUM_CANDIDATES: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

fn default_chromium() -> PathBuf {
    CHROMIUM_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(CHROMIUM_CANDIDATES[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        let parse = |value: &str| {
            Config::try_parse_from([
                "wa-session",
                "--session-name",
                "s",
                "--session-namespace",
                "n",
                "--poll-interval",
                value,
            ])
            .map(|c| c.poll_interval)
        };
        assert_eq!(parse("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse("1m30s").ok(), Some(Duration::from_secs(90)));
        assert!(parse("3").is_err(), "a bare number has no unit");
    }

    #[test]
    fn defaults_follow_design() {
        let c = Config::try_parse_from([
            "wa-session",
            "--session-name",
            "s",
            "--session-namespace",
            "n",
        ])
        .expect("parses");
        assert_eq!(c.data_dir, PathBuf::from("/data"));
        assert!(
            CHROMIUM_CANDIDATES
                .iter()
                .any(|p| c.chromium_path == PathBuf::from(p)),
            "{:?}",
            c.chromium_path
        );
        assert_eq!(c.js_heap_mb, 512);
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.messages_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(c.messages_caller, None);
        assert!(!c.user_agent.contains("Headless"));
        assert_eq!(c.page_answer_timeout, Duration::from_secs(2));
        assert_eq!(c.hang_after, Duration::from_secs(6));
        assert_eq!(c.hang_after_loading, Duration::from_secs(30));
    }
}
