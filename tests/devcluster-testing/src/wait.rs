//! Polling until a condition holds, panicking with what was awaited.

use std::future::Future;
use std::time::Duration;

/// Polls `condition` every 200 ms until it is true; panics after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_named("condition", timeout, condition).await
}

/// Like [`wait_for`], naming what is awaited in the panic message.
pub async fn wait_for_named<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if condition().await {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `probe` every 200 ms until it returns `Some`; panics after `timeout`.
pub async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
