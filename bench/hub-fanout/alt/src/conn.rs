//! One websocket = one task: the upgrade, the reader, the writer and the heartbeat are the
//! branches of one `select!` loop over state the task owns.
//!
//! engineioxide runs three tasks per websocket (the upgrade + reader, the writer, the
//! heartbeat) joined by channels (the packet queue, a heartbeat channel, a `watch` for
//! volatile packets), each task a heap cell of 1–3 KiB. Here the only heap objects per socket
//! are this task's cell, tungstenite's buffers, the `Outbox` and the room entries.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::Shared;
use crate::protocol::{self, Inbound};
use crate::rooms::Outbox;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The socket's whole life, spawned by the upgrade handler (the 101 is already answered).
pub async fn run(on_upgrade: OnUpgrade, shared: Arc<Shared>) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    // The same websocket settings as wa-hub (`--ws-read-buffer-bytes`, max sizes from its
    // payload limit), so the two servers differ in the engine.io layer only.
    let config = WebSocketConfig::default()
        .read_buffer_size(shared.config.ws_read_buffer_bytes)
        .max_message_size(Some(shared.config.max_payload as usize))
        .max_frame_size(Some(shared.config.max_payload as usize));
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let id = shared.next_id();
    let mut socket = Socket {
        id,
        ws,
        outbox: Arc::new(Outbox::new(shared.config.queue_cap)),
        joined: Vec::new(),
        connected: false,
        shared,
    };
    // Errors only end the connection: nobody is left to tell.
    let _ = socket.serve().await;
    for name in std::mem::take(&mut socket.joined) {
        socket.shared.rooms.leave(&name, id);
    }
}

struct Socket {
    id: u64,
    ws: Ws,
    outbox: Arc<Outbox>,
    /// Session rooms this socket is in, to leave them when it goes.
    joined: Vec<Box<str>>,
    /// socket.io CONNECT received (events before it are ignored).
    connected: bool,
    shared: Arc<Shared>,
}

enum Flow {
    Go,
    Pong,
    Stop,
}

impl Socket {
    async fn serve(&mut self) -> Result<(), tungstenite::Error> {
        let cfg = &self.shared.config;
        let (interval, timeout) = (cfg.ping_interval, cfg.ping_timeout);
        let sid = self.shared.sid(self.id, 0);
        self.ws
            .send(text(protocol::open(
                &sid,
                ms(interval),
                ms(timeout),
                cfg.max_payload,
            )))
            .await?;

        // One timer serves both heartbeat states: waiting to ping, and waiting for the pong.
        let timer = tokio::time::sleep(interval);
        tokio::pin!(timer);
        let mut pinged_at: Option<Instant> = None;
        loop {
            // Field borrows, so each branch's future borrows only what it needs; the futures
            // are dropped before a branch's handler runs, which then has `self` again.
            let (ws, outbox) = (&mut self.ws, &self.outbox);
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => match self.on_text(&t).await? {
                        Flow::Go => {}
                        Flow::Stop => return Ok(()),
                        Flow::Pong => {
                            if let Some(at) = pinged_at.take() {
                                timer.as_mut().reset(at + interval);
                            }
                        }
                    },
                    // Control frames are answered by tungstenite itself; binary is not used.
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                },
                () = outbox.wake.notified() => {
                    for frame in self.outbox.take() {
                        self.ws.feed(Message::Text(frame)).await?;
                    }
                    self.ws.flush().await?;
                }
                () = &mut timer => {
                    if pinged_at.is_some() {
                        // No pong within the timeout: the client is gone.
                        return Ok(());
                    }
                    self.ws.send(Message::Text(Utf8Bytes::from_static(protocol::PING))).await?;
                    let now = Instant::now();
                    pinged_at = Some(now);
                    timer.as_mut().reset(now + timeout);
                }
            }
        }
    }

    async fn on_text(&mut self, t: &Utf8Bytes) -> Result<Flow, tungstenite::Error> {
        match protocol::parse(t.as_str()) {
            Inbound::Pong => return Ok(Flow::Pong),
            Inbound::Close => return Ok(Flow::Stop),
            Inbound::Connect if !self.connected => {
                self.connected = true;
                let sid = self.shared.sid(self.id, 1);
                self.ws.feed(text(protocol::connected(&sid))).await?;
                // What wa-hub and the peer emit once the handshake token is accepted; the
                // bench's clients subscribe when they see it.
                let ok = json!({ "success": true });
                self.ws
                    .feed(text(protocol::event("authenticated", &ok)))
                    .await?;
                self.ws.flush().await?;
            }
            Inbound::Event { name, data, ack } if self.connected => {
                let reply = if name == "subscribe-session" {
                    self.subscribe(&data).await?
                } else {
                    json!({ "error": "BAD_REQUEST", "message": "unknown event" })
                };
                if let Some(id) = ack {
                    self.ws.feed(text(protocol::ack(id, &reply))).await?;
                }
                self.ws.flush().await?;
            }
            _ => {}
        }
        Ok(Flow::Go)
    }

    /// `subscribe-session {instance_id}`: any session is accepted (no Kubernetes here); the
    /// session's status is sent first, then the ack.
    async fn subscribe(&mut self, data: &Value) -> Result<Value, tungstenite::Error> {
        let name = match data {
            Value::String(s) => Some(s.as_str()),
            Value::Object(m) => m.get("instance_id").and_then(Value::as_str),
            _ => None,
        };
        let Some(name) = name else {
            return Ok(json!({ "error": "BAD_REQUEST", "message": "expected {instance_id}" }));
        };
        let snapshot = self.shared.rooms.join(name, self.id, &self.outbox);
        if !self.joined.iter().any(|j| &**j == name) {
            self.joined.push(name.into());
        }
        self.ws.feed(Message::Text(snapshot)).await?;
        Ok(json!({ "ok": true }))
    }
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
