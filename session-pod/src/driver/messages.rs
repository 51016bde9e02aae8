//! The page driver for messages: what the message scripts (`messages_watch.js`, `number_id.js`,
//! `send_text.js`) return and report, turned into the `messages::page` contract; and the
//! decisions around a send (the page's text limit, when a send is answered). Pure: the session
//! loop runs the scripts and keeps the sends waiting for their server ack.

use serde::Deserialize;

use crate::messages::page::{Ack, Message, MessageEvent, PageError, Reply, SentMessage};

/// Name of the CDP binding the page calls with each message event (JSON).
pub const MESSAGE_BINDING: &str = "__waAgentMessage";

/// WhatsApp's text limit as the web client enforces it, in UTF-16 code units (what the page's
/// `body.length` counts).
pub const MAX_TEXT: usize = 65_536;

/// What `messages_watch.js` says about the page's message listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WatchHealth {
    /// The listeners are on the page's message collection.
    pub attached: bool,
    /// This call (re)installed them.
    pub installed: bool,
    /// Which modules, or why they could not attach.
    pub detail: String,
}

/// What `send_text.js` returns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendOutcome {
    pub id: String,
    pub to: String,
    pub timestamp: i64,
    pub ack: i8,
    /// The page already held a message with this key: nothing was sent.
    pub existed: bool,
}

/// One event as `messages_watch.js` reports it through [`MESSAGE_BINDING`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum PageEvent {
    #[serde(rename_all = "camelCase")]
    Message {
        id: String,
        from: Option<String>,
        to: Option<String>,
        body: String,
        t: i64,
        from_me: bool,
        #[serde(rename = "type")]
        kind: String,
        is_group: bool,
        ack: i8,
    },
    Ack {
        id: String,
        ack: i8,
    },
}

/// Reads a binding payload; `Err` says what was wrong with it (a driver override's bug).
pub fn parse_event(payload: &str) -> Result<MessageEvent, String> {
    let event: PageEvent = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let ack = |a: i8| Ack::try_from(a);
    Ok(match event {
        PageEvent::Message {
            id,
            from,
            to,
            body,
            t,
            from_me,
            kind,
            is_group,
            ack: a,
        } => MessageEvent::Message(Message {
            id,
            from: from.unwrap_or_default(),
            to: to.unwrap_or_default(),
            body,
            timestamp: t,
            from_me,
            kind,
            is_group,
            ack: ack(a)?,
        }),
        PageEvent::Ack { id, ack: a } => MessageEvent::Ack { id, ack: ack(a)? },
    })
}

/// The page refuses what it cannot send: an empty text or one over its limit.
pub fn check_text(body: &str) -> Result<(), PageError> {
    if body.trim().is_empty() {
        return Err(PageError::Invalid("the text is empty".into()));
    }
    let units = body.encode_utf16().count();
    if units > MAX_TEXT {
        return Err(PageError::Invalid(format!(
            "the text is {units} UTF-16 code units; WhatsApp takes at most {MAX_TEXT}"
        )));
    }
    Ok(())
}

/// A send waiting for its server ack.
#[derive(Debug)]
pub struct PendingSend {
    pub sent: SentMessage,
    pub reply: Reply<SentMessage>,
}

/// What to do with a send once the page added it: answer now (server ack reached, or the
/// page refused it), or wait for its ack.
pub fn after_send(outcome: SendOutcome) -> Result<Result<SentMessage, PageError>, SentMessage> {
    let ack = Ack::try_from(outcome.ack).unwrap_or(Ack::Pending);
    let sent = SentMessage {
        id: outcome.id,
        to: outcome.to,
        timestamp: outcome.timestamp,
        ack,
    };
    match ack {
        Ack::Error => Ok(Err(PageError::Failed(format!(
            "the page marked {} as failed (ack -1)",
            sent.id
        )))),
        Ack::Pending => Err(sent),
        _ => Ok(Ok(sent)),
    }
}

