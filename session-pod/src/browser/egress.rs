//! Where Chromium may send requests: WhatsApp's hosts and WhatsApp Web's URL, nowhere else.
//!
//! Chromium's own services (network time from clients2.google.com, update checks at
//! update.googleapis.com, account checks at accounts.google.com) keep calling out despite
//! `--disable-background-networking`, `--disable-component-update` and the managed policy, and
//! through a customer's proxy when one is set. A PAC script is consulted for every request the
//! network service makes, the browser's own included: WhatsApp's go direct or to the proxy,
//! the rest to a proxy address where nothing listens, so they fail inside the pod.

use axum::http::Uri;
use base64::Engine;

use crate::config::Config;

/// Where every other request goes: loopback's discard port, on which nothing listens in a
/// session pod, so the request fails at once and never reaches a network.
const NOWHERE: &str = "PROXY 127.0.0.1:9";

/// `--proxy-pac-url=data:…`: the PAC script for this agent's URL and proxy.
pub(super) fn pac_switch(cfg: &Config) -> String {
    let script = pac_script(cfg);
    let encoded = base64::engine::general_purpose::STANDARD.encode(script);
    format!("--proxy-pac-url=data:application/x-ns-proxy-autoconfig;base64,{encoded}")
}

fn pac_script(cfg: &Config) -> String {
    let route = cfg
        .proxy_url
        .as_deref()
        .and_then(pac_proxy)
        .unwrap_or_else(|| "DIRECT".into());
    let mut tests: Vec<String> = crds::WHATSAPP_DOMAINS
        .iter()
        .map(|d| {
            format!(
                "host == {} || dnsDomainIs(host, {})",
                js(d),
                js(&format!(".{d}"))
            )
        })
        .collect();
    if let Some(own) = host_of(&cfg.url) {
        tests.push(format!("host == {}", js(&own)));
    }
    format!(
        "function FindProxyForURL(url, host) {{ host = host.toLowerCase(); \
         if ({}) return {}; return {}; }}",
        tests.join(" || "),
        js(&route),
        js(NOWHERE)
    )
}

/// The PAC form of a proxy URL (`http://h:3128` → `PROXY h:3128`).
fn pac_proxy(proxy_url: &str) -> Option<String> {
    let uri: Uri = proxy_url.parse().ok()?;
    let kind = match uri.scheme_str()? {
        "http" => "PROXY",
        "https" => "HTTPS",
        "socks4" => "SOCKS",
        "socks5" | "socks" => "SOCKS5",
        _ => return None,
    };
    Some(format!(
        "{kind} {}",
        uri.authority()?.as_str().rsplit('@').next()?
    ))
}

fn host_of(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    Some(uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase())
}

/// A JavaScript string literal (JSON's is one).
fn js(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::tests::config;

    #[test]
    fn whatsapp_goes_direct_and_the_rest_nowhere() {
        let script = pac_script(&config(&["--url", "https://web.whatsapp.com/"]));
        assert!(
            script.contains(r#"dnsDomainIs(host, ".whatsapp.net")"#),
            "{script}"
        );
        assert!(
            script.contains(r#"return "DIRECT"; return "PROXY 127.0.0.1:9";"#),
            "{script}"
        );
    }

    #[test]
    fn with_a_proxy_whatsapp_and_the_configured_url_go_through_it() {
        let script = pac_script(&config(&[
            "--url",
            "http://10.244.30.1:41000/",
            "--proxy-url",
            "http://proxy.corp:3128",
        ]));
        assert!(script.contains(r#"host == "10.244.30.1""#), "{script}");
        assert!(
            script.contains(r#"return "PROXY proxy.corp:3128";"#),
            "{script}"
        );
        assert_eq!(
            pac_proxy("socks5://s:1080").as_deref(),
            Some("SOCKS5 s:1080")
        );
        assert_eq!(pac_proxy("https://p:443").as_deref(), Some("HTTPS p:443"));
        assert_eq!(pac_proxy("ftp://p:21"), None);
    }

    #[test]
    fn the_switch_is_a_data_url_chromium_decodes_to_the_script() {
        let cfg = config(&["--url", "https://web.whatsapp.com/"]);
        let switch = pac_switch(&cfg);
        let encoded = switch
            .strip_prefix("--proxy-pac-url=data:application/x-ns-proxy-autoconfig;base64,")
            .expect("a base64 data URL");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), pac_script(&cfg));
    }
}
