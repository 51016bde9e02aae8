//! socket.io (docs/design.md §4): authentication, per-session rooms, requests. The events and
//! their payloads are in [`contract`].
//!
//! A socket carries its verified claims in its extensions. Until then it may only
//! `authenticate`; it is dropped after the configured timeout. A socket joins the room of a
//! session only after the same authorization check as REST, so room broadcasts reach only
//! authorized subscribers.

pub mod contract;
pub mod detach;
pub mod expiry;
pub mod push;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;

use crate::app::Hub;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::snapshot::Snapshot;
use contract::{
    Ack, Authenticated, ConnectionError, QrCode, QrExpired, ServerEvent, SessionStatus, client,
};

/// The rooms a socket joined through `subscribe-session` (for the subscriptions gauge, and to
/// leave them all when its authentication ends).
#[derive(Clone, Default)]
struct Subscriptions(Arc<Mutex<HashSet<String>>>);

impl Subscriptions {
    /// Every room the socket subscribed to, forgotten here (the caller leaves them).
    fn take_all(socket: &SocketRef) -> Vec<String> {
        socket
            .extensions
            .get::<Subscriptions>()
            .map(|s| {
                s.0.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain()
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn register(io: &SocketIo) {
    // Handlers are registered in a connect *middleware*: socketioxide awaits middlewares before
    // it sends the CONNECT packet, but runs the connect handler in a task spawned after it. A
    // client emitting right on `connect` (as the frontend and socket.io-client's buffered emits
    // do) could otherwise reach a socket with no handlers yet, and the event would be lost.
    io.ns("/", on_connect.with(prepare));
}

/// Before CONNECT is sent: event handlers, bookkeeping, and the handshake token (so an event
/// that follows CONNECT at once is already authorized). Never refuses a connection: a bad
/// token is answered after CONNECT, in [`on_connect`], like the `authenticate` event.
async fn prepare(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(hub): State<Arc<Hub>>,
) -> Result<(), std::convert::Infallible> {
    hub.metrics.sockets_connected.inc();
    socket.extensions.insert(Subscriptions::default());
    socket.on_disconnect(on_disconnect);
    socket.on(client::AUTHENTICATE, on_authenticate);
    socket.on(client::SUBSCRIBE_SESSION, on_subscribe);
    socket.on(client::UNSUBSCRIBE_SESSION, on_unsubscribe);
    socket.on(client::REQUEST_QR, on_request_qr);
    socket.on(client::SEND_MESSAGE, on_send_message);
    socket.on_fallback(on_unknown);
    if let Some(token) = handshake_token(auth)
        && let Ok(claims) = hub.authenticate(&token)
    {
        socket.extensions.insert(Arc::new(claims));
    }
    Ok(())
}

fn handshake_token(auth: Result<Value, impl std::fmt::Debug>) -> Option<String> {
    auth.ok()
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
}

async fn on_connect(socket: SocketRef, TryData(auth): TryData<Value>, State(hub): State<Arc<Hub>>) {
    if socket.extensions.get::<Arc<Claims>>().is_some() {
        send(&socket, &Authenticated::OK);
        return;
    }
    if let Some(token) = handshake_token(auth) {
        // Refused in `prepare`: verify again to emit the reason.
        authenticate(&socket, &hub, &token, None);
    }
    if socket.extensions.get::<Arc<Claims>>().is_none() {
        drop_unless_authenticated(&socket, hub.config.auth_timeout());
    }
}

/// Disconnect the socket `timeout` from now unless it is authenticated by then.
fn drop_unless_authenticated(socket: &SocketRef, timeout: std::time::Duration) {
    let s = socket.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        if s.connected() && s.extensions.get::<Arc<Claims>>().is_none() {
            let err = ApiError::new(crate::error::Code::Timeout, "not authenticated in time");
            send(&s, &ConnectionError::of(&err, None));
            let _ = s.disconnect();
        }
    });
}

async fn on_disconnect(socket: SocketRef, State(hub): State<Arc<Hub>>) {
    hub.metrics.sockets_connected.dec();
    if let Some(subs) = socket.extensions.get::<Subscriptions>() {
        let n = subs.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        hub.metrics.subscriptions.dec_by(n as i64);
    }
}

fn authenticate(socket: &SocketRef, hub: &Hub, token: &str, ack: Option<AckSender>) {
    match hub.authenticate(token) {
        Ok(claims) => {
            socket.extensions.insert(Arc::new(claims));
            send(socket, &Authenticated::OK);
            if let Some(ack) = ack {
                let _ = ack.send(&Authenticated::OK);
            }
        }
        Err(e) => fail(socket, ack, &e, None),
    }
}

async fn on_authenticate(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(hub): State<Arc<Hub>>,
) {
    let token = data.ok().and_then(|d| match d {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("token").and_then(|t| t.as_str()).map(str::to_owned),
        _ => None,
    });
    match token {
        Some(t) => authenticate(&socket, &hub, &t, Some(ack)),
        None => fail(
            &socket,
            Some(ack),
            &ApiError::bad_request("authenticate needs {token}"),
            None,
        ),
    }
}

/// Emit one event of the contract to one socket. A failed emit means the socket is gone or
/// its buffer is full; either way there is nobody to tell.
fn send<E: ServerEvent>(socket: &SocketRef, event: &E) {
    let _ = socket.emit(E::NAME, event);
}

/// Emit `connection-error` (and answer the ack, when one was asked for).
fn fail(socket: &SocketRef, ack: Option<AckSender>, err: &ApiError, id: Option<&str>) {
    let payload = ConnectionError::of(err, id);
    send(socket, &payload);
    if let Some(ack) = ack {
        let _ = ack.send(&payload);
    }
}

/// The claims of an authenticated socket whose token has not expired or been revoked since
/// (between two sweeps of [`expiry`], which end the socket's subscriptions).
fn claims(socket: &SocketRef, hub: &Hub) -> Result<Arc<Claims>, ApiError> {
    let c = socket
        .extensions
        .get::<Arc<Claims>>()
        .ok_or_else(|| ApiError::unauthenticated("authenticate first"))?;
    let users = hub.users.as_ref().map(|u| u.current());
    if let Some(reason) = expiry::ended(&c, users.as_deref(), jsonwebtoken::get_current_timestamp())
    {
        expiry::unauthenticate(socket, hub);
        return Err(ApiError::unauthenticated(reason));
    }
    Ok(c)
}

/// `{instance_id, namespace?}` (or a bare string id).
fn requested_session(
    data: Result<Value, impl std::fmt::Debug>,
) -> Result<(String, Option<String>), ApiError> {
    let bad = || ApiError::bad_request("expected {instance_id}");
    match data.map_err(|_| bad())? {
        Value::String(s) => Ok((s, None)),
        Value::Object(m) => {
            let id = m
                .get("instance_id")
                .and_then(|v| v.as_str())
                .ok_or_else(bad)?
                .to_owned();
            let ns = match m.get("namespace") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad()),
            };
            Ok((id, ns))
        }
        _ => Err(bad()),
    }
}

