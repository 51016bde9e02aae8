//! Bad input of every kind gets the documented error, and the hub keeps serving.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::bridge::Bridge;
use crate::support::*;

/// A request written by hand, so the path reaches the hub exactly as given.
async fn raw_http(port: u16, method: &str, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status: u16 = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn rs_keys(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("rsa.pem");
    let public = dir.join("rsa.pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    (key, public)
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn bad_input_gets_documented_errors_and_hub_keeps_serving() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let e = env("hub-badinput").await;
    e.session("a-one", "a").await;
    let hub = HubProc::start(&e.kubeconfig, hs256_args(&e.files, &e.ns)).await;
    let list = sessions_url(&hub, true);
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = json!({"sub": "x", "tenants": ["a"], "role": "admin", "exp": now + 600});
    let (key, public) = rs_keys(e.files.dir.path());
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap()).unwrap(),
    )
    .unwrap();
    let bad_tokens = [
        ("expired", token("x", &["a"], "admin", -120)),
        (
            "wrong signature",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx"),
            )
            .unwrap(),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
        ("RS256 token to an HS256 hub", rs),
        (
            "no exp",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": "x", "role": "admin"}),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    assert_err(&get(&list, None).await, 401, "UNAUTHENTICATED");
    let mut b = Bridge::start().await;
    for (i, (what, t)) in bad_tokens.iter().enumerate() {
        let r = get(&list, Some(t)).await;
        assert_eq!(r.0, 401, "{what}: {r:?}");
        assert_err(&r, 401, "UNAUTHENTICATED");
        let c = format!("bad{i}");
        b.connect(&c, &hub.url, Some(json!({"token": t})), vec![])
            .await;
        let ce = b.event(&c, "connection-error", None).await;
        assert_eq!(ce["error"], "UNAUTHENTICATED", "{what}");
        b.close(&c).await;
    }

    // HS/RS confusion the other way: an RS256 hub rejects HS256 tokens signed with its public key.
    let rs_hub = HubProc::start(
        &e.kubeconfig,
        vec![
            "--namespace".into(),
            e.ns.clone(),
            "--jwt-public-key-file".into(),
            public.display().to_string(),
            "--users-file".into(),
            e.files.path("users.yaml").display().to_string(),
        ],
    )
    .await;
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
    )
    .unwrap();
    assert_err(
        &get(&sessions_url(&rs_hub, true), Some(&confused)).await,
        401,
        "UNAUTHENTICATED",
    );
    let good_rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        get(&sessions_url(&rs_hub, true), Some(&good_rs)).await.0,
        200
    );
    // Without a private key, login is disabled with a clear error.
    let r = post(
        &format!("{}/api/auth/login", rs_hub.url),
        None,
        Some(json!({"username": "ana", "password": PASSWORD})),
    )
    .await;
    assert_err(&r, 503, "UNAVAILABLE");
    assert!(r.1["message"].as_str().unwrap().contains("private-key"));
    drop(rs_hub);

    // Malformed and oversized bodies.
    let c = reqwest::Client::new();
    let login = format!("{}/api/auth/login", hub.url);
    let r = c
        .post(&login)
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    let r = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_err(&r, 400, "BAD_REQUEST");
    let r = post(&login, None, Some(json!({"username": 5}))).await;
    assert_err(&r, 400, "BAD_REQUEST");
    let r = c
        .post(&login)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"username\":\"ana\",\"password\":\"{}\"}}",
            "x".repeat(64 * 1024)
        ))
        .send()
        .await
        .unwrap();
    let r = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_err(&r, 413, "PAYLOAD_TOO_LARGE");

    // Bad ids: '/', '..', 300 characters, uppercase.
    let admin = token("root", &[], "admin", 600);
    assert_err(
        &get(&format!("{list}/a/b"), Some(&admin)).await,
        404,
        "NOT_FOUND",
    );
    // URL libraries resolve ".." (and %2E%2E) before sending; a raw request sends it as is.
    for (method, path) in [
        ("GET", "/api/session-manager/sessions/.."),
        ("POST", "/session-manager/sessions/../qr"),
        ("GET", "/api/session-manager/sessions/%2E%2E"),
    ] {
        let (status, body) = raw_http(hub.port, method, path, &admin).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert!(
            v["error"] == "BAD_REQUEST" || v["error"] == "NOT_FOUND",
            "{path}: {v}"
        );
    }
    assert_eq!(
        raw_http(hub.port, "GET", "/api/session-manager/sessions/..", &admin)
            .await
            .0,
        400
    );
    // A segment that does not decode to UTF-8 (issue 28 item 11: was plain text).
    for (method, path) in [
        ("GET", "/api/session-manager/sessions/%FF"),
        ("POST", "/session-manager/sessions/%FF/qr"),
        ("POST", "/api/session-manager/sessions/a%C3%28/disconnect"),
    ] {
        let (status, body) = raw_http(hub.port, method, path, &admin).await;
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert_err(&(status, v), 400, "BAD_REQUEST");
    }
    for id in ["a%2Fb", &"a".repeat(300), "A-ONE", "a_one"] {
        assert_err(
            &get(&format!("{list}/{id}"), Some(&admin)).await,
            400,
            "BAD_REQUEST",
        );
        assert_err(
            &post(&format!("{list}/{id}/qr"), Some(&admin), None).await,
            400,
            "BAD_REQUEST",
        );
    }
    assert_err(
        &get(&format!("{list}/nope"), Some(&admin)).await,
        404,
        "NOT_FOUND",
    );
    assert_err(
        &get(&format!("{}/api/nothing-here", hub.url), None).await,
        404,
        "NOT_FOUND",
    );
    let r = call(
        reqwest::Method::DELETE,
        &format!("{list}/a-one"),
        Some(&admin),
        None,
    )
    .await;
    assert_err(&r, 405, "BAD_REQUEST");

    // socket.io bad input: unknown events, bad payloads, bad ids → BAD_REQUEST; socket survives.
    b.connect("s", &hub.url, Some(json!({"token": admin})), vec![])
        .await;
    b.event("s", "authenticated", None).await;
    let ack = b.emit_ack("s", "no-such-event", json!({})).await;
    assert_eq!(ack["error"], "BAD_REQUEST");
    for bad in [
        json!(null),
        json!(42),
        json!({"id": "a-one"}),
        json!({"instance_id": "a/b"}),
        json!({"instance_id": ".."}),
        json!({"instance_id": "a".repeat(300)}),
        json!({"instance_id": "a-one", "namespace": 7}),
    ] {
        let ack = b.emit_ack("s", "subscribe-session", bad.clone()).await;
        assert_eq!(ack["error"], "BAD_REQUEST", "{bad}: {ack}");
        assert!(
            ack.get("instance_id")
                .is_none_or(|i| i.as_str().is_some_and(|s| s.len() <= 52))
        );
    }
    b.raw("s", "subscribe-session", vec![]).await;
    b.raw("s", "unknown-without-ack", vec![json!("x")]).await;
    assert_eq!(
        b.emit_ack("s", "subscribe-session", json!({"instance_id": "a-one"}))
            .await["ok"],
        true
    );
    b.expect("still connected", |m| {
        m["client"] == "s" && m["event"] == "session-status"
    })
    .await;
    b.drain();
    assert!(
        !b.seen
            .iter()
            .any(|m| m["client"] == "s" && m["type"] == "disconnect")
    );

    // Login throttling: 5 failures per username → 429 even with the right password.
    for _ in 0..5 {
        assert_err(
            &post(
                &login,
                None,
                Some(json!({"username": "bob", "password": "wrong"})),
            )
            .await,
            401,
            "UNAUTHENTICATED",
        );
    }
    let r = post(
        &login,
        None,
        Some(json!({"username": "bob", "password": PASSWORD})),
    )
    .await;
    assert_err(&r, 429, "RATE_LIMITED");

    // Still serving.
    assert_eq!(get(&format!("{}/health", hub.url), None).await.0, 200);
    assert_eq!(get(&format!("{list}/a-one"), Some(&admin)).await.0, 200);
}
