//! Authentication against hostile input (issue 28): the login throttle under parallel guesses
//! and behind proxies, tokens that must be refused alike over REST and socket.io, a token's
//! end (expiry, revocation) ending its socket's subscriptions.

use std::time::Duration;

use devcluster_testing::wait_for_value;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::support::bridge::Bridge;
use crate::support::*;

async fn login_from(hub: &HubProc, user: &str, password: &str, forwarded: Option<&str>) -> u16 {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/api/auth/login", hub.url))
        .json(&json!({"username": user, "password": password}));
    if let Some(f) = forwarded {
        rb = rb.header("x-forwarded-for", f);
    }
    rb.send().await.unwrap().status().as_u16()
}

fn count(statuses: &[u16], want: u16) -> usize {
    statuses.iter().filter(|s| **s == want).count()
}

#[tokio::test]
async fn parallel_guesses_cannot_pass_the_login_limit() {
    let e = env("hub-guesses").await;
    let hub = e.hub().await; // --login-max-failures 5 (the default)
    let guesses = (0..12).map(|_| {
        let url = hub.url.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/auth/login"))
                .json(&json!({"username": "bob", "password": "guess"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (5, 7),
        "exactly the limit reaches the password check: {statuses:?}"
    );
}

#[tokio::test]
async fn a_guesser_is_throttled_by_its_own_address_behind_a_trusted_proxy() {
    let e = env("hub-proxy").await;
    // The test talks to the hub from 127.0.0.1, standing for an ingress controller.
    let hub = e.hub_with(&["--trusted-proxies", "127.0.0.0/8"]).await;
    let guesser = "203.0.113.66";
    for _ in 0..5 {
        assert_eq!(login_from(&hub, "ana", "guess", Some(guesser)).await, 401);
    }
    assert_eq!(login_from(&hub, "ana", "guess", Some(guesser)).await, 429);
    assert_eq!(
        login_from(&hub, "ana", PASSWORD, Some(guesser)).await,
        429,
        "the guesser's address stays throttled, even with the right password"
    );
    // The real user, elsewhere, is not locked out by someone else's guesses; nor is the
    // guesser's forged first hop believed (the proxy appended the real address last).
    assert_eq!(
        login_from(&hub, "ana", PASSWORD, Some("198.51.100.7")).await,
        200
    );
    assert_eq!(
        login_from(
            &hub,
            "ana",
            "guess",
            Some(&format!("198.51.100.7, {guesser}"))
        )
        .await,
        429
    );

    // Without --trusted-proxies nobody's X-Forwarded-For is believed: a guesser forging a new
    // address per request is still one client.
    let plain = e.hub().await;
    for i in 0..5 {
        let forged = format!("192.0.2.{i}");
        assert_eq!(login_from(&plain, "bob", "guess", Some(&forged)).await, 401);
    }
    assert_eq!(
        login_from(&plain, "bob", "guess", Some("192.0.2.99")).await,
        429
    );
}

#[tokio::test]
async fn tokens_are_refused_alike_over_rest_and_socket_io() {
    let e = env("hub-jwt-edges").await;
    e.session("a-one", "a").await;
    let hub = e.hub().await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "ana", "tenants": ["a"], "role": "user", "exp": now + 600});
    let hs = Header::new(Algorithm::HS256);
    let mut not_yet = claims.clone();
    not_yet["nbf"] = (now + 300).into();
    let mut crit = hs.clone();
    crit.crit = Some(vec!["x-unknown".into()]);
    let mut huge = claims.clone();
    huge["pad"] = "x".repeat(10 * 1024).into();
    let refused = [
        ("nbf in the future", signed(&hs, &not_yet)),
        ("an unknown critical header", signed(&crit, &claims)),
        ("a 10 KiB token", signed(&hs, &huge)),
    ];
    let mut b = Bridge::start().await;
    for (i, (what, t)) in refused.iter().enumerate() {
        let rest = get(&sessions_url(&hub, true), Some(t)).await;
        assert_err(&rest, 401, "UNAUTHENTICATED");
        let c = format!("c{i}");
        b.connect(&c, &hub.url, None, vec![]).await;
        let ack = b.emit_ack(&c, "authenticate", json!({"token": t})).await;
        assert_eq!(ack["error"], "UNAUTHENTICATED", "{what}: {ack}");
        assert_eq!(ack["message"], rest.1["message"], "{what}: the same reason");
    }
    // Whitespace around a token is no part of it, on either transport.
    let padded = format!("  {}\t", signed(&hs, &claims));
    assert_eq!(get(&sessions_url(&hub, true), Some(&padded)).await.0, 200);
    b.connect("padded", &hub.url, Some(json!({"token": padded})), vec![])
        .await;
    b.event("padded", "authenticated", None).await;
}

#[tokio::test]
async fn an_expired_token_ends_the_sockets_subscriptions() {
    let e = env("hub-expiry").await;
    e.session("a-one", "a").await;
    let hub = e.hub_with(&["--auth-timeout-secs", "3"]).await;
    let mut b = Bridge::start().await;
    // A witness with a long token sees every push the expiring socket would have seen.
    b.subscribed(
        "witness",
        &hub.url,
        &token("ana", &["a"], "user", 600),
        "a-one",
    )
    .await;
    b.subscribed("short", &hub.url, &token("ana", &["a"], "user", 4), "a-one")
        .await;
    b.subscribed("lazy", &hub.url, &token("ana", &["a"], "user", 4), "a-one")
        .await;

    for c in ["short", "lazy"] {
        let ended = b.event(c, "connection-error", None).await;
        assert_eq!(
            (ended["error"].as_str(), ended["message"].as_str()),
            (Some("UNAUTHENTICATED"), Some("token expired")),
            "{c}: {ended}"
        );
    }
    for i in 0..2 {
        let at = rfc3339_in(10 + i);
        agent_status(
            &e.client,
            &e.ns,
            "a-one",
            json!({"status": "connecting", "updatedAt": at}),
        )
        .await;
        b.expect("the witness gets the push", |m| {
            m["client"] == "witness"
                && m["event"] == "session-status"
                && m["data"]["updatedAt"] == at.as_str()
        })
        .await;
    }
    b.drain();
    let after_expiry: Vec<&Value> = b
        .seen
        .iter()
        .filter(|m| {
            m["client"] != "witness"
                && m["event"] == "session-status"
                && m["data"]["status"] == "connecting"
        })
        .collect();
    assert!(
        after_expiry.is_empty(),
        "pushes after expiry: {after_expiry:#?}"
    );

    // The client re-authenticates with a fresh token and subscribes again...
    assert_eq!(
        b.emit_ack(
            "short",
            "authenticate",
            json!({"token": token("ana", &["a"], "user", 600)})
        )
        .await,
        json!({"success": true})
    );
    assert_eq!(
        b.emit_ack(
            "short",
            "subscribe-session",
            json!({"instance_id": "a-one"})
        )
        .await["ok"],
        true
    );
    // ...while one that does not is dropped after the auth timeout, as a new socket would be.
    b.expect("lazy dropped with TIMEOUT", |m| {
        m["client"] == "lazy" && m["event"] == "connection-error" && m["data"]["error"] == "TIMEOUT"
    })
    .await;
    b.expect("lazy disconnected", |m| {
        m["client"] == "lazy" && m["type"] == "disconnect"
    })
    .await;
}

#[tokio::test]
async fn revoking_a_users_tokens_refuses_them_and_ends_their_sockets() {
    let e = env("hub-revoke").await;
    e.session("a-one", "a").await;
    let hub = e.hub_with(&["--users-reload-secs", "1"]).await;
    let old = login(&hub, "ana").await;
    let bob = login(&hub, "bob").await;
    let mut b = Bridge::start().await;
    b.subscribed("ana", &hub.url, &old, "a-one").await;

    // The admin revokes ana's tokens from the next second on, in the mounted users file.
    let from = rfc3339_in(1);
    e.files.write_users(&format!("tokensNotBefore: '{from}'"));
    let refused = wait_for_value("ana's old token refused", Duration::from_secs(30), || {
        let (url, old) = (sessions_url(&hub, true), old.clone());
        async move {
            let r = get(&url, Some(&old)).await;
            (r.0 == 401).then_some(r)
        }
    })
    .await;
    assert_err(&refused, 401, "UNAUTHENTICATED");
    assert_eq!(refused.1["message"], "token revoked");
    let ended = b.event("ana", "connection-error", None).await;
    assert_eq!(ended["message"], "token revoked", "{ended}");
    assert_eq!(
        get(&sessions_url(&hub, true), Some(&bob)).await.0,
        200,
        "only ana's"
    );

    // A login after the revocation gets a token that works.
    let fresh = wait_for_value(
        "a token issued after tokensNotBefore",
        Duration::from_secs(10),
        || {
            let hub_url = hub.url.clone();
            let url = sessions_url(&hub, true);
            async move {
                let (st, body) = post(
                    &format!("{hub_url}/api/auth/login"),
                    None,
                    Some(json!({"username": "ana", "password": PASSWORD})),
                )
                .await;
                let t = body["token"].as_str().filter(|_| st == 200)?.to_owned();
                (get(&url, Some(&t)).await.0 == 200).then_some(t)
            }
        },
    )
    .await;
    assert_ne!(fresh, old);
}
