//! What one client may take from the public listener (issue 28, items 5 and 7): socket.io
//! messages above 16 KiB on the websocket transport, slow or idle connections, and connections
//! beyond the per-client and total caps. Every check is about what the client sees (an answer,
//! a closed connection), through raw TCP clients and the real socket.io-client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::bridge::Bridge;
use crate::support::*;

/// How long a test waits for the hub to close a connection it must close. Far above every
/// timeout configured here (1 s); a hub that never closes it fails the test at this bound.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// A TCP connection to `port` on 127.0.0.1 from the local address `from` (any 127.0.0.0/8
/// address is this machine): distinct client addresses for the per-client cap.
async fn connect_from(from: &str, port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Reads until the hub closes the connection (EOF or reset); returns what it sent first.
/// Panics if the connection is still open after [`CLOSE_WAIT`].
async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSE_WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{what}: the hub kept the connection open"));
    got
}

/// One request on a kept-alive connection; returns (status, body).
async fn request(s: &mut TcpStream, head: &str, body: &[u8]) -> (u16, String) {
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    read_response(s).await
}

/// A response by its Content-Length (the hub's JSON answers carry one).
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert!(n == 1, "connection closed before a response head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: hub\r\n\r\n";

/// The hub's own count of one series on its metrics listener (0 when absent).
async fn metric(hub: &HubProc, series: &str) -> u64 {
    hub.metric(series).await as u64
}

async fn wait_open_connections(hub: &HubProc, n: u64) {
    devcluster_testing::wait_for_value(
        &format!("{n} open connections"),
        Duration::from_secs(30),
        || async { (metric(hub, "wa_hub_connections_open").await == n).then_some(()) },
    )
    .await;
}

/// Issue 28 item 5: polling refused bodies over 16 KiB, the websocket transport parsed and
/// answered 20 KB to 8 MB messages.
#[tokio::test]
async fn socket_messages_over_16_kib_close_the_websocket_and_are_never_answered() {
    let e = env("hub-wslimit").await;
    e.claim("a").await;
    e.session("a-one", "a").await;
    let hub = e.hub().await;
    let admin = token("root", &[], "admin", 600);
    let mut b = Bridge::start().await;
    let subscribe = |pad: usize| json!({"instance_id": "a-one", "pad": "x".repeat(pad)});

    // Just under the limit: answered.
    b.connect("small", &hub.url, Some(json!({"token": admin})), vec![])
        .await;
    b.event("small", "authenticated", None).await;
    let ack = b
        .emit_ack("small", "subscribe-session", subscribe(15_000))
        .await;
    assert_eq!(ack["ok"], true, "a 15 KB event: {ack}");

    for size in [20_000, 100_000, 1_000_000] {
        let c = format!("big{size}");
        b.connect_once(&c, &hub.url, Some(json!({"token": admin})))
            .await;
        b.event(&c, "authenticated", None).await;
        let req = b.emit_req(&c, "subscribe-session", subscribe(size)).await;
        let gone = b
            .expect(&format!("{c} disconnected"), |m| {
                m["client"] == c.as_str() && m["type"] == "disconnect"
            })
            .await;
        assert!(
            gone["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("transport")),
            "{c}: {gone}"
        );
        // socket.io-client fails a pending ack when its socket goes: never answered.
        let ack = b.ack(&c, req).await;
        assert_eq!(ack, json!({"timeout": true}), "{c} was answered: {ack}");
        assert!(!b.got_any_about(&c, "a-one"), "{c} was subscribed");
    }

    // The hub is fine, and a normal event on a new connection is answered.
    assert_eq!(get(&format!("{}/health", hub.url), None).await.0, 200);
    b.connect("after", &hub.url, Some(json!({"token": admin})), vec![])
        .await;
    b.event("after", "authenticated", None).await;
    let ack = b
        .emit_ack(
            "after",
            "subscribe-session",
            json!({"instance_id": "a-one"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// A websocket frame whose header announces 8 MB is refused on its header: the hub closes the
/// connection while the client has sent a few bytes of it. Without the frame limit it waits
/// for the 8 MB (reserving room for them) and the first thing the client gets is the
/// engine.io heartbeat's ping, 20 s later.
#[tokio::test]
async fn a_websocket_frame_announcing_8_mb_is_refused_on_its_header() {
    let e = env("hub-wsframe").await;
    let hub = e.hub().await;
    let mut s = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let handshake = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // The engine.io open packet: a text frame "0{...}".
    let first = read_frame(&mut s).await;
    assert!(first.starts_with(b"0{"), "{first:?}");

    // FIN + text; masked, 64-bit length 8,000,000; mask key; then 16 bytes of the payload.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&8_000_000u64.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0x55; 16]);
    s.write_all(&frame).await.unwrap();

    let rest = until_closed(&mut s, "the 8 MB frame").await;
    // Whatever came before the close (at most a close frame) is no engine.io ping ("2").
    assert!(
        !rest.windows(3).any(|w| w == [0x81, 0x01, b'2']),
        "the hub waited for the frame until its heartbeat: {rest:?}"
    );
    assert_eq!(get(&format!("{}/health", hub.url), None).await.0, 200);
}

/// One unmasked server frame's payload (short frames only: the open packet).
async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.unwrap();
            u16::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.unwrap();
    p
}

/// Issue 28 item 7: trickled headers, idle keep-alive connections and partial bodies stayed
/// open over 120 s.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_and_the_rest_is_unaffected() {
    let e = env("hub-slow").await;
    e.claim("a").await;
    e.session("a-one", "a").await;
    let hub = e
        .hub_with(&[
            "--header-read-timeout-secs",
            "1",
            "--body-read-timeout-secs",
            "1",
        ])
        .await;
    let ana = token("ana", &["a"], "user", 600);

    // A socket.io websocket connected before, and used after, the timeouts below.
    let mut b = Bridge::start().await;
    b.subscribed("ws", &hub.url, &ana, "a-one").await;

    // A client that never sends a byte.
    let mut silent = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    until_closed(&mut silent, "a silent connection").await;

    // A client trickling its request head, a byte every 100 ms, for as long as it may.
    let mut trickle = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    let (mut rd, mut wr) = trickle.split();
    // Ends when a write fails: the hub closed the connection.
    let writer = async {
        if wr
            .write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = writer => {},
        () = reader => {},
        () = tokio::time::sleep(CLOSE_WAIT) => panic!("a trickled request head was never cut off"),
    }

    // An idle keep-alive connection after one answered request.
    let mut idle = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    assert_eq!(request(&mut idle, HEALTH, b"").await.0, 200);
    until_closed(&mut idle, "an idle keep-alive connection").await;

    // A body that stops short of its Content-Length: 408 TIMEOUT, then closed.
    let mut partial = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let (status, body) = request(&mut partial, head, b"{\"username\": \"ana\"").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &body["error"]), (408, &json!("TIMEOUT")), "{body}");
    until_closed(&mut partial, "a connection after its body timed out").await;

    // A request head over the hub's 16 KiB buffer: 431.
    let mut big = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: hub\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    big.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut big, "an oversized request head").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // What a client does in time still works: a login with its body, and the websocket, which
    // has been open through all of the above.
    let (st, body) = post(
        &format!("{}/api/auth/login", hub.url),
        None,
        Some(json!({"username": "ana", "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let ack = b
        .emit_ack("ws", "subscribe-session", json!({"instance_id": "a-one"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    b.drain();
    assert!(
        !b.seen
            .iter()
            .any(|m| m["client"] == "ws" && m["type"] == "disconnect"),
        "the websocket was closed: {:?}",
        b.seen
    );
}

/// Issue 28 item 7: a cap on connections per client address, and in all; a refused
/// connection is closed at once and counted; websockets count while they are open.
#[tokio::test]
async fn connections_beyond_the_per_client_and_total_caps_are_closed_at_once() {
    let e = env("hub-conncap").await;
    let hub = e
        .hub_with(&[
            "--max-connections-per-client",
            "2",
            "--max-connections",
            "3",
        ])
        .await;
    // HubProc::start's health checks are gone once their connections close.
    wait_open_connections(&hub, 0).await;

    let mut a1 = connect_from("127.0.0.1", hub.port).await;
    let mut a2 = connect_from("127.0.0.1", hub.port).await;
    assert_eq!(request(&mut a1, HEALTH, b"").await.0, 200);
    assert_eq!(request(&mut a2, HEALTH, b"").await.0, 200);
    let mut a3 = connect_from("127.0.0.1", hub.port).await;
    let sent = until_closed(&mut a3, "a third connection from one client").await;
    assert!(sent.is_empty(), "a refused connection is answered nothing");

    let mut b1 = connect_from("127.0.0.2", hub.port).await;
    assert_eq!(request(&mut b1, HEALTH, b"").await.0, 200);
    let mut c1 = connect_from("127.0.0.3", hub.port).await;
    until_closed(&mut c1, "a fourth connection in all").await;

    // The first two are still served.
    assert_eq!(request(&mut a1, HEALTH, b"").await.0, 200);
    assert_eq!(request(&mut a2, HEALTH, b"").await.0, 200);
    assert_eq!(metric(&hub, "wa_hub_connections_open").await, 3);
    assert_eq!(
        metric(
            &hub,
            "wa_hub_connections_refused_total{reason=\"per_client\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(&hub, "wa_hub_connections_refused_total{reason=\"total\"}").await,
        1
    );

    // One closes: its client may connect again.
    drop(a1);
    wait_open_connections(&hub, 2).await;
    let mut a4 = connect_from("127.0.0.1", hub.port).await;
    assert_eq!(request(&mut a4, HEALTH, b"").await.0, 200);
    drop((a2, a4, b1));
    wait_open_connections(&hub, 0).await;

    // A websocket (socket.io-client, from 127.0.0.1) works and counts while it is open.
    let ana = token("ana", &["a"], "user", 600);
    let mut b = Bridge::start().await;
    b.connect("ws", &hub.url, Some(json!({"token": ana})), vec![])
        .await;
    b.event("ws", "authenticated", None).await;
    wait_open_connections(&hub, 1).await;
    let mut a5 = connect_from("127.0.0.1", hub.port).await;
    assert_eq!(request(&mut a5, HEALTH, b"").await.0, 200);
    let mut a6 = connect_from("127.0.0.1", hub.port).await;
    until_closed(
        &mut a6,
        "a connection beside a websocket and another connection",
    )
    .await;
}
