//! The page driver: the only place that knows WhatsApp Web's internals (module names, states,
//! selectors). Its scripts are JavaScript function expressions embedded at build time and
//! replaceable at run time from `WA_DRIVER_DIR/<name>.js` (a mounted ConfigMap), so a change
//! in the live site can be followed without rebuilding the image.

pub mod messages;

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Name of the CDP binding the page calls to wake the agent on a change.
pub const NOTIFY_BINDING: &str = "__waAgentNotify";

/// One driver script: a JS function expression, called as `(<source>)(<json args>)`.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: &'static str,
    pub source: String,
}

impl Script {
    /// The expression that calls the script with the given arguments.
    pub fn call(&self, args: &[serde_json::Value]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        format!(
            "({})({})",
            self.source.trim().trim_end_matches(';'),
            args.join(",")
        )
    }
}

#[derive(Debug, Clone)]
pub struct Driver {
    pub snapshot: Script,
    pub refresh_qr: Script,
    pub logout: Script,
    pub takeover: Script,
    pub pairing_code: Script,
    /// Installs (idempotently) the listeners that report messages through
    /// [`messages::MESSAGE_BINDING`]; says whether they are attached.
    pub messages_watch: Script,
    /// A number's WhatsApp id, or null.
    pub number_id: Script,
    /// Sends a text with the agent's message id (answers an existing one instead).
    pub send_text: Script,
    /// Only for `wa-session canary`: checks the others' assumptions without changing anything.
    pub canary: Script,
}

const BUILTIN: [(&str, &str); 9] = [
    ("snapshot", include_str!("scripts/snapshot.js")),
    ("refresh_qr", include_str!("scripts/refresh_qr.js")),
    ("logout", include_str!("scripts/logout.js")),
    ("takeover", include_str!("scripts/takeover.js")),
    ("pairing_code", include_str!("scripts/pairing_code.js")),
    ("messages_watch", include_str!("scripts/messages_watch.js")),
    ("number_id", include_str!("scripts/number_id.js")),
    ("send_text", include_str!("scripts/send_text.js")),
    ("canary", include_str!("scripts/canary.js")),
];

impl Driver {
    /// Built-in scripts, each replaced by `<dir>/<name>.js` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let get = |name: &'static str| -> Result<Script> {
            let builtin = BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
                .unwrap_or("");
            if let Some(dir) = dir {
                let path = dir.join(format!("{name}.js"));
                match std::fs::read_to_string(&path) {
                    Ok(source) => {
                        tracing::info!(script = name, path = %path.display(), "page driver script overridden");
                        return Ok(Script { name, source });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(Error::DriverScript { path, source }),
                }
            }
            Ok(Script {
                name,
                source: builtin.to_string(),
            })
        };
        Ok(Self {
            snapshot: get("snapshot")?,
            refresh_qr: get("refresh_qr")?,
            logout: get("logout")?,
            takeover: get("takeover")?,
            pairing_code: get("pairing_code")?,
            messages_watch: get("messages_watch")?,
            number_id: get("number_id")?,
            send_text: get("send_text")?,
            canary: get("canary")?,
        })
    }
}

/// What `snapshot.js` returns.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Snapshot {
    /// WhatsApp Web's modules are available (the app has booted).
    pub loaded: bool,
    /// `Socket.state` (WAState).
    pub state: Option<String>,
    /// `Socket.hasSynced`: the linked page has loaded its history (whatsapp-web.js takes
    /// `change:hasSynced` for "authenticated and ready"). False from a driver override that
    /// does not report it: the hang watchdog then keeps its lenient bound (`state/watchdog.rs`).
    pub synced: bool,
    /// The full QR string while the page offers one.
    pub qr: Option<String>,
    pub phone: Option<String>,
    pub push_name: Option<String>,
    /// The page logged out (Cmd `logout` event or a `post_logout=1` navigation).
    pub logged_out: bool,
    pub url: Option<String>,
}

/// `Socket.state` values (whatsapp-web.js `WAState`), grouped by what the agent does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageState {
    /// The app has not booted yet.
    Loading,
    /// OPENING / UNLAUNCHED / PAIRING: restoring a login or completing a scan.
    Opening,
    /// UNPAIRED: a QR (or pairing code) is offered.
    Unpaired,
    /// UNPAIRED_IDLE: the page stopped offering QRs until `refreshQR`.
    UnpairedIdle,
    Connected,
    /// The account was opened in another browser.
    Conflict,
    /// TIMEOUT: the phone/server is not reachable; WhatsApp retries by itself.
    Timeout,
    /// PROXYBLOCK, TOS_BLOCK, SMB_TOS_BLOCK, DEPRECATED_VERSION and unknown states.
    Blocked(String),
}

impl Snapshot {
    pub fn page_state(&self) -> PageState {
        if !self.loaded {
            // The older markup alone can still show that a QR is offered.
            return if self.qr.is_some() {
                PageState::Unpaired
            } else {
                PageState::Loading
            };
        }
        match self.state.as_deref() {
            None => PageState::Loading,
            Some("OPENING" | "UNLAUNCHED" | "PAIRING") => PageState::Opening,
            Some("UNPAIRED") => PageState::Unpaired,
            Some("UNPAIRED_IDLE") => PageState::UnpairedIdle,
            Some("CONNECTED") => PageState::Connected,
            Some("CONFLICT") => PageState::Conflict,
            Some("TIMEOUT") => PageState::Timeout,
            Some(other) => PageState::Blocked(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scripts_and_overrides() {
        let d = Driver::load(None).expect("builtin");
        assert!(d.snapshot.source.contains("WAWebSocketModel"));
        let call = d.pairing_code.call(&[serde_json::json!("5491122334455")]);
        assert!(call.ends_with(")(\"5491122334455\")"), "{call}");

        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("takeover.js"), "() => 'mine'").expect("write");
        let d = Driver::load(Some(tmp.path())).expect("override");
        assert_eq!(d.takeover.call(&[]), "(() => 'mine')()");
        assert!(d.logout.source.contains("logout"));
    }

    #[test]
    fn page_states() {
        let s = |loaded, state: Option<&str>| Snapshot {
            loaded,
            state: state.map(Into::into),
            ..Default::default()
        };
        assert_eq!(s(false, None).page_state(), PageState::Loading);
        assert_eq!(s(true, Some("PAIRING")).page_state(), PageState::Opening);
        assert_eq!(
            s(true, Some("UNPAIRED_IDLE")).page_state(),
            PageState::UnpairedIdle
        );
        assert_eq!(
            s(true, Some("TOS_BLOCK")).page_state(),
            PageState::Blocked("TOS_BLOCK".into())
        );
        let old_markup = Snapshot {
            qr: Some("ref,a,b,c,d".into()),
            ..Default::default()
        };
        assert_eq!(old_markup.page_state(), PageState::Unpaired);
        let parsed: Snapshot = serde_json::from_str(
            r#"{"loaded":true,"state":"CONNECTED","phone":"549","pushName":"Ana"}"#,
        )
        .expect("json");
        assert_eq!(parsed.push_name.as_deref(), Some("Ana"));
    }
}
