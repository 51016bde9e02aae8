//! The hub against a real devcluster and the real socket.io-client (via tests/js/bridge.mjs),
//! one test per behaviour of the contract (docs/design.md §3, §4):
//! - `rest`: login, lists, snapshots, disconnect, the OpenAPI document, metrics;
//! - `socket`: subscribing, pushes of status changes, unsubscribing;
//! - `qr`: QR requests (what the hub writes, pending requests, the rate limit) and QR pushes;
//! - `tenants`: tenant isolation over REST and socket.io, tenant claims of namespaces;
//! - `auth`: the login throttle, tokens refused alike on both transports, expiry, revocation;
//! - `bad_input`: documented errors for every kind of bad input;
//! - `resilience`: hub restart, API outage, events emitted on connect;
//! - `fuzz`: schemathesis against the served OpenAPI document;
//! - `messages`: sending through a session, REST and socket.io, the hub's part;
//! - `limits`: what one client may take: socket.io message size on websockets, slow and idle
//!   connections, connection caps.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod bad_input;
mod fuzz;
mod limits;
mod messages;
mod qr;
mod resilience;
mod rest;
mod socket;
mod tenants;
