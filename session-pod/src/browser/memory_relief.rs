//! Periodic memory relief of the page (`--memory-relief-interval`).

use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::memory::{
    PressureLevel, SimulatePressureNotificationParams,
};
use chromiumoxide::cdp::js_protocol::heap_profiler::CollectGarbageParams;
use chromiumoxide::cdp::js_protocol::runtime::GetHeapUsageParams;

/// Every `interval`: a critical memory-pressure signal to the page's renderer (Blink and V8
/// drop caches they can rebuild) and a full garbage collection, then the page's JavaScript
/// heap at debug level (what the page keeps alive). Failures are logged and retried on the
/// next tick: the page may be navigating, and a dead browser ends the task with the session.
pub(super) async fn run(page: Page, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let relieved = async {
            page.execute(SimulatePressureNotificationParams::new(
                PressureLevel::Critical,
            ))
            .await?;
            page.execute(CollectGarbageParams::default()).await?;
            page.execute(GetHeapUsageParams::default()).await
        };
        match tokio::time::timeout(interval, relieved).await {
            Ok(Ok(heap)) => tracing::debug!(
                used_mib = heap.result.used_size / 1048576.0,
                total_mib = heap.result.total_size / 1048576.0,
                "memory relief: the page's JavaScript heap after a full collection"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "memory relief"),
            Err(_) => tracing::debug!("memory relief: no answer"),
        }
    }
}
