//! `wa-hub`: the browser-facing hub. It keeps a live view of the WhatsAppSession CRs (kube
//! reflector), serves REST (docs/design.md §3) and socket.io (§4) with JWT auth and tenant
//! isolation, and writes requests (`qrRequestedAt`, `logoutRequestedAt`, `desiredState`) back
//! into the CR spec with server-side apply. It keeps no state that matters across restarts, so
//! several replicas can run behind one address.

pub mod actions;
pub mod agents;
pub mod app;
pub mod auth;
pub mod client_addr;
pub mod config;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod ids;
pub mod metrics;
pub mod openapi;
pub mod qr_image;
pub mod qr_request;
pub mod ratelimit;
pub mod routes;
pub mod security_headers;
pub mod server;
pub mod snapshot;
pub mod socket;
pub mod tenancy;
pub mod view;
