//! WhatsApp's side of messages: the numbers that exist on WhatsApp, and every text message of
//! each account — sent by one of its pages, sent from its phone, or received from a contact —
//! with its acknowledgement level. The registry routes what a page must learn
//! ([`PageMessage`]) to the account's connected pages; this module only keeps the record.

use std::collections::HashSet;

use rand::Rng as _;
use serde::Serialize;

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Sent by a page (`addAndSendMsgToChat`).
    Page,
    /// Sent from the account's phone or another linked device (`/_fake/messages/outgoing`).
    Phone,
    /// Received from a contact (`/_fake/messages/incoming`).
    Contact,
}

/// One message of an account, as `GET /_fake/messages` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The message id (`MsgKey.id`).
    pub id: String,
    /// The serialized key, `<fromMe>_<chat>_<id>` (`MsgKey._serialized`).
    pub key: String,
    /// The account's number (digits).
    pub account: String,
    /// The other side (`<digits>@c.us`).
    pub chat: String,
    pub from_me: bool,
    pub body: String,
    /// Seconds since the epoch, when the server took the message.
    pub t: i64,
    /// WhatsApp's ack level (1 server, 2 delivered, 3 read, 4 played).
    pub ack: i8,
    pub via: Via,
    /// The page that sent it (`via: page`).
    pub page: Option<String>,
}

/// What a page learns about messages (the `messages` of its poll snapshot).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PageMessage {
    /// A message to add to the page's `Msg` collection; `isNew` false for the history a page
    /// loads when it connects.
    #[serde(rename_all = "camelCase")]
    Msg { record: Record, is_new: bool },
    /// The ack of a message the page holds changed.
    Ack { key: String, ack: i8 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no message {0}")]
    UnknownMessage(String),
}

/// WhatsApp's text limit as the web client enforces it (UTF-16 code units).
pub const MAX_TEXT: usize = 65_536;

#[derive(Default)]
pub struct Messages {
    numbers: HashSet<String>,
    log: Vec<Record>,
}

/// A message id as a phone makes one: 32 upper-case hex digits.
pub fn phone_message_id() -> String {
    let mut buf = [0u8; 16];
    rand::rng().fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02X}")).collect()
}

/// `<digits>@c.us` from digits or an id; `None` for anything else (groups, LIDs, junk).
pub fn user_chat(chat: &str) -> Option<String> {
    let digits = chat.strip_suffix("@c.us").unwrap_or(chat);
    crate::registry::normalize_phone(digits)
        .ok()
        .filter(|d| d == digits)
        .map(|d| format!("{d}@c.us"))
}

/// A message id the page may use: what `MsgKey.newId()` makes, or any id of 1-64 letters,
/// digits and `-`/`_` (no `_`-separated key parts are confused by it: the id is the last part).
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Messages {
    /// Declares numbers that exist on WhatsApp (digits). Returns how many were new.
    pub fn declare(&mut self, phones: impl IntoIterator<Item = String>) -> usize {
        phones
            .into_iter()
            .filter(|p| self.numbers.insert(p.clone()))
            .count()
    }

    pub fn numbers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.numbers.iter().cloned().collect();
        v.sort();
        v
    }

    pub fn is_declared(&self, phone: &str) -> bool {
        self.numbers.contains(phone)
    }

    /// Records a message; the body and the id are checked as WhatsApp's server would.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per source; a struct would only rename them"
    )]
    pub fn record(
        &mut self,
        account: &str,
        chat: &str,
        id: String,
        body: String,
        from_me: bool,
        via: Via,
        page: Option<String>,
    ) -> Result<Record, MessageError> {
        let chat = user_chat(chat).ok_or_else(|| {
            MessageError::BadRequest(format!("chat {chat:?} is not <digits>@c.us"))
        })?;
        if !valid_id(&id) {
            return Err(MessageError::BadRequest(format!(
                "message id {id:?} is not 1-64 letters, digits, - or _"
            )));
        }
        if body.is_empty() || body.encode_utf16().count() > MAX_TEXT {
            return Err(MessageError::BadRequest(format!(
                "body must be 1-{MAX_TEXT} UTF-16 code units"
            )));
        }
        let record = Record {
            key: format!("{from_me}_{chat}_{id}"),
            id,
            account: account.to_string(),
            chat,
            from_me,
            body,
            t: now_secs(),
            // A message the server took is acknowledged by it; one received is delivered.
            ack: if from_me { 1 } else { 2 },
            via,
            page,
        };
        self.log.push(record.clone());
        Ok(record)
    }

    /// Moves a sent message's ack forward (2 delivered, 3 read, 4 played). `id` is the message
    /// id or its serialized key; it must be one the account sent.
    pub fn ack(&mut self, id: &str, ack: i8) -> Result<Record, MessageError> {
        if !(2..=4).contains(&ack) {
            return Err(MessageError::BadRequest(format!(
                "ack {ack} is not 2 (delivered), 3 (read) or 4 (played)"
            )));
        }
        let record = self
            .log
            .iter_mut()
            .rev()
            .find(|r| r.from_me && (r.id == id || r.key == id))
            .ok_or_else(|| MessageError::UnknownMessage(id.to_string()))?;
        if ack <= record.ack {
            return Err(MessageError::BadRequest(format!(
                "acks only move forward: {} is at {}",
                record.key, record.ack
            )));
        }
        record.ack = ack;
        Ok(record.clone())
    }

    /// Every message of `account` (all accounts if `None`), oldest first.
    pub fn list(&self, account: Option<&str>) -> Vec<Record> {
        self.log
            .iter()
            .filter(|r| account.is_none_or(|a| r.account == a))
            .cloned()
            .collect()
    }

    /// The history a page of `account` loads when it connects: the newest message per key.
    pub fn history(&self, account: &str) -> Vec<Record> {
        let mut seen = HashSet::new();
        let mut out: Vec<Record> = self
            .log
            .iter()
            .rev()
            .filter(|r| r.account == account && seen.insert(r.key.clone()))
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_checks_and_acks_move_forward() {
        let mut m = Messages::default();
        assert_eq!(m.declare(["549".repeat(4)]), 1);
        assert_eq!(m.declare(["549".repeat(4)]), 0);
        let bad = m.record(
            "5491100000000",
            "123@g.us",
            "A".into(),
            "hi".into(),
            true,
            Via::Page,
            None,
        );
        assert!(matches!(bad, Err(MessageError::BadRequest(_))));
        let empty = m.record(
            "5491100000000",
            "5491122334455",
            "A".into(),
            String::new(),
            true,
            Via::Page,
            None,
        );
        assert!(matches!(empty, Err(MessageError::BadRequest(_))));
        let r = m
            .record(
                "5491100000000",
                "5491122334455",
                "3EB0AA".into(),
                "hola".into(),
                true,
                Via::Page,
                None,
            )
            .unwrap();
        assert_eq!(r.key, "true_5491122334455@c.us_3EB0AA");
        assert_eq!(r.ack, 1);
        assert_eq!(m.ack("3EB0AA", 3).unwrap().ack, 3);
        assert!(matches!(m.ack(&r.key, 2), Err(MessageError::BadRequest(_))));
        assert!(matches!(
            m.ack("nope", 2),
            Err(MessageError::UnknownMessage(_))
        ));
        assert!(matches!(
            m.ack("3EB0AA", 5),
            Err(MessageError::BadRequest(_))
        ));
        let history = m.history("5491100000000");
        assert_eq!((history.len(), history[0].ack), (1, 3));
        assert!(m.history("5491199999999").is_empty());
    }
}
