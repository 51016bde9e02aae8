//! wa-operator: reconciles `WhatsAppSession` resources (see docs/design.md §2 and docs/operator.md).
pub mod applied;
pub mod caches;
pub mod children;
pub mod config;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod leader;
pub mod metrics;
pub mod placement;
pub mod reconcile;
pub mod status;
