//! Security headers on every answer of the public listener (issue 28, item 8): the UI, its
//! assets, the REST API and socket.io's polling transport.
//!
//! The UI's Content-Security-Policy is as strict as the built app (`frontend/dist`) allows:
//! Vite emits no inline script or style (one module script and one stylesheet, both
//! same-origin), React and the `qrcode` package set styles through the CSSOM (which
//! `style-src` does not govern) and write no HTML strings, the QR is an `<img>` with a `data:`
//! URL, and REST and socket.io go to the page's own origin (`'self'` also matches `ws:`/`wss:`
//! to it). The end-to-end tests (tests/e2e/tests/security.test.mjs) walk login → list → QR →
//! connected in Chromium and fail on any violation report.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

/// The policy of HTML documents (the UI).
pub const APP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The policy of everything else (JSON, scripts, styles): nothing may load from such a
/// document, were a browser to render one, and nothing may frame it.
pub const NONE_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

const COMMON: [(HeaderName, &str); 5] = [
    // Content types are what they say: a JSON answer is never sniffed into HTML or script.
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Frame blocking for browsers older than CSP `frame-ancestors`.
    (header::X_FRAME_OPTIONS, "DENY"),
    // URLs (hash routes carry session names) do not leave with a link.
    (header::REFERRER_POLICY, "no-referrer"),
    // A page of another origin that opened this one (or that this one opened) gets no handle
    // on its window.
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    // Other origins cannot embed these answers (an <img>/<script> pointing at the API).
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// `axum::middleware::map_response` hook: adds the headers, the CSP by content type, and
/// `Cache-Control: no-store` on JSON (tokens, session state and QR strings stay out of caches).
pub async fn add(mut resp: Response) -> Response {
    set(resp.headers_mut());
    resp
}

fn set(headers: &mut HeaderMap) {
    for (name, value) in COMMON {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // An answer without a body type gets no policy: a 304 (a reload revalidating index.html)
    // carries none, and the headers of a 304 replace the cached ones, so the empty policy there
    // turned the reloaded UI into a page that may load nothing.
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
    else {
        return;
    };
    let csp = if content_type.starts_with("text/html") {
        APP_CSP
    } else {
        NONE_CSP
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if content_type.starts_with("application/json") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        set(&mut h);
        h
    }

    #[test]
    fn html_gets_the_app_policy_and_json_the_empty_one_and_no_store() {
        let html = with("text/html; charset=utf-8");
        assert_eq!(html[header::CONTENT_SECURITY_POLICY], APP_CSP);
        assert!(html.get(header::CACHE_CONTROL).is_none());
        let json = with("application/json");
        assert_eq!(json[header::CONTENT_SECURITY_POLICY], NONE_CSP);
        assert_eq!(json[header::CACHE_CONTROL], "no-store");
        for h in [&html, &json, &with("text/javascript")] {
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
    }

    #[test]
    fn an_answer_without_a_body_type_keeps_the_cached_policy() {
        // A 304 revalidating the UI: its headers replace the cached 200's.
        let mut h = HeaderMap::new();
        set(&mut h);
        assert!(h.get(header::CONTENT_SECURITY_POLICY).is_none());
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[test]
    fn every_policy_forbids_framing() {
        for csp in [APP_CSP, NONE_CSP] {
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
        }
    }
}
