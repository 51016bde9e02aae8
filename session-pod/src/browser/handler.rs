//! chromiumoxide's handler loop (it carries every CDP message between Chromium and the
//! agent): how it is configured, when it ends, and what becomes of the messages chromiumoxide
//! cannot parse.

use std::collections::HashSet;
use std::sync::Arc;

use chromiumoxide::error::CdpError;
use chromiumoxide::handler::{Handler, HandlerConfig};
use futures::StreamExt;
use tokio::sync::watch;

use crate::config::Config;

use super::interception::proxy_credentials;

/// CDP events a newer Chromium sends in a shape chromiumoxide's protocol definitions
/// (chromiumoxide_cdp 0.9.1) cannot parse, and that neither chromiumoxide nor the agent uses:
/// dropping them loses nothing.
/// - `Network.requestWillBeSentExtraInfo`: Chromium (156, Debian's, here) sends `clientSecurityState` with
///   `localNetworkAccessRequestPolicy` where the definitions require
///   `privateNetworkRequestPolicy`; one per network request (several a second while
///   WhatsApp Web loads or syncs). chromiumoxide enables the Network domain for its own
///   request tracking but reads only `requestWillBeSent`/`responseReceived`/`loadingFinished`/
///   `loadingFailed`.
const UNUSED_UNPARSABLE_EVENTS: [&str; 1] = ["Network.requestWillBeSentExtraInfo"];

/// The handler's settings.
pub(super) fn config(cfg: &Config) -> HandlerConfig {
    HandlerConfig {
        request_timeout: cfg.cdp_timeout,
        viewport: None,
        // Messages chromiumoxide cannot parse come back to the loop ([`run`]) instead of a WARN
        // per message inside chromiumoxide; the loop tells the expected ones from the others.
        ignore_invalid_messages: false,
        // With proxy credentials chromiumoxide answers the challenges (`interception.rs`);
        // this keeps it from also continuing every paused request itself, which the agent
        // does (or fails, for the blocked resource types).
        request_intercept: proxy_credentials(cfg).is_some(),
        ..HandlerConfig::default()
    }
}

/// Drives the handler until the connection to Chromium is gone, then says so on `gone`.
pub(super) async fn run(mut handler: Handler, gone: Arc<watch::Sender<bool>>) {
    let mut warned = HashSet::new();
    while let Some(event) = handler.next().await {
        match event {
            Ok(()) => {}
            // Not fatal: the message is dropped and the handler goes on.
            Err(CdpError::InvalidMessage(raw, e)) => invalid_message(&raw, &e, &mut warned),
            // chromiumoxide's handler does not end its stream when the socket breaks (Chromium
            // killed): it yields the error and goes on, every later command timing out. Ending
            // here lets the relaunch start at once instead of after the page looks hung.
            Err(e) if connection_lost(&e) => {
                tracing::debug!(error = %e, "CDP connection lost");
                break;
            }
            Err(e) => tracing::debug!(error = %e, "CDP handler event error"),
        }
    }
    let _ = gone.send(true);
}

/// Whether a CDP handler error means the connection to Chromium is gone (the socket failed
/// or closed), as opposed to one message or command going wrong.
fn connection_lost(e: &CdpError) -> bool {
    matches!(e, CdpError::Ws(_) | CdpError::Io(_))
}

/// A CDP message chromiumoxide could not parse (and drops). An event listed in
/// [`UNUSED_UNPARSABLE_EVENTS`] is logged at debug; any other at WARN, once per method and
/// browser (then debug): it may be one the agent waits for (`Fetch.requestPaused`,
/// `Runtime.bindingCalled`, `Inspector.targetCrashed`), which would stall it.
fn invalid_message(raw: &str, error: &serde_json::Error, warned: &mut HashSet<String>) {
    let (method, expected) = classify_unparsable(raw);
    if expected || !warned.insert(method.clone()) {
        tracing::debug!(%method, %error, "CDP message chromiumoxide cannot parse; dropped");
    } else {
        let sample: String = raw.chars().take(300).collect();
        tracing::warn!(%method, %error, %sample, "CDP message chromiumoxide cannot parse; dropped (further ones of this method at debug)");
    }
}

/// The method of an unparsable CDP message, and whether it is one known to be harmless.
fn classify_unparsable(raw: &str) -> (String, bool) {
    #[derive(serde::Deserialize)]
    struct Head {
        method: Option<String>,
    }
    let method = serde_json::from_str::<Head>(raw)
        .ok()
        .and_then(|h| h.method)
        .unwrap_or_else(|| "(no method)".into());
    let expected = UNUSED_UNPARSABLE_EVENTS.contains(&method.as_str());
    (method, expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chromiumoxide::cdp::events::CdpEventMessage;
    use chromiumoxide::types::Message;

    /// As Chromium 156 sends it (headers shortened): chromiumoxide cannot parse it, and it is
    /// the one expected.
    const EXTRA_INFO: &str = r#"{"method":"Network.requestWillBeSentExtraInfo","params":{"requestId":"19408.2","associatedCookies":[],"headers":{"Accept":"*/*"},"connectTiming":{"requestTime":3772.323393},"clientSecurityState":{"initiatorIsSecureContext":true,"initiatorIPAddressSpace":"Loopback","localNetworkAccessRequestPolicy":"PermissionBlock"},"siteHasCookieInOtherPartition":false},"sessionId":"3D9112EC4134E645FBAEDB81BBA73A83"}"#;

    #[test]
    fn a_broken_socket_ends_the_browser_a_failed_command_does_not() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(connection_lost(&CdpError::Io(reset)));
        assert!(!connection_lost(&CdpError::Timeout));
        assert!(!connection_lost(&CdpError::NoResponse));
    }

    #[test]
    fn unparsable_events_the_agent_does_not_use_are_expected_others_are_not() {
        assert!(
            serde_json::from_str::<Message<CdpEventMessage>>(EXTRA_INFO).is_err(),
            "chromiumoxide parses it now: drop it from the list"
        );
        assert_eq!(
            classify_unparsable(EXTRA_INFO),
            ("Network.requestWillBeSentExtraInfo".into(), true)
        );
        let paused = r#"{"method":"Fetch.requestPaused","params":{"requestId":"x","resourceType":"SomethingNew"}}"#;
        assert_eq!(
            classify_unparsable(paused),
            ("Fetch.requestPaused".into(), false)
        );
        assert_eq!(
            classify_unparsable("not json"),
            ("(no method)".into(), false)
        );
    }
}
