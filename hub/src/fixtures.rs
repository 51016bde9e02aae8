//! The fast test tier's fixtures (after kube-rs controller-rs `src/fixtures.rs`): sessions built
//! by chaining, a [`Hub`] whose view and namespaces are fixed lists, and an API server that is
//! a `tower-test` mock answering the requests a [`Scenario`] expects, in order, and failing the
//! test on any other. No cluster, no root: `cargo test -p hub --lib`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use crds::{DesiredState, Handled, QrStatus, WhatsAppSession, WhatsAppSessionSpec};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::client::Body;
use serde_json::{Value, json};

use crate::app::Hub;
use crate::auth::jwt::Jwt;
use crate::auth::password::PasswordChecker;
use crate::auth::throttle::{Limits, LoginThrottle};
use crate::auth::{Claims, Role};
use crate::client_addr::TrustedProxies;
use crate::config::Cli;
use crate::metrics::Metrics;
use crate::qr_image::QrRenderer;
use crate::ratelimit::{QrLimiter, RequestBudget};
use crate::tenancy::Tenancy;
use crate::view::View;

/// The namespace and tenant the fixtures live in; the namespace claims the tenant.
pub const NAMESPACE: &str = "acme-ns";
pub const TENANT: &str = "acme";

/// `WhatsAppSession` `name` of [`TENANT`] in [`NAMESPACE`], with the CRD's defaults (desired
/// `Running`) and no status.
pub fn session(name: &str) -> WhatsAppSession {
    let mut s = WhatsAppSession::new(
        name,
        WhatsAppSessionSpec {
            tenant: TENANT.into(),
            ..Default::default()
        },
    );
    s.metadata.namespace = Some(NAMESPACE.into());
    s
}

/// A whole second `secs` from now, as the CR keeps times.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(crds::now().0.as_second() + secs).expect("a valid timestamp")
}

/// Chainable changes to a session fixture.
pub trait SessionFixture {
    fn of_tenant(self, tenant: &str) -> Self;
    fn stopped(self) -> Self;
    /// Shows a QR valid until `expires`.
    fn showing_qr(self, expires: Timestamp) -> Self;
    fn qr_requested(self, at: Timestamp) -> Self;
    /// The agent acted on the QR request of `at`.
    fn qr_handled(self, at: Timestamp) -> Self;
    fn logout_requested(self, at: Timestamp) -> Self;
    /// The agent acted on the logout request of `at`.
    fn logout_handled(self, at: Timestamp) -> Self;
}

impl SessionFixture for WhatsAppSession {
    fn of_tenant(mut self, tenant: &str) -> Self {
        self.spec.tenant = tenant.into();
        self
    }
    fn stopped(mut self) -> Self {
        self.spec.desired_state = DesiredState::Stopped;
        self
    }
    fn showing_qr(mut self, expires: Timestamp) -> Self {
        let status = self.status.get_or_insert_default();
        status.qr_status = Some(QrStatus::Generated);
        status.qr = Some("ref,abc".into());
        status.qr_expires_at = Some(Time(expires));
        self
    }
    fn qr_requested(mut self, at: Timestamp) -> Self {
        self.spec.qr_requested_at = Some(Time(at));
        self
    }
    fn qr_handled(mut self, at: Timestamp) -> Self {
        handled(&mut self).qr_requested_at = Some(Time(at));
        self
    }
    fn logout_requested(mut self, at: Timestamp) -> Self {
        self.spec.logout_requested_at = Some(Time(at));
        self
    }
    fn logout_handled(mut self, at: Timestamp) -> Self {
        handled(&mut self).logout_requested_at = Some(Time(at));
        self
    }
}

fn handled(s: &mut WhatsAppSession) -> &mut Handled {
    s.status
        .get_or_insert_default()
        .handled
        .get_or_insert_default()
}

/// A user of [`TENANT`].
pub fn user() -> Claims {
    Claims {
        sub: "ana".into(),
        tenants: vec![TENANT.into()],
        role: Role::User,
        exp: u64::MAX,
        iat: None,
        iss: None,
        aud: None,
    }
}

impl Hub {
    /// A hub with the default configuration whose view lists `sessions`, whose namespaces are
    /// [`NAMESPACE`] claiming [`TENANT`], and whose API server is `client`.
    pub fn test(client: kube::Client, sessions: Vec<WhatsAppSession>) -> Arc<Hub> {
        let config = Cli::try_parse_from(["wa-hub"])
            .expect("the default configuration")
            .serve;
        Arc::new(Hub {
            view: View::listed(sessions),
            tenancy: Tenancy::listed(&[(NAMESPACE, &[TENANT])]),
            jwt: Jwt::hs256(&[7; 32], None, None).expect("a 32-byte secret"),
            users: None,
            passwords: PasswordChecker::new(1, 1),
            login_throttle: LoginThrottle::new(Limits {
                per_pair: 5,
                per_client: 20,
                per_user: 20,
                window: Duration::from_secs(60),
            }),
            trusted_proxies: TrustedProxies::parse(&[]).expect("no proxies"),
            qr: QrRenderer::new(),
            metrics: Arc::new(Metrics::new()),
            limiter: QrLimiter::new(config.qr_rate_limit()),
            budget: {
                let (rate, burst) = config.session_request_budget();
                RequestBudget::new(rate, burst)
            },
            agents: crate::agents::Agents::new(
                config.agent_token_file.clone(),
                config.agent_port,
                config.agent_send_timeout,
            ),
            config,
            client,
        })
    }
}

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The mocked API server's side: answers and checks each request a [`Scenario`] expects.
pub struct ApiServerVerifier(ApiServerHandle);

