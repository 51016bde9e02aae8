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
use crate::auth::users::Users;
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
            if let Some(reason) = ended(&claims, users.as_deref(), now) {
                end(&socket, &hub, reason);
            }
        }
    }
}

/// Why a socket's authentication has ended by `now` (seconds): its token expired, or `users`
/// (the users file, when the hub has one) revoked it. `None` while it stands.
pub fn ended(claims: &Claims, users: Option<&Users>, now: u64) -> Option<&'static str> {
    if claims.exp <= now {
        Some("token expired")
    } else if users.is_some_and(|u| u.revoked(&claims.sub, claims.iat)) {
        Some("token revoked")
    } else {
        None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn authentication_ends_at_expiry_or_when_the_users_file_revokes_it() {
        let claims = Claims {
            sub: "ana".into(),
            tenants: vec![],
            role: Role::User,
            exp: 1_000,
            iat: Some(500),
            iss: None,
            aud: None,
        };
        assert_eq!(ended(&claims, None, 999), None);
        assert_eq!(ended(&claims, None, 1_000), Some("token expired"));
        let h = crate::auth::users::hash_password("x").unwrap();
        let users = |nb: &str| {
            Users::parse(&format!(
                "users: [{{username: ana, passwordHash: '{h}', role: user, tokensNotBefore: '{nb}'}}]"
            ))
            .unwrap()
        };
        // iat 500 is 1970-01-01T00:08:20Z.
        let before = users("1970-01-01T00:08:00Z");
        let after = users("1970-01-01T00:09:00Z");
        assert_eq!(ended(&claims, Some(&before), 999), None);
        assert_eq!(ended(&claims, Some(&after), 999), Some("token revoked"));
        assert_eq!(ended(&claims, Some(&after), 1_000), Some("token expired"));
    }
}
