//! Drives `tests/js/bridge.mjs`: the real socket.io-client from npm, several clients per process.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

static NPM: Mutex<()> = Mutex::new(());

/// `npm ci` once (the lock file is committed; the cache lives outside the checkout).
pub fn ensure_node_modules() {
    let _g = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let dir = super::manifest_dir().join("tests/js");
    if dir
        .join("node_modules/socket.io-client/package.json")
        .exists()
    {
        return;
    }
    let cache = std::env::var("npm_config_cache").unwrap_or_else(|_| {
        format!(
            "{}/.cache/whatsapp-operator/npm",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let st = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("npm_config_cache", cache)
        .current_dir(&dir)
        .status()
        .expect("npm not found");
    assert!(st.success(), "npm ci failed in {}", dir.display());
}

pub struct Bridge {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    rx: mpsc::UnboundedReceiver<Value>,
    /// Messages read but not yet matched by an `expect`.
    pub seen: Vec<Value>,
    next_req: u64,
}

impl Bridge {
    pub async fn start() -> Self {
        ensure_node_modules();
        let mut child = tokio::process::Command::new("node")
            .arg(super::manifest_dir().join("tests/js/bridge.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node not found");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut b = Bridge {
            _child: child,
            stdin,
            rx,
            seen: Vec::new(),
            next_req: 0,
        };
        b.expect("bridge ready", |m| m["type"] == "ready").await;
        b
    }

    async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Connect client `c` with the handshake `auth` (or none), emitting `on_connect` events
    /// after every (re)connect, as a browser client resubscribes.
    pub async fn connect(
        &mut self,
        c: &str,
        url: &str,
        auth: Option<Value>,
        on_connect: Vec<(String, Value)>,
    ) {
        let on: Vec<Value> = on_connect
            .into_iter()
            .map(|(e, d)| json!({"event": e, "data": d}))
            .collect();
        self.send(json!({"op": "connect", "client": c, "url": url, "auth": auth, "onConnect": on}))
            .await;
    }

    /// Connect client `c` without socket.io-client's reconnection: once it is disconnected,
    /// it stays so.
    pub async fn connect_once(&mut self, c: &str, url: &str, auth: Option<Value>) {
        self.send(
            json!({"op": "connect", "client": c, "url": url, "auth": auth, "reconnection": false}),
        )
        .await;
    }

    /// Emit asking for an ack, without waiting for it; [`Bridge::ack`] reads it later.
    pub async fn emit_req(&mut self, c: &str, event: &str, data: Value) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        self.send(json!({"op": "emit", "client": c, "event": event, "data": data, "req": req}))
            .await;
        req
    }

    /// The ack payload of request `req` of client `c` (`{"timeout": true}` when
    /// socket.io-client failed it: no answer in 5 s, or the socket went away).
    pub async fn ack(&mut self, c: &str, req: u64) -> Value {
        let m = self
            .expect(&format!("ack {req} on {c}"), |m| {
                m["type"] == "ack" && m["req"] == req && m["client"] == c
            })
            .await;
        m["data"].clone()
    }

    /// Emit and wait for the ack payload.
    pub async fn emit_ack(&mut self, c: &str, event: &str, data: Value) -> Value {
        let req = self.emit_req(c, event, data).await;
        self.ack(c, req).await
    }

    pub async fn raw(&mut self, c: &str, event: &str, args: Vec<Value>) {
        self.send(json!({"op": "raw", "client": c, "event": event, "args": args}))
            .await;
    }

    pub async fn close(&mut self, c: &str) {
        self.send(json!({"op": "close", "client": c})).await;
    }

    /// The first message (already seen or arriving within 20 s) matching `pred`; removed.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, Duration::from_secs(20), pred)
            .await
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(m)) => self.seen.push(m),
                Ok(None) => panic!("bridge exited while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; seen: {:#?}", self.seen),
            }
        }
    }

    /// An event `event` for client `c` (optionally about `instance_id`).
    /// Connects client `c` with `token`, subscribes it to session `id` and waits for the
    /// session's first `session-status`: where most socket.io tests start.
    pub async fn subscribed(&mut self, c: &str, url: &str, token: &str, id: &str) {
        self.connect(
            c,
            url,
            Some(json!({"token": token})),
            vec![("subscribe-session".into(), json!({"instance_id": id}))],
        )
        .await;
        self.event(c, "session-status", Some(id)).await;
    }

    pub async fn event(&mut self, c: &str, event: &str, id: Option<&str>) -> Value {
        let (c2, e2, id2) = (c.to_owned(), event.to_owned(), id.map(str::to_owned));
        let m = self
            .expect(&format!("{event} on {c} for {id:?}"), move |m| {
                m["client"] == c2.as_str()
                    && m["type"] == "event"
                    && m["event"] == e2.as_str()
                    && id2.as_deref().is_none_or(|i| m["data"]["instance_id"] == i)
            })
            .await;
        m["data"].clone()
    }

    /// Move everything arrived so far into `seen`.
    pub fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
    }

    /// Did client `c` receive any event about `instance_id`?
    pub fn got_any_about(&mut self, c: &str, id: &str) -> bool {
        self.drain();
        self.seen
            .iter()
            .any(|m| m["client"] == c && m["type"] == "event" && m["data"]["instance_id"] == id)
    }
}
