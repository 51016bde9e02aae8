//! wa-session behind an egress proxy (`spec.proxy`: `WA_PROXY_URL`, `WA_PROXY_USERNAME`,
//! `WA_PROXY_PASSWORD`), all real parts: the agent binary, Chromium, the fake WhatsApp Web, the
//! devcluster API server holding the CR, and Debian's tinyproxy as the proxy (`BasicAuth`).
//! With credentials Chromium starts on about:blank and the agent answers the proxy's 407 over
//! CDP `Fetch` before navigating (docs/session-agent.md "The start path"); the proxy's own log
//! shows that WhatsApp Web's requests went through it, and that nothing else did: the agent's
//! PAC script (`browser/egress.rs`) sends WhatsApp's hosts and its URL's to the proxy and
//! Chromium's own services nowhere. The fake listens on the cluster's host address, not
//! loopback, which Chromium never sends to a proxy.

mod support;

use std::time::Duration;

use crds::testing::status;
use crds::{QrStatus, SessionState, error_codes};
use devcluster_testing::agent::Agent;
use devcluster_testing::chromium::{chromium_kind, cmdline};
use devcluster_testing::proxy::Tinyproxy;
use fake_whatsapp::Generation;
use support::*;

const T: Duration = Duration::from_secs(60);
const USER: &str = "wa-proxy-user";
const PASSWORD: &str = "s3cret-proxy-password";
/// What the agent says (log, `lastError.message`) when the proxy refused the credentials.
const REFUSED: &str = "the proxy refused the credentials";

/// The agent's environment for the proxy at `proxy`, with `credentials` if any.
fn proxy_env(proxy: &Tinyproxy, credentials: Option<(&str, &str)>) -> Vec<(&'static str, String)> {
    let mut env = vec![("WA_PROXY_URL", proxy.url())];
    if let Some((user, password)) = credentials {
        env.push(("WA_PROXY_USERNAME", user.into()));
        env.push(("WA_PROXY_PASSWORD", password.into()));
    }
    env
}

/// One test's world: tinyproxy (`BasicAuth` with `proxy_auth` if any), the fake WhatsApp Web,
/// the CR `s1` in a fresh namespace, and its agent on an empty profile told to use the proxy
/// with `credentials` (if any) and `extra_env`.
struct Behind {
    proxy: Tinyproxy,
    fake: fake_whatsapp::FakeWhatsApp,
    api: kube::Api<crds::WhatsAppSession>,
    agent: Agent,
    _tmp: tempfile::TempDir,
}

