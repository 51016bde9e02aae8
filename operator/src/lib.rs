//! wa-operator: reconciles `WhatsAppSession` resources (see docs/design.md §2 and docs/operator.md).
pub mod applied;
pub mod apply_children;
pub mod backoff;
pub mod caches;
pub mod children;
pub mod chromium_policy;
pub mod config;
pub mod context;
pub mod controller;
pub mod error;
pub mod events;
pub mod failures;
pub mod finalizer;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod placement;
pub mod publish_status;
pub mod reconcile;
pub mod status;
pub mod watches;

#[cfg(test)]
mod fixtures;
