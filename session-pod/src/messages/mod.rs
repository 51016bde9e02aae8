//! Messages through the linked page (issue 24). The agent's message API (what callers ask for)
//! and the page driver (what WhatsApp Web does) meet only through the types in `page`, so each
//! side is tested without the other.

// The page driver's side of `page` (events, the errors only the page gives) lands with it.
#![expect(
    dead_code,
    reason = "the page driver serves the contract in its own change"
)]

pub mod api;
pub mod auth;
pub mod ids;
pub mod input;
pub mod journal;
pub mod page;
pub mod rate;
pub mod send;

#[cfg(test)]
mod api_tests;
