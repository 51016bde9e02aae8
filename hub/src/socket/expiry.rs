//! A socket's authentication ends when its token expires or the users file revokes it
//! (`tokensNotBefore`): the socket leaves every session room at once, so no push reaches it
//! after, loses its claims, is told `connection-error UNAUTHENTICATED`, and is dropped unless
//! it authenticates again within the auth timeout, as a new socket would be.
//!
//! One sweep a second over the connected sockets rather than a timer per socket: a sleeping
//! task per socket would cost memory on every one of thousands of sockets for hours, and a
//! sweep also catches a revocation, which has no time known in advance.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;

use crate::app::Hub;
use crate::auth::Claims;
use crate::error::ApiError;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(io: SocketIo, hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = jsonwebtoken::get_current_timestamp();
        let users = hub.users.as_ref().map(|u| u.current());
        for socket in io.sockets() {
            let Some(claims) = socket.extensions.get::<Arc<Claims>>() else {
                continue;
            };
            let reason = if claims.exp <= now {
                "token expired"
            } else if users
                .as_ref()
                .is_some_and(|u| u.revoked(&claims.sub, claims.iat))
            {
                "token revoked"
            } else {
                continue;
            };
            end(&socket, &hub, reason);
        }
    }
}

/// End the socket's authentication and tell it why (see the module docs).
pub fn end(socket: &SocketRef, hub: &Hub, reason: &str) {
    unauthenticate(socket, hub);
    super::fail(socket, None, &ApiError::unauthenticated(reason), None);
}

/// End the socket's authentication without a word: for a request that found the token expired
/// and answers that itself.
pub fn unauthenticate(socket: &SocketRef, hub: &Hub) {
    socket.extensions.remove::<Arc<Claims>>();
    let rooms = super::Subscriptions::take_all(socket);
    hub.metrics.subscriptions.dec_by(rooms.len() as i64);
    socket.leave(rooms);
    super::drop_unless_authenticated(socket, hub.config.auth_timeout());
}
