//! Test support: a `wa-hub` process on the devcluster, the Node bridge to the real
//! socket.io-client, token minting, and kube helpers that play the agent (the CRD, sessions,
//! ports and waits are `devcluster_testing`'s, shared with the operator and agent suites).

pub mod bridge;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crds::{WhatsAppSession, managers};
use devcluster_testing::{free_port, wait_for_value};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

pub const SECRET: &str = "hub-test-secret-0123456789abcdef0123456789";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test's own namespace (sessions there are served by the test's own hub) and hub files.
pub struct Env {
    pub client: Client,
    pub ns: String,
    pub kubeconfig: PathBuf,
    pub files: HubFiles,
}

/// The devcluster with the CRD installed, and a fresh namespace `<prefix>-…`.
pub async fn env(prefix: &str) -> Env {
    let cluster = devcluster_testing::cluster().await;
    let client = cluster.client();
    crds::testing::install_crd(&client).await;
    let ns = cluster.namespace(prefix).await;
    Env {
        client,
        ns,
        kubeconfig: cluster.kubeconfig(),
        files: HubFiles::new(),
    }
}

impl Env {
    /// Creates session `name` of `tenant` in the test's namespace.
    pub async fn session(&self, name: &str, tenant: &str) -> WhatsAppSession {
        let api: Api<WhatsAppSession> = Api::namespaced(self.client.clone(), &self.ns);
        crds::testing::create(&api, name, json!({ "tenant": tenant })).await
    }

    /// Labels the test's namespace with the claim of `tenant`, which the hub requires before
    /// it serves the tenant's sessions there (issue 28).
    pub async fn claim(&self, tenant: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let label = format!("tenant.whatsapp.leadmaster.io/{tenant}");
        let patch = json!({"metadata": {"labels": {label: ""}}});
        api.patch(&self.ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub fn sessions(&self) -> Api<WhatsAppSession> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A hub serving the test's namespace with HS256 and the users file.
    pub async fn hub(&self) -> HubProc {
        self.hub_with(&[]).await
    }

    /// [`hub`](Self::hub) with `extra` flags.
    pub async fn hub_with(&self, extra: &[&str]) -> HubProc {
        let mut args = hs256_args(&self.files, &self.ns);
        args.extend(extra.iter().map(|a| a.to_string()));
        HubProc::start(&self.kubeconfig, args).await
    }
}

/// Write status fields as the session agent does (its own field manager).
pub async fn agent_status(client: &Client, ns: &str, name: &str, status: Value) {
    let api: Api<WhatsAppSession> = Api::namespaced(client.clone(), ns);
    let patch = json!({"apiVersion": "whatsapp.leadmaster.io/v1alpha1", "kind": "WhatsAppSession", "status": status});
    api.patch_status(
        name,
        &PatchParams::apply(managers::AGENT).force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();
}

pub fn rfc3339_in(secs: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64 + secs;
    k8s_openapi::jiff::Timestamp::from_second(now)
        .unwrap()
        .to_string()
}

pub fn token(sub: &str, tenants: &[&str], role: &str, exp_in: i64) -> String {
    let exp = jsonwebtoken::get_current_timestamp() as i64 + exp_in;
    signed(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "tenants": tenants, "role": role, "exp": exp}),
    )
}

/// `claims` signed with the test secret under `header`.
pub fn signed(header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// Files a hub needs: secret, users (admin + one user per tenant a/b).
pub struct HubFiles {
    pub dir: tempfile::TempDir,
}

impl HubFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        let files = Self { dir };
        files.write_users("");
        files
    }

