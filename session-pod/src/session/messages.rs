//! The session loop's side of messages, I/O only: answers the message API's requests on the
//! page it owns, forwards the page's message events, keeps the message listeners installed,
//! and keeps the sends waiting for their server ack (decisions in `driver::messages`).

use crds::SessionState;

use crate::browser::BrowserSession;
use crate::driver::messages::{self as decide, PendingSend, SendOutcome, WatchHealth};
use crate::error::Error;
use crate::messages::page::{PageError, PageRequest};

use super::Agent;

impl Agent {
    /// The page cannot take requests now: the session's status says why.
    pub(super) fn not_ready(&self) -> PageError {
        PageError::NotReady {
            status: self.machine.state().as_str().to_string(),
        }
    }

    /// Whether the page can send and receive: linked, as the status says.
    pub(super) fn linked(&self, page_connected: bool) -> bool {
        page_connected && self.machine.state() == SessionState::Connected
    }

    /// Answers a request without a page (no browser, or not linked).
    pub(super) fn refuse(&self, req: PageRequest) {
        let error = self.not_ready();
        match req {
            PageRequest::NumberId { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            PageRequest::SendText { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Answers the sends still waiting for their ack: the page they waited on is gone or no
    /// longer linked.
    pub(super) fn abandon_sends(&mut self) {
        let error = self.not_ready();
        decide::abandon(&mut self.sends, &error);
    }

    /// Performs a request on the linked page.
    pub(super) async fn serve(&mut self, b: &BrowserSession, req: PageRequest) {
        match req {
            PageRequest::NumberId { to, reply } => {
                let result = match b
                    .run(&self.driver.number_id, &[serde_json::Value::String(to)])
                    .await
                {
                    Ok(serde_json::Value::String(id)) => Ok(Some(id)),
                    Ok(serde_json::Value::Null) => Ok(None),
                    Ok(other) => Err(PageError::Failed(format!(
                        "number_id returned {other} (a string or null expected)"
                    ))),
                    Err(e) => Err(PageError::Failed(e.to_string())),
                };
                let _ = reply.send(result);
            }
            PageRequest::SendText {
                chat,
                body,
                id,
                reply,
            } => {
                if let Err(e) = decide::check_text(&body) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let args = [chat.clone().into(), body.into(), id.clone().into()];
                let outcome = match b.run(&self.driver.send_text, &args).await {
                    Ok(v) => serde_json::from_value::<SendOutcome>(v)
                        .map_err(|e| PageError::Failed(format!("send_text returned {e}"))),
                    Err(e) => Err(PageError::Failed(e.to_string())),
                };
                match outcome {
                    Ok(outcome) => {
                        if outcome.existed {
                            tracing::info!(message = %outcome.id, "the page already holds this message: not sent again");
                        }
                        self.metrics.messages_sent.inc();
                        match decide::after_send(outcome) {
                            Ok(answer) => {
                                let _ = reply.send(answer);
                            }
                            Err(sent) => self.sends.push(PendingSend { sent, reply }),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%chat, message_id = %id, error = %e, "sending a text failed");
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    /// A message event from the page: settles the sends it acknowledges and goes to the
    /// message API's subscribers.
    pub(super) fn on_message_event(&mut self, payload: &str) {
        match decide::parse_event(payload) {
            Ok(event) => {
                self.metrics.message_events.inc();
                decide::settle(&mut self.sends, &event);
                // No subscriber is no error: the events are the API's to keep or not.
                let _ = self.page.events.send(event);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the page reported a message event the agent cannot read")
            }
        }
    }

    /// Keeps the page's message listeners installed while it is linked; says how they are
    /// (`None`: the page did not answer, which the hang watchdog judges, not this).
    pub(super) async fn watch_messages(&mut self, b: &BrowserSession) -> Option<WatchHealth> {
        match b.run(&self.driver.messages_watch, &[]).await {
            Ok(v) => Some(serde_json::from_value(v).unwrap_or_else(|e| WatchHealth {
                detail: format!("messages_watch returned {e}"),
                ..Default::default()
            })),
            Err(Error::ScriptTimeout { .. } | Error::Cdp(_)) => None,
            Err(e) => Some(WatchHealth {
                detail: e.to_string(),
                ..Default::default()
            }),
        }
    }
}

impl Agent {
    /// One look at the message listeners of the linked page (installing them when missing);
    /// the machine says on the status whether the session can receive.
    pub(super) async fn watch_messages_on(&mut self, b: &BrowserSession, was_linked: bool) {
        let Some(health) = self.watch_messages(b).await else {
            return;
        };
        let attached_before = self.metrics.message_listeners.get() == 1;
        if health.attached {
            if health.installed && was_linked && attached_before {
                // Installed on an earlier look of this page: something removed them.
                tracing::warn!(detail = %health.detail, "the message listeners were gone from the linked page; reinstalled");
            } else if health.installed {
                tracing::info!(detail = %health.detail, "listening to the page's messages");
            }
            self.metrics.message_listeners.set(1);
        } else {
            if attached_before {
                tracing::error!(detail = %health.detail, "cannot listen to the page's messages: incoming messages are not received");
            }
            self.metrics.message_listeners.set(0);
        }
        let result = if health.attached {
            Ok(())
        } else {
            Err(health.detail)
        };
        let actions = self.handle(crate::state::Event::Receiving(result));
        self.perform(actions);
    }
}
