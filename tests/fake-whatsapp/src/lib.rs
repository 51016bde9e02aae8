//! `fake-whatsapp`: a stand-in for WhatsApp Web for tests, served over HTTP.
//!
//! The page reproduces what automation reads from the real one (see `docs/fake-whatsapp.md`):
//! `window.Debug.VERSION`, the `window.require(...)` modules whatsapp-web.js uses (Socket state,
//! rotating `Conn.ref`, `Cmd`, the QR keys, pairing code) and the older `div[data-ref]` markup.
//! The server remembers linked devices; a control API under `/_fake/` plays the phone.

pub mod config;
mod control_api;
mod control_messages;
pub mod messages;
mod outage;
mod page_api;
pub mod registry;
mod server;

pub use config::{Generation, PageConfig, Timings};
pub use server::{FakeWhatsApp, StartError};
