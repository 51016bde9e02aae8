//! The contract between the agent's message API and the session loop that owns the page.
//!
//! The page belongs to the session loop (one CDP connection, one browser); the message API
//! asks it through a channel instead of sharing it, so a relaunch or a logout never races a send.
//! While the page is not linked the loop answers `PageError::NotReady` with the session's status.

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

/// WhatsApp's acknowledgement levels, as whatsapp-web.js and WAHA number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "i8", try_from = "i8")]
pub enum Ack {
    Error,
    Pending,
    Server,
    Device,
    Read,
    Played,
}

impl From<Ack> for i8 {
    fn from(a: Ack) -> i8 {
        match a {
            Ack::Error => -1,
            Ack::Pending => 0,
            Ack::Server => 1,
            Ack::Device => 2,
            Ack::Read => 3,
            Ack::Played => 4,
        }
    }
}

impl TryFrom<i8> for Ack {
    type Error = String;
    fn try_from(v: i8) -> Result<Self, String> {
        Ok(match v {
            -1 => Ack::Error,
            0 => Ack::Pending,
            1 => Ack::Server,
            2 => Ack::Device,
            3 => Ack::Read,
            4 => Ack::Played,
            other => return Err(format!("unknown ack level {other}")),
        })
    }
}

/// A text the page handed to WhatsApp's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message key as whatsapp-web.js serializes it (`true_<chat>_<id>`).
    pub id: String,
    /// The chat it went to (`<digits>@c.us`).
    pub to: String,
    /// Seconds since the epoch, as the page stamped it.
    pub timestamp: i64,
    pub ack: Ack,
}

/// A message seen on the page: received, or sent from this session, the phone or another
/// linked device (`from_me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub from_me: bool,
    /// whatsapp-web.js' message type (`chat` for text).
    pub kind: String,
    pub is_group: bool,
    pub ack: Ack,
}

/// What the page reports about messages, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageEvent {
    Message(Message),
    Ack { id: String, ack: Ack },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The page is not linked; `status` is the session's status (`qr`, `connecting`, …).
    #[error("session is not ready (status {status})")]
    NotReady { status: String },
    #[error("the number is not on WhatsApp")]
    NotOnWhatsApp,
    /// The page refused the input (e.g. over its length limit).
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The page failed to hand the message over; the reason is the page's.
    #[error("send failed: {0}")]
    Failed(String),
}

pub type Reply<T> = oneshot::Sender<Result<T, PageError>>;

/// One request from the message API to the session loop.
#[derive(Debug)]
pub enum PageRequest {
    /// The WhatsApp id of a number (`<digits>@c.us`), or `None` when it is not on WhatsApp.
    NumberId {
        to: String,
        reply: Reply<Option<String>>,
    },
    /// Send a text to a chat id; the reply comes once the server acknowledged it (ack ≥ 1).
    /// `id` is the message id the agent chose (WhatsApp's format: uppercase hex, e.g. `3EB0…`,
    /// derived from the caller's idempotency key), so a send repeated after a crash is
    /// recognised: when the chat already holds a message with this id the page answers that
    /// message instead of sending again.
    SendText {
        chat: String,
        body: String,
        id: String,
        reply: Reply<SentMessage>,
    },
}

/// The message API's end of the contract.
#[derive(Debug, Clone)]
pub struct PageClient {
    pub requests: mpsc::Sender<PageRequest>,
    pub events: broadcast::Sender<MessageEvent>,
}

/// The session loop's end of the contract.
#[derive(Debug)]
pub struct PageServer {
    pub requests: mpsc::Receiver<PageRequest>,
    pub events: broadcast::Sender<MessageEvent>,
}

/// Both ends. Requests queue (bounded) while the loop is busy; events keep the last `events`
/// for late subscribers' catch-up and lag the slow ones rather than block the page.
pub fn channel(requests: usize, events: usize) -> (PageClient, PageServer) {
    let (tx, rx) = mpsc::channel(requests);
    let (events, _) = broadcast::channel(events);
    (
        PageClient {
            requests: tx,
            events: events.clone(),
        },
        PageServer {
            requests: rx,
            events,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_levels_are_whatsapp_web_js_numbers() {
        for (ack, n) in [
            (Ack::Error, -1),
            (Ack::Pending, 0),
            (Ack::Server, 1),
            (Ack::Device, 2),
            (Ack::Read, 3),
            (Ack::Played, 4),
        ] {
            assert_eq!(serde_json::to_string(&ack).unwrap(), n.to_string());
            assert_eq!(serde_json::from_str::<Ack>(&n.to_string()).unwrap(), ack);
        }
        assert!(serde_json::from_str::<Ack>("5").is_err());
    }
}