/// For error payloads: echo the id only when it is a plausible one (never 300 characters back).
fn echoable_id(id: &str) -> Option<&str> {
    crate::ids::validate(id).ok().map(|()| id)
}

/// Emit the current state of one session to one socket (on subscribe and request-qr).
fn emit_snapshot(socket: &SocketRef, hub: &Hub, snap: &Snapshot) {
    send(socket, &SessionStatus::of(snap));
    if snap.has_valid_qr(k8s_openapi::jiff::Timestamp::now()) {
        if let Some(image) = push::qr_image(hub, snap)
            && let Some(ev) = QrCode::of(snap, &image)
        {
            send(socket, &ev);
        }
    } else if snap.qr_status == crds::QrStatus::Expired.as_str() {
        send(socket, &QrExpired::of(snap));
    }
}

async fn on_subscribe(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(hub): State<Arc<Hub>>,
) {
    let (id, ns) = match requested_session(data) {
        Ok(t) => t,
        Err(e) => return fail(&socket, Some(ack), &e, None),
    };
    hub.synced().await;
    let result = claims(&socket, &hub).and_then(|c| hub.authorize(&c, &id, ns.as_deref()));
    match result {
        Ok(session) => {
            let snap = Snapshot::of(&session);
            let room = snap.room();
            if let Some(subs) = socket.extensions.get::<Subscriptions>()
                && subs
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(room.clone())
            {
                hub.metrics.subscriptions.inc();
            }
            socket.join(room);
            emit_snapshot(&socket, &hub, &snap);
            let _ = ack.send(&Ack::with(&snap));
        }
        Err(e) => fail(&socket, Some(ack), &e, echoable_id(&id)),
    }
}

