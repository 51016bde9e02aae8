//! The managed Chromium policy of session pods: the browser talks to WhatsApp only.
//!
//! The policy is the image's (`images/wa-session/chromium-policy.json`, read by Chromium from
//! `/etc/chromium/policies/managed`), with WhatsApp Web's URL added to its allow list when it is
//! not WhatsApp's own (the fake in tests, a mirror). The operator puts it in a pod annotation and
//! mounts it over the image's directory with the downward API, so the pod needs no ConfigMap
//! and a changed URL rolls the pod like any other change to its template.

use serde_json::Value;

/// The image's policy: background services off, every URL blocked but WhatsApp's.
const IMAGE_POLICY: &str = include_str!("../../images/wa-session/chromium-policy.json");

/// Where Debian's Chromium reads mandatory policies.
pub const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// The file in [`POLICY_DIR`] (the image's has the same name, so the mount replaces it).
pub const POLICY_FILE: &str = "whatsapp-operator.json";
/// The pod annotation that holds the policy for the downward API volume.
pub const ANNOTATION: &str = "whatsapp.leadmaster.io/chromium-policy";

/// The policy for sessions that open `whatsapp_url` (checked by [`parse_whatsapp_url`] at
/// start-up), as compact JSON.
pub fn for_whatsapp_url(whatsapp_url: &str) -> String {
    let mut policy: Value =
        serde_json::from_str(IMAGE_POLICY).expect("the image's policy is JSON (unit-tested)");
    if let Ok(Some(entry)) = extra_allowed(whatsapp_url) {
        policy["URLAllowlist"]
            .as_array_mut()
            .expect("the image's policy has an allow list (unit-tested)")
            .push(Value::String(entry));
    }
    policy.to_string()
}

/// `--whatsapp-url`'s parser: an absolute http(s) URL, so the policy can allow it.
pub fn parse_whatsapp_url(text: &str) -> Result<String, String> {
    extra_allowed(text).map(|_| text.to_string())
}

/// The allow-list entry WhatsApp Web's URL needs beyond the image's, in Chromium's URL filter
/// format (`scheme://host:port`), or `None` for WhatsApp's own hosts.
fn extra_allowed(whatsapp_url: &str) -> Result<Option<String>, String> {
    let uri: http::Uri = whatsapp_url
        .parse()
        .map_err(|e| format!("not a URL: {e}"))?;
    let (Some(scheme @ ("http" | "https")), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err("an http or https URL with a host is needed".into());
    };
    let host = host.to_ascii_lowercase();
    let whatsapp = crds::WHATSAPP_DOMAINS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    if whatsapp && scheme == "https" && uri.port_u16().is_none() {
        return Ok(None);
    }
    Ok(Some(match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow_list(policy: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(policy).unwrap();
        serde_json::from_value(v["URLAllowlist"].clone()).unwrap()
    }

    #[test]
    fn whatsapps_own_url_is_the_image_policy_unchanged() {
        let policy = for_whatsapp_url("https://web.whatsapp.com/");
        let image: Value = serde_json::from_str(IMAGE_POLICY).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&policy).unwrap(), image);
        assert_eq!(image["URLBlocklist"], serde_json::json!(["*"]));
        assert_eq!(image["ComponentUpdatesEnabled"], false);
        // the domains the operator and the agent treat as WhatsApp's are the image's
        let allowed = allow_list(&policy);
        for domain in crds::WHATSAPP_DOMAINS {
            assert!(allowed.iter().any(|a| a == domain), "{domain}: {allowed:?}");
        }
        assert_eq!(image["DefaultSearchProviderEnabled"], false);
    }

    #[test]
    fn another_url_is_allowed_with_its_scheme_host_and_port() {
        let policy = for_whatsapp_url("http://10.244.30.1:41234/");
        let list = allow_list(&policy);
        assert_eq!(list.last().unwrap(), "http://10.244.30.1:41234");
        assert!(list.contains(&"whatsapp.net".to_string()));
        assert_eq!(
            allow_list(&for_whatsapp_url("https://WA.example.org/x"))
                .last()
                .unwrap(),
            "https://wa.example.org"
        );
    }

    #[test]
    fn a_lookalike_domain_is_not_whatsapps() {
        let list = allow_list(&for_whatsapp_url("https://evilwhatsapp.com/"));
        assert_eq!(list.last().unwrap(), "https://evilwhatsapp.com");
    }

    #[test]
    fn a_url_without_a_host_or_not_http_is_refused_at_start_up() {
        for bad in ["not a url", "/relative", "ftp://web.whatsapp.com/"] {
            assert!(parse_whatsapp_url(bad).is_err(), "{bad}");
        }
        assert!(parse_whatsapp_url("http://10.0.0.1:8080/").is_ok());
    }
}
