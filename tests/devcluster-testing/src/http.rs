//! Plain-HTTP requests of tests (to the test pod, the operator's and the hub's ports), through
//! reqwest.

use std::fmt::Display;
use std::time::Duration;

/// How long one request may take before it counts as no answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET http://<authority><path>`: (status, body), or None when nothing answers in time.
pub async fn http_get(authority: impl Display, path: &str) -> Option<(u16, String)> {
    http("GET", authority, path, &[], None).await
}

/// A request with extra headers and an optional JSON body: (status, body), or None when
/// nothing answers in time.
pub async fn http(
    method: &str,
    authority: impl Display,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().ok()?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let mut request = client.request(method, format!("http://{authority}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = json_body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}