/// A client whose API server is the returned verifier.
pub fn api_server() -> (kube::Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, NAMESPACE),
        ApiServerVerifier(handle),
    )
}

/// The requests an action is expected to make, in order.
pub enum Scenario {
    /// None at all.
    Nothing,
    /// The session is read and nothing is written.
    Read(WhatsAppSession),
    /// The session is read and answers 404 (deleted since the view saw it).
    ReadGone(String),
    /// The session is read, then the hub applies its spec fields; `check` is given the applied
    /// `spec` (only the hub's fields: `desiredState`, `qrRequestedAt`, `logoutRequestedAt`) and
    /// the session as read.
    ReadThenApply(WhatsAppSession, fn(&Value, &WhatsAppSession)),
    /// The session's pod is read by name (`wa-<name>-0`): answered with this pod, or 404.
    ReadPod(String, Option<Value>),
}

impl ApiServerVerifier {
    /// Serve `scenario` in the background; await the handle (with [`timeout`]) after the action
    /// to see the scenario complete. Dropping the handle at its end makes any further request
    /// fail.
    pub fn run(self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            match scenario {
                Scenario::Nothing => self.expect_none().await,
                Scenario::Read(s) => self.read(&s).await.expect_none().await,
                Scenario::ReadGone(name) => self.read_gone(&name).await.expect_none().await,
                Scenario::ReadPod(name, pod) => self.read_pod(&name, pod).await.expect_none().await,
                Scenario::ReadThenApply(s, check) => {
                    self.read(&s)
                        .await
                        .apply(&s, check)
                        .await
                        .expect_none()
                        .await
                }
            }
        })
    }

    async fn next(
        &mut self,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        self.0
            .next_request()
            .await
            .expect("the action made the expected request")
    }

    async fn read(mut self, s: &WhatsAppSession) -> Self {
        let (request, send) = self.next().await;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().to_string(), object_path(&s.name_any()));
        send.send_response(json_response(
            StatusCode::OK,
            serde_json::to_value(s).unwrap(),
        ));
        self
    }

    async fn read_pod(mut self, name: &str, pod: Option<Value>) -> Self {
        let (request, send) = self.next().await;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri().to_string(),
            format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        );
        send.send_response(match pod {
            Some(p) => json_response(StatusCode::OK, p),
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404,
                       "message": format!("pods \"{name}\" not found")}),
            ),
        });
        self
    }

    async fn read_gone(mut self, name: &str) -> Self {
        let (request, send) = self.next().await;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().to_string(), object_path(name));
        send.send_response(json_response(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404,
                   "message": format!("whatsappsessions \"{name}\" not found")}),
        ));
        self
    }

    /// A server-side apply of the spec as the hub's field manager, answered with the object
    /// as it would be stored.
    async fn apply(mut self, s: &WhatsAppSession, check: fn(&Value, &WhatsAppSession)) -> Self {
        let (request, send) = self.next().await;
        assert_eq!(request.method(), Method::PATCH);
        assert_eq!(
            request.uri().to_string(),
            format!(
                "{}?&force=true&fieldManager={}",
                object_path(&s.name_any()),
                crds::Writer::Hub.field_manager()
            )
        );
        assert_eq!(
            request.headers()[http::header::CONTENT_TYPE],
            "application/apply-patch+yaml"
        );
        let body = request.into_body().collect_bytes().await.unwrap();
        let applied: Value = serde_json::from_slice(&body).expect("a JSON apply configuration");
        assert_eq!(applied["apiVersion"], "whatsapp.leadmaster.io/v1alpha1");
        assert_eq!(applied["kind"], "WhatsAppSession");
        assert_eq!(applied["metadata"]["name"], s.name_any());
        assert_eq!(applied["metadata"]["namespace"], NAMESPACE);
        assert!(applied.get("status").is_none(), "{applied}");
        check(&applied["spec"], s);
        let mut stored = serde_json::to_value(s).unwrap();
        for field in ["desiredState", "qrRequestedAt", "logoutRequestedAt"] {
            match applied["spec"].get(field) {
                Some(v) => stored["spec"][field] = v.clone(),
                None => {
                    stored["spec"].as_object_mut().unwrap().remove(field);
                }
            }
        }
        send.send_response(json_response(StatusCode::OK, stored));
        self
    }

    /// The action made no request beyond the scenario's.
    async fn expect_none(mut self) {
        let extra = tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await;
        if let Ok(Some((request, _))) = extra {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

fn object_path(name: &str) -> String {
    format!("/apis/whatsapp.leadmaster.io/v1alpha1/namespaces/{NAMESPACE}/whatsappsessions/{name}")
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Await a scenario's handle, failing after a second.
pub async fn timeout(scenario: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), scenario)
        .await
        .expect("the scenario completed within a second")
        .expect("the scenario's checks passed");
}
