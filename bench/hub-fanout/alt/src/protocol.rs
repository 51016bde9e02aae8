//! The engine.io v4 / socket.io v5 text packets this bench's clients exchange, and no more:
//! websocket transport only, namespace "/" only, no binary attachments.
//!
//! engine.io frames one packet per websocket message: a type digit and its data
//! (`0` open, `1` close, `2` ping, `3` pong, `4` message). A socket.io packet is the data of an
//! engine.io message: a type digit (`0` CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK), an
//! optional namespace ending with `,`, an optional ack id, then JSON.

use serde_json::{Value, json};

/// What the client sent, as far as this server cares.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// engine.io pong: the answer to our ping.
    Pong,
    /// engine.io close or socket.io DISCONNECT.
    Close,
    /// socket.io CONNECT to "/"; its `auth` payload is accepted whatever it holds (this server
    /// measures memory, not authentication).
    Connect,
    /// socket.io EVENT: `[name, data...]`, with the id the client wants its ack under.
    Event {
        name: String,
        data: Value,
        ack: Option<u64>,
    },
    /// Anything else (a client ping, a noop, another namespace, a binary event, bad JSON):
    /// ignored, as a lenient server would.
    Other,
}

pub fn parse(text: &str) -> Inbound {
    match text.as_bytes().first() {
        Some(b'1') => Inbound::Close,
        Some(b'3') => Inbound::Pong,
        Some(b'4') => parse_socket_io(&text[1..]),
        _ => Inbound::Other,
    }
}

fn parse_socket_io(packet: &str) -> Inbound {
    let Some(kind) = packet.as_bytes().first() else {
        return Inbound::Other;
    };
    let mut rest = &packet[1..];
    // A namespace other than "/" is written out ("/admin,"); "/" itself is omitted.
    if rest.starts_with('/') {
        match rest.split_once(',') {
            Some(("/", tail)) => rest = tail,
            _ => return Inbound::Other,
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = rest[..digits].parse().ok();
    let json = &rest[digits..];
    match kind {
        b'0' => Inbound::Connect,
        b'1' => Inbound::Close,
        b'2' => match serde_json::from_str::<Value>(json) {
            Ok(Value::Array(mut items)) if !items.is_empty() => {
                let data = if items.len() > 1 {
                    items.swap_remove(1)
                } else {
                    Value::Null
                };
                match items.swap_remove(0) {
                    Value::String(name) => Inbound::Event { name, data, ack },
                    _ => Inbound::Other,
                }
            }
            _ => Inbound::Other,
        },
        _ => Inbound::Other,
    }
}

/// engine.io open packet. `upgrades` is empty: the client is on the websocket already.
pub fn open(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: u64) -> String {
    let data = json!({
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    format!("0{data}")
}

/// engine.io ping (the server pings in v4; the client answers `3`).
pub const PING: &str = "2";

/// socket.io CONNECT answer for "/".
pub fn connected(sid: &str) -> String {
    format!("40{}", json!({ "sid": sid }))
}

/// socket.io EVENT `name` with one argument.
pub fn event(name: &str, data: &Value) -> String {
    format!("42{}", json!([name, data]))
}

/// socket.io ACK of packet `id` with one argument.
pub fn ack(id: u64, data: &Value) -> String {
    format!("43{id}{}", json!([data]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_socket_io_client_sends() {
        assert_eq!(parse("3"), Inbound::Pong);
        assert_eq!(parse("1"), Inbound::Close);
        assert_eq!(parse(r#"40{"token":"x"}"#), Inbound::Connect);
        assert_eq!(parse("40"), Inbound::Connect);
        assert_eq!(parse("41"), Inbound::Close);
        assert_eq!(
            parse(r#"4212["subscribe-session",{"instance_id":"s0001"}]"#),
            Inbound::Event {
                name: "subscribe-session".into(),
                data: json!({"instance_id": "s0001"}),
                ack: Some(12),
            }
        );
        assert_eq!(
            parse(r#"42/,["x"]"#),
            Inbound::Event {
                name: "x".into(),
                data: Value::Null,
                ack: None
            }
        );
        assert_eq!(parse(r#"42/admin,["x"]"#), Inbound::Other);
        assert_eq!(parse(r#"42[1]"#), Inbound::Other);
        assert_eq!(parse("42{"), Inbound::Other);
        assert_eq!(parse(""), Inbound::Other);
        assert_eq!(parse("4"), Inbound::Other);
    }

    #[test]
    fn encodes_what_socket_io_client_expects() {
        assert_eq!(
            open("abc", 20000, 20000, 16384),
            r#"0{"maxPayload":16384,"pingInterval":20000,"pingTimeout":20000,"sid":"abc","upgrades":[]}"#
        );
        assert_eq!(connected("s1"), r#"40{"sid":"s1"}"#);
        assert_eq!(event("e", &json!({"a": 1})), r#"42["e",{"a":1}]"#);
        assert_eq!(ack(7, &json!({"ok": true})), r#"437[{"ok":true}]"#);
    }
}