async fn on_unsubscribe(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(hub): State<Arc<Hub>>,
) {
    let (id, ns) = match requested_session(data) {
        Ok(t) => t,
        Err(e) => return fail(&socket, Some(ack), &e, None),
    };
    if let Err(e) = claims(&socket, &hub).and_then(|_| crate::ids::validate(&id)) {
        return fail(&socket, Some(ack), &e, echoable_id(&id));
    }
    // Leave whatever room of that name this socket is in (unknown or deleted sessions included).
    let Some(subs) = socket.extensions.get::<Subscriptions>() else {
        return;
    };
    let left: Vec<String> = {
        let mut set = subs.0.lock().unwrap_or_else(|p| p.into_inner());
        let matching: Vec<String> = set
            .iter()
            .filter(|r| {
                r.rsplit_once('/')
                    .is_some_and(|(rns, rid)| rid == id && ns.as_deref().is_none_or(|n| n == rns))
            })
            .cloned()
            .collect();
        for r in &matching {
            set.remove(r);
        }
        matching
    };
    hub.metrics.subscriptions.dec_by(left.len() as i64);
    for r in left {
        socket.leave(r);
    }
    let _ = ack.send(&Ack::EMPTY);
}

async fn on_request_qr(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(hub): State<Arc<Hub>>,
) {
    let (id, ns) = match requested_session(data) {
        Ok(t) => t,
        Err(e) => return fail(&socket, Some(ack), &e, None),
    };
    let c = match claims(&socket, &hub) {
        Ok(c) => c,
        Err(e) => return fail(&socket, Some(ack), &e, echoable_id(&id)),
    };
    match hub.request_qr(&c, &id, ns.as_deref()).await {
        Ok(snap) => {
            emit_snapshot(&socket, &hub, &snap);
            let _ = ack.send(&Ack::with(&snap));
        }
        Err(e) => fail(&socket, Some(ack), &e, echoable_id(&id)),
    }
}

/// `send-message {instance_id, namespace?, to, text, idempotency_key?}`: the REST send's path.
async fn on_send_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(hub): State<Arc<Hub>>,
) {
    let parsed = data
        .map_err(|_| ApiError::bad_request("expected {instance_id, to, text}"))
        .and_then(|v| {
            let key = match v.get("idempotency_key") {
                None | Some(Value::Null) => None,
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => {
                    return Err(ApiError::new(
                        crate::error::Code::InvalidIdempotencyKey,
                        "idempotency_key must be a string",
                    ));
                }
            };
            let message: crate::agents::SendMessage = serde_json::from_value(v.clone())
                .map_err(|_| ApiError::bad_request("expected {instance_id, to, text}"))?;
            let (id, ns) = requested_session(Ok::<_, ()>(v))?;
            Ok((id, ns, message, key))
        });
    let (id, ns, message, key) = match parsed {
        Ok(t) => t,
        Err(e) => return fail(&socket, Some(ack), &e, None),
    };
    let c = match claims(&socket, &hub) {
        Ok(c) => c,
        Err(e) => return fail(&socket, Some(ack), &e, echoable_id(&id)),
    };
    match hub
        .send_message(&c, &id, ns.as_deref(), &message, key.as_deref())
        .await
    {
        Ok(sent) => {
            let _ = ack.send(&contract::SentAck {
                ok: true,
                message: &sent,
            });
        }
        Err(e) => fail(&socket, Some(ack), &e, echoable_id(&id)),
    }
}

async fn on_unknown(socket: SocketRef, Event(event): Event, ack: AckSender) {
    let shown: String = event.chars().take(64).collect();
    fail(
        &socket,
        Some(ack),
        &ApiError::bad_request(format!("unknown event {shown:?}")),
        None,
    );
}
