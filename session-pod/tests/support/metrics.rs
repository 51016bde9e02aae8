//! An agent's /metrics, read by the tests that count what the agent reports.

use std::time::Duration;

/// Polls an agent's /metrics (at `http`, its HTTP address) until `line` is in it, for a minute.
pub async fn until_metric(http: &str, line: &str) -> String {
    let limit = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = reqwest::get(format!("{http}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if m.lines().any(|l| l == line) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in /metrics within {limit:?}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
