//! Test fixtures, after kube-rs's controller-rs: chainable sessions, a [`Context`] over a mocked
//! API server, and the [`ApiServerVerifier`] that checks each request a reconcile makes and
//! answers it — the reconcile tested in milliseconds, without a cluster.
use std::sync::Arc;
use std::time::Duration;

use crds::{WhatsAppSession, WhatsAppSessionSpec, WhatsAppSessionStatus, Writer};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::caches::{self, Writers};
use crate::children::Settings;
use crate::config::Config;
use crate::context::Context;
use crate::events::Events;
use crate::finalizer::FINALIZER;
use crate::metrics::Metrics;

/// Chainable changes of a test session.
pub trait SessionFixture: Sized {
    /// The session `name` of tenant `acme` in namespace `ns1`, uid `uid-1`, generation 1.
    fn test(name: &str) -> Self;
    /// With the operator's finalizer on (as after its first reconcile).
    fn finalized(self) -> Self;
    fn generation(self, generation: i64) -> Self;
    fn without_uid(self) -> Self;
    /// `desiredState: Stopped`.
    fn stopped(self) -> Self;
    /// Marked for deletion at `at`.
    fn deleting_since(self, at: Time) -> Self;
    fn with_status(self, status: WhatsAppSessionStatus) -> Self;
}

impl SessionFixture for WhatsAppSession {
    fn test(name: &str) -> Self {
        let mut s = WhatsAppSession::new(
            name,
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns1".into());
        s.metadata.uid = Some("uid-1".into());
        s.metadata.generation = Some(1);
        s.metadata.resource_version = Some("100".into());
        s
    }

    fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![FINALIZER.into()]);
        self
    }

    fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    fn without_uid(mut self) -> Self {
        self.metadata.uid = None;
        self
    }

    fn stopped(mut self) -> Self {
        self.spec.desired_state = crds::DesiredState::Stopped;
        self
    }

    fn deleting_since(mut self, at: Time) -> Self {
        self.metadata.deletion_timestamp = Some(at);
        self
    }

    fn with_status(mut self, status: WhatsAppSessionStatus) -> Self {
        self.status = Some(status);
        self
    }
}

/// The status of an agent that said `connected` at second 5 and was not heard of since.
pub fn connected_agent() -> WhatsAppSessionStatus {
    let at5 = Time(k8s_openapi::jiff::Timestamp::from_second(5).expect("time"));
    let mut st = WhatsAppSessionStatus {
        status: Some(crds::SessionState::Connected),
        qr_status: Some(crds::QrStatus::Used),
        phone_number: Some("5491100000000".into()),
        connected_at: Some(at5.clone()),
        updated_at: Some(at5.clone()),
        ..Default::default()
    };
    crds::agent_status::sync_condition(&mut st, false, false, at5);
    st
}

/// The operator's settings with the agent image `img:1`, otherwise the defaults.
pub fn test_settings() -> Settings {
    use clap::Parser;
    Settings::from_config(
        &Config::try_parse_from(["wa-operator", "--session-image", "img:1"]).expect("cfg"),
    )
}

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// A reconcile's context over a mocked API server, and the verifier that plays the server.
pub fn test_context() -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(
        client.clone(),
        test_settings(),
        Duration::from_secs(60),
        Arc::new(Metrics::default()),
        Events::new(client, "test"),
    );
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// As [`test_context`], with the children's caches in place, synced and empty; the writers
/// fill them.
pub async fn test_context_with_caches() -> (Arc<Context>, ApiServerVerifier, Writers) {
    let (ctx, verifier) = test_context();
    let (cache, mut w) = caches::new();
    w.all_listed();
    cache.clone().announce_synced().await;
    ctx.use_caches(cache);
    (ctx, verifier, w)
}

/// One request the reconcile made, as the verifier received it.
pub struct Received {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub body: Value,
    respond: Responder,
}

impl Received {
    /// Answers 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.answer(StatusCode::OK, body)
    }

    /// Answers with a `Status` failure `code` (e.g. 404, 409, 422).
    pub fn fail(self, code: StatusCode, message: &str) {
        // The reasons the API server gives (metav1.StatusReason), which kube's checks read.
        let reason = match code {
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
            _ => "InternalError",
        };
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16(),
        });
        self.answer(code, &status)
    }

    fn answer(self, code: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response");
        self.respond.send_response(response);
    }

    /// Whether this is a server-side apply as `writer`.
    pub fn is_apply_by(&self, writer: Writer) -> bool {
        self.method == Method::PATCH
            && self
                .query
                .contains(&format!("fieldManager={}", writer.field_manager()))
    }
}

/// Plays the API server: each expected request is asserted and answered in turn; a request
/// the test did not expect fails the reconcile (the mock is dropped) or the test (a wrong
/// method or path).
pub struct ApiServerVerifier(ApiServerHandle);

impl ApiServerVerifier {
    /// The next request, which must be `method` on `path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Received {
        let received = self.next().await;
        assert_eq!(
            (&received.method, received.path.as_str()),
            (&method, path),
            "unexpected request (query {})",
            received.query
        );
        received
    }

    /// The next request, whatever it is.
    pub async fn next(&mut self) -> Received {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
                .await
                .expect("the reconcile made the expected request in time")
                .expect("the reconcile made a request");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        Received {
            method,
            path,
            query,
            body,
            respond,
        }
    }

    /// The next `n` requests, in whatever order they come (concurrent ones).
    pub async fn next_n(&mut self, n: usize) -> Vec<Received> {
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            all.push(self.next().await);
        }
        all
    }
}

/// The path of the `K` named `name` in `ns`.
pub fn path_of<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), Some(ns)))
}

/// An apply's body as the API server returns it: stored, with a uid and a resourceVersion.
pub fn stored(body: &Value, resource_version: &str) -> Value {
    let mut stored = body.clone();
    stored["metadata"]["uid"] = json!(format!("uid-{}", body["kind"].as_str().unwrap_or("x")));
    stored["metadata"]["resourceVersion"] = json!(resource_version);
    stored["metadata"]["generation"] = json!(1);
    stored
}

/// Runs `reconcile` while `verifier` plays the API server; both must finish within a second.
/// Returns what each returned.
pub async fn run_against<T, U, F, V>(reconcile: F, verifier: V) -> (T, U)
where
    F: Future<Output = T>,
    V: Future<Output = U> + Send + 'static,
    U: Send + 'static,
{
    let verifier = tokio::spawn(verifier);
    let result = tokio::time::timeout(Duration::from_secs(1), reconcile)
        .await
        .expect("the reconcile finished within a second");
    let verified = tokio::time::timeout(Duration::from_secs(1), verifier)
        .await
        .expect("the verifier finished within a second")
        .expect("every expected request was made");
    (result, verified)
}