    /// Writes the users file: admin, ana (tenant a), bob (tenant b), password [`PASSWORD`];
    /// `ana_extra` is added to ana's entry (e.g. `tokensNotBefore: '…'`). Written to a new file
    /// then renamed over the old one, as the kubelet swaps a Secret's files.
    pub fn write_users(&self, ana_extra: &str) {
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let h = HASH.get_or_init(|| hub::auth::users::hash_password(PASSWORD).unwrap());
        let ana_extra = if ana_extra.is_empty() {
            String::new()
        } else {
            format!(", {ana_extra}")
        };
        let users = format!(
            "users:\n  - {{username: admin, passwordHash: '{h}', tenants: [], role: admin}}\n  - {{username: ana, passwordHash: '{h}', tenants: [a], role: user{ana_extra}}}\n  - {{username: bob, passwordHash: '{h}', tenants: [b], role: user}}\n"
        );
        let tmp = self.path("users.yaml.new");
        std::fs::write(&tmp, users).unwrap();
        std::fs::rename(tmp, self.path("users.yaml")).unwrap();
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

pub struct HubProc {
    pub child: tokio::process::Child,
    pub port: u16,
    pub url: String,
    /// The metrics listener (`--metrics-addr`), apart from the public `url`.
    pub metrics_url: String,
    metrics_port: u16,
    args: Vec<String>,
    kubeconfig: PathBuf,
}

impl HubProc {
    pub async fn start(kubeconfig: &Path, args: Vec<String>) -> Self {
        Self::start_on(kubeconfig, free_port(), free_port(), args).await
    }

    pub async fn start_on(
        kubeconfig: &Path,
        port: u16,
        metrics_port: u16,
        args: Vec<String>,
    ) -> Self {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-hub"))
            .args(&args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("HUB_STATIC_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let hub = HubProc {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            metrics_port,
            args,
            kubeconfig: kubeconfig.to_owned(),
        };
        hub.wait_health(200).await;
        hub
    }

    pub async fn wait_health(&self, want: u16) {
        let url = format!("{}/health", self.url);
        wait_for_value(
            &format!("/health {want}"),
            Duration::from_secs(60),
            || async {
                let r = reqwest::get(&url).await.ok()?;
                (r.status().as_u16() == want).then_some(())
            },
        )
        .await;
    }

    /// The page of the metrics listener (`--metrics-addr`).
    pub async fn metrics_page(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series (`name{labels}` as printed) on the metrics page, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics_page()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// SIGTERM and wait for exit (graceful shutdown must not hang on open websockets).
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("wa-hub did not stop on SIGTERM")
            .unwrap();
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        let new = HubProc::start_on(
            &self.kubeconfig.clone(),
            self.port,
            self.metrics_port,
            self.args.clone(),
        )
        .await;
        *self = new;
    }
}

pub fn hs256_args(files: &HubFiles, ns: &str) -> Vec<String> {
    vec![
        "--namespace".into(),
        ns.into(),
        "--jwt-secret-file".into(),
        files.path("secret").display().to_string(),
        "--users-file".into(),
        files.path("users.yaml").display().to_string(),
    ]
}

/// A hub serving every namespace (the chart's default): HS256 and the users file.
pub fn all_namespaces_args(files: &HubFiles) -> Vec<String> {
    vec![
        "--jwt-secret-file".into(),
        files.path("secret").display().to_string(),
        "--users-file".into(),
        files.path("users.yaml").display().to_string(),
    ]
}

/// HTTP helper returning (status, JSON body).
pub async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut rb = c.request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    call(reqwest::Method::GET, url, token, None).await
}

pub async fn post(url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    call(reqwest::Method::POST, url, token, body).await
}

pub fn sessions_url(hub: &HubProc, api: bool) -> String {
    format!(
        "{}{}/session-manager/sessions",
        hub.url,
        if api { "/api" } else { "" }
    )
}

/// Logs `user` in (password [`PASSWORD`]) and returns the token.
pub async fn login(hub: &HubProc, user: &str) -> String {
    let (st, body) = post(
        &format!("{}/api/auth/login", hub.url),
        None,
        Some(json!({"username": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Assert an error response: status and `{"error": code, "message": text}`.
#[track_caller]
pub fn assert_err(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.0, status, "status of {resp:?}");
    assert_eq!(resp.1["error"], code, "error code of {resp:?}");
    assert!(
        resp.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message of {resp:?}"
    );
}
