//! Whether a started part answers: etcd's `/health`, the registry's `/v2/` (plain HTTP on
//! loopback or the host's link address, through reqwest) and the API server's `/readyz`
//! (through the admin kube client).

use std::time::Duration;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The status and body of `GET http://<host><path>`, or None when nothing answers in time.
async fn get(host: &str, path: &str) -> Option<(reqwest::StatusCode, String)> {
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{host}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.text().await.ok()?))
}

/// Whether etcd at `host` (`127.0.0.1:<client port>`) reports itself healthy.
pub async fn etcd_healthy(host: &str) -> bool {
    get(host, "/health")
        .await
        .is_some_and(|(_, body)| body.contains(r#""health":"true""#))
}

/// Whether the image registry at `host` serves its API (`/v2/` answers 200).
pub async fn registry_serves(host: &str) -> bool {
    get(host, "/v2/")
        .await
        .is_some_and(|(status, _)| status == reqwest::StatusCode::OK)
}

/// Whether the API server's `/readyz` answers `ok`.
pub async fn readyz(client: &kube::Client) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), client.request_text(req)).await, Ok(Ok(t)) if t.trim() == "ok")
}
