//! The test library of devcluster: one cluster shared by every test of a run, a fresh
//! namespace per test, the project's release binaries, and the session agent as a host process.
//!
//! ```no_run
//! # async fn t() {
//! let cluster = devcluster_testing::cluster().await;
//! let ns = cluster.namespace("my-test").await;
//! let client = cluster.client();
//! # }
//! ```
//!
//! With `DEVCLUSTER_STATE_DIR` set (as `make test` does) the library connects to that
//! running cluster. Without it, it starts one in `~/.cache/whatsapp-operator/state/cargo-test`
//! (pod CIDR 10.244.254.0/24, apart from `make test`'s 10.244.0.0/24 so both can run) or reuses
//! it if it is already running, so a plain
//! `cargo test --release -p <crate>` works too; `devcluster down --state-dir` that dir when done.
//!
//! The launcher itself (`devcluster up`/`down`, the control plane, the node) is the
//! `devcluster` crate; the custom resource's helpers are `crds::testing` (feature `testing`).

pub mod agent;
mod binaries;
pub mod chromium;
mod claim;
mod cluster;
mod events;
mod http;
pub mod metrics;
pub mod operator;
pub mod proxy;
mod wait;

pub use binaries::{find_release_program, release_dir, release_program};
pub use claim::{Claim, claim, own_cluster, own_state_dir};
pub use cluster::{TestCluster, cluster};
pub use events::events_for;
pub use http::{http, http_get};
pub use wait::{wait_for, wait_for_named, wait_for_value};

/// A TCP port free on 127.0.0.1 right now, for a process a test starts (the control plane's
/// own [`devcluster::control_plane::free_port`], panicking instead of returning the error).
pub fn free_port() -> u16 {
    devcluster::control_plane::free_port().unwrap_or_else(|e| panic!("finding a free port: {e}"))
}