/// Answers the pending sends an event settles (their server ack, or a failure); keeps the rest.
pub fn settle(pending: &mut Vec<PendingSend>, event: &MessageEvent) {
    let MessageEvent::Ack { id, ack } = event else {
        return;
    };
    if *ack == Ack::Pending {
        return;
    }
    let Some(i) = pending.iter().position(|p| &p.sent.id == id) else {
        return;
    };
    let PendingSend { mut sent, reply } = pending.swap_remove(i);
    let answer = if *ack == Ack::Error {
        Err(PageError::Failed(format!(
            "WhatsApp refused {} (ack -1)",
            sent.id
        )))
    } else {
        sent.ack = *ack;
        Ok(sent)
    };
    // The asker may have given up (its own deadline): nothing to answer then.
    let _ = reply.send(answer);
}

/// Answers every pending send with `error` (the page they waited on is gone or unlinked).
pub fn abandon(pending: &mut Vec<PendingSend>, error: &PageError) {
    for p in pending.drain(..) {
        let _ = p.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[test]
    fn events_from_the_page() {
        let m = parse_event(
            r#"{"kind":"message","id":"false_5491122334455@c.us_ABC","from":"5491122334455@c.us","to":"5491100000000@c.us","body":"hola","t":1700000000,"fromMe":false,"type":"chat","isGroup":false,"ack":0}"#,
        )
        .expect("message");
        let MessageEvent::Message(m) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (m.from.as_str(), m.body.as_str(), m.from_me, m.ack),
            ("5491122334455@c.us", "hola", false, Ack::Pending)
        );
        assert_eq!(
            parse_event(r#"{"kind":"ack","id":"true_x@c.us_A","ack":3}"#),
            Ok(MessageEvent::Ack {
                id: "true_x@c.us_A".into(),
                ack: Ack::Read
            })
        );
        assert!(parse_event(r#"{"kind":"ack","id":"x","ack":9}"#).is_err());
        assert!(parse_event("not json").is_err());
    }

    #[test]
    fn text_limits() {
        assert!(check_text("hola").is_ok());
        assert!(matches!(check_text("  \n"), Err(PageError::Invalid(_))));
        assert!(check_text(&"a".repeat(MAX_TEXT)).is_ok());
        assert!(matches!(
            check_text(&"a".repeat(MAX_TEXT + 1)),
            Err(PageError::Invalid(_))
        ));
        // An emoji is two UTF-16 units, as the page counts.
        assert!(matches!(
            check_text(&"😀".repeat(MAX_TEXT / 2 + 1)),
            Err(PageError::Invalid(_))
        ));
    }

    #[test]
    fn a_send_is_answered_at_its_server_ack() {
        let outcome = |ack| SendOutcome {
            id: "true_5491122334455@c.us_3EB0AA".into(),
            to: "5491122334455@c.us".into(),
            timestamp: 1,
            ack,
            existed: false,
        };
        assert!(matches!(after_send(outcome(1)), Ok(Ok(s)) if s.ack == Ack::Server));
        assert!(matches!(after_send(outcome(3)), Ok(Ok(s)) if s.ack == Ack::Read));
        assert!(matches!(
            after_send(outcome(-1)),
            Ok(Err(PageError::Failed(_)))
        ));
        let Err(sent) = after_send(outcome(0)) else {
            panic!("pending")
        };
        let (tx, mut rx) = oneshot::channel();
        let mut pending = vec![PendingSend { sent, reply: tx }];
        settle(
            &mut pending,
            &MessageEvent::Ack {
                id: "other".into(),
                ack: Ack::Server,
            },
        );
        assert_eq!(pending.len(), 1);
        assert!(rx.try_recv().is_err());
        settle(
            &mut pending,
            &MessageEvent::Ack {
                id: "true_5491122334455@c.us_3EB0AA".into(),
                ack: Ack::Server,
            },
        );
        assert!(pending.is_empty());
        assert_eq!(
            rx.try_recv().expect("answered").expect("sent").ack,
            Ack::Server
        );

        let (tx, mut rx) = oneshot::channel();
        let Err(sent) = after_send(outcome(0)) else {
            panic!("pending")
        };
        let mut pending = vec![PendingSend { sent, reply: tx }];
        let gone = PageError::NotReady {
            status: "connecting".into(),
        };
        abandon(&mut pending, &gone);
        assert_eq!(rx.try_recv().expect("answered"), Err(gone));
    }
}
