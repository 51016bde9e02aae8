//! What the binaries (`wa-operator`, `wa-hub`, `wa-session`) share to run as services, as
//! kubert is for kube-rs controllers: one module per concern.
//!
//! - [`metrics`]: `GET /metrics` on a listener of its own.
//! - [`logs`]: the default log filters.
//! - [`outage`]: how a Kubernetes API outage is told in the logs.
//! - [`kube_errors`]: what a Kubernetes API error means (transient or not).
//! - [`streaks`]: failures in a row, per key (the outage reports and the operator's back-off).
//! - [`shutdown`]: the one shutdown handle (signals, or the binary itself).
//!
//! A crate of its own rather than a feature of `crds`: `crds` is the API contract that clients
//! (the kubectl plugin, third parties) depend on, and an HTTP stack has no place there; cargo
//! would unify such a feature across the workspace anyway.

pub mod kube_errors;
pub mod logs;
pub mod metrics;
pub mod outage;
pub mod shutdown;
pub mod streaks;