impl Behind {
    async fn start(
        prefix: &str,
        proxy_auth: Option<(&str, &str)>,
        credentials: Option<(&str, &str)>,
        extra_env: Vec<(&'static str, String)>,
    ) -> Self {
        let c = cluster().await;
        let host = std::net::IpAddr::from(c.host_ip());
        let proxy = Tinyproxy::start_on([127, 0, 0, 1].into(), &[host.to_string()], proxy_auth);
        // Not loopback: Chromium never sends loopback to a proxy.
        let secs = Duration::from_secs(20);
        let fake = fake_on(host, Generation::default(), secs, secs, 6).await;
        let ns = c.namespace(prefix).await;
        let api = create_session(c, &ns, "s1").await;
        let mut env = proxy_env(&proxy, credentials);
        env.extend(extra_env);
        let (tmp, agent) = wa_session().start_on_empty_profile(c, &ns, "s1", &fake.url(), env);
        Self {
            proxy,
            fake,
            api,
            agent,
            _tmp: tmp,
        }
    }
}

/// The command line of the agent's Chromium browser process.
fn browser_cmdline(agent: &Agent) -> Vec<String> {
    let browser = agent
        .chromium_pids()
        .into_iter()
        .find(|p| chromium_kind(*p) == "browser")
        .expect("the browser process");
    cmdline(browser)
}

/// Pages of the fake that said hello (a WhatsApp Web page that loaded and booted).
async fn fake_pages(fake_url: &str) -> Vec<serde_json::Value> {
    reqwest::get(format!("{fake_url}_fake/pages"))
        .await
        .expect("pages")
        .json()
        .await
        .expect("json")
}

/// As [`wait_status`], with the agent's and the proxy's logs in the panic message.
async fn wait_or_dump(
    api: &kube::Api<crds::WhatsAppSession>,
    what: &str,
    agent: &Agent,
    proxy: &Tinyproxy,
    pred: impl Fn(&crds::WhatsAppSessionStatus) -> bool,
) -> crds::WhatsAppSessionStatus {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let s = status(api, "s1").await;
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}\nagent:\n{}\ntinyproxy:\n{}",
            agent.log_text(),
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The right credentials: the agent answers the proxy's challenge, WhatsApp Web loads through
/// the proxy, the session shows a QR and links; the password is on no command line and in no log.
#[tokio::test]
async fn with_the_right_credentials_whatsapp_web_loads_through_the_proxy() {
    let world = Behind::start(
        "agent-proxy",
        Some((USER, PASSWORD)),
        Some((USER, PASSWORD)),
        // The agent's debug log says when it answered a challenge.
        vec![("RUST_LOG", "info,wa_session=debug".into())],
    )
    .await;
    let (proxy, fake, api, agent) = (&world.proxy, &world.fake, &world.api, &world.agent);
    let s = wait_or_dump(api, "first QR through the proxy", agent, proxy, |s| {
        s.qr.is_some()
    })
    .await;
    assert_eq!(s.status, Some(SessionState::QrRequired));
    scan(&fake.url(), s.qr.as_deref().expect("qr")).await;
    let s = wait_or_dump(api, "connected through the proxy", agent, proxy, |s| {
        s.status == Some(SessionState::Connected)
    })
    .await;
    assert_eq!(s.phone_number.as_deref(), Some(PHONE));

    // Through the proxy, not around it: the document and the page's calls to its server.
    let log = proxy.log_text();
    assert!(
        !proxy.requests_for(&fake.url()).is_empty(),
        "no request for {} reached the proxy:\n{log}",
        fake.url()
    );
    let fake_page = format!("{}_page/", fake.url());
    assert!(
        !proxy.requests_for(&fake_page).is_empty(),
        "the page's own calls ({fake_page}…) did not go through the proxy:\n{log}"
    );
    assert!(proxy.forwarded() > 0, "nothing forwarded:\n{log}");

    // Credentials only over CDP: not on Chromium's command line, not in the agent's log.
    let args = browser_cmdline(agent);
    assert!(
        args.iter().any(|a| a.starts_with("--proxy-pac-url=data:")),
        "{args:?}"
    );
    // Nothing but WhatsApp Web (the fake) asked the proxy for: Chromium's own services
    // (accounts.google.com, update.googleapis.com, clients2.google.com) went nowhere.
    let fake_host = fake
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let others = proxy.requested_hosts_except(&fake_host);
    assert!(
        others.is_empty(),
        "requests for other hosts than {fake_host}: {others:?}\n{log}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.contains(PASSWORD) || a.contains(USER)),
        "credentials on Chromium's command line: {args:?}"
    );
    // about:blank first (nothing may leave before Fetch answers the challenge): no start URL.
    assert!(!args.iter().any(|a| a == "--"), "{args:?}");
    let agent_log = agent.log_text();
    assert!(!agent_log.contains(PASSWORD), "the password was logged");
    assert!(!agent_log.contains(REFUSED), "{agent_log}");
    // The proxy did challenge (so the credentials were needed, and given over CDP).
    assert!(
        agent_log.contains("auth challenge answered with the proxy credentials"),
        "{agent_log}"
    );
}

/// Wrong credentials: the proxy refuses them, WhatsApp Web never loads (the fake never sees a
/// page) and the CR says so (`error`, `TIMEOUT`: it did not load) without a QR; the agent answers
/// each challenge once and relaunches with its back-off instead of retrying the credentials in a
/// loop.
#[tokio::test]
async fn with_wrong_credentials_the_page_does_not_load_and_the_status_says_so() {
    let world = Behind::start(
        "agent-proxy-refused",
        Some((USER, PASSWORD)),
        Some((USER, "not-the-password")),
        vec![("WA_PAGE_LOAD_TIMEOUT", "4s".into())],
    )
    .await;
    let (proxy, fake, api, agent) = (&world.proxy, &world.fake, &world.api, &world.agent);
    let s = wait_or_dump(api, "error: WhatsApp Web did not load", agent, proxy, |s| {
        s.status == Some(SessionState::Error)
    })
    .await;
    let error = s.last_error.clone().expect("lastError");
    assert_eq!(error.code, error_codes::TIMEOUT, "{error:?}");
    assert!(
        error.message.contains(REFUSED),
        "lastError does not say why: {error:?}\n{}",
        agent.log_text()
    );
    assert_eq!(s.qr, None);
    // Let it relaunch at least once (back-off 1 s), then count.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = status(api, "s1").await;
    assert_eq!(s.qr, None, "a QR without the proxy's consent: {s:?}");
    assert_ne!(s.qr_status, Some(QrStatus::Generated));
    assert!(fake_pages(&fake.url()).await.is_empty(), "a page loaded");
    let log = proxy.log_text();
    let agent_log = agent.log_text();
    // The document itself (Chromium also asks for /favicon.ico for the proxy's error page).
    let requests = proxy.requests_for(&format!("{} HTTP/", fake.url()));
    assert!(
        !requests.is_empty(),
        "Chromium did not ask the proxy:\n{log}"
    );
    assert_eq!(
        proxy.forwarded(),
        0,
        "the proxy forwarded something:\n{log}"
    );
    let launches = agent_log.matches("launching Chromium").count();
    assert!(
        launches >= 2,
        "relaunched after the failed load:\n{agent_log}"
    );
    // Per launch: the request without credentials (407) and the one with the agent's (refused,
    // then cancelled); a loop re-sending the credentials would be many more.
    assert!(
        requests.len() <= 2 * launches,
        "{} requests for {} launches:\n{log}",
        requests.len(),
        launches
    );
    assert!(
        !agent_log.contains("not-the-password"),
        "the password was logged"
    );
}

/// A proxy that needs no credentials, and only `WA_PROXY_URL`: Chromium starts at WhatsApp Web
/// (the proxy takes its first request) and the session shows a QR, through the proxy.
#[tokio::test]
async fn a_proxy_without_authentication_needs_only_the_url() {
    let world = Behind::start("agent-proxy-open", None, None, vec![]).await;
    let (proxy, fake, api, agent) = (&world.proxy, &world.fake, &world.api, &world.agent);
    let s = wait_or_dump(api, "first QR through the proxy", agent, proxy, |s| {
        s.qr.is_some()
    })
    .await;
    assert_eq!(s.status, Some(SessionState::QrRequired));
    let log = proxy.log_text();
    assert!(
        !proxy.requests_for(&fake.url()).is_empty(),
        "no request for {} reached the proxy:\n{log}",
        fake.url()
    );
    assert!(proxy.forwarded() > 0, "nothing forwarded:\n{log}");
    let args = browser_cmdline(agent);
    assert_eq!(
        args.iter().rev().take(2).rev().cloned().collect::<Vec<_>>(),
        ["--".to_string(), fake.url()],
        "started at WhatsApp Web: {args:?}"
    );
}
