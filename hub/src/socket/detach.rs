//! Copies a request's head (URI, header names and values) out of the connection's read buffer.
//!
//! hyper parses a request head in place: the URI and the header values are `Bytes` slices of
//! the connection's read buffer (16 KiB once grown). engineioxide keeps the request parts of
//! every socket for its whole life (`Socket::req_parts`), so without a copy each websocket
//! would keep its whole read buffer alive for a few hundred bytes of headers (docs/hub.md,
//! "Memory per socket"). With owned copies the buffer is freed when hyper hands the connection
//! over to the websocket.

use axum::extract::{OriginalUri, Request};
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::Uri;

/// The request with its URI and headers (and axum's copy of the URI) in their own allocations.
/// A copy is a few hundred bytes; it is done for every request so no path can keep a buffer.
pub async fn detach_head(mut req: Request) -> Request {
    *req.uri_mut() = owned_uri(req.uri());
    let headers = std::mem::take(req.headers_mut());
    *req.headers_mut() = owned_headers(&headers);
    if let Some(OriginalUri(uri)) = req.extensions_mut().get_mut::<OriginalUri>() {
        *uri = owned_uri(uri);
    }
    req
}

/// The same URI in a new allocation (a URI that parsed once parses again).
fn owned_uri(uri: &Uri) -> Uri {
    uri.to_string().parse().unwrap_or_else(|_| uri.clone())
}

fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; both were valid in the original map, so neither fails.
        let (Ok(name), Ok(mut copy)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        copy.set_sensitive(value.is_sensitive());
        out.append(name, copy);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};

    /// A request whose head points into one big buffer, as hyper builds it.
    fn parsed_in_place(buffer: &Bytes) -> Request {
        let text = std::str::from_utf8(buffer).expect("utf-8");
        let uri_at = text.find("/socket.io/").expect("uri");
        let uri_end = uri_at + text[uri_at..].find(' ').expect("end of uri");
        let uri = Uri::from_maybe_shared(buffer.slice(uri_at..uri_end)).expect("uri");
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri.clone();
        for (name, at) in [("x-forwarded-for", "10.0.0.1"), ("cookie", "a=b")] {
            let i = text.find(at).expect("value");
            let value =
                HeaderValue::from_maybe_shared(buffer.slice(i..i + at.len())).expect("value");
            req.headers_mut()
                .append(HeaderName::from_static(name), value);
        }
        req.headers_mut()
            .get_mut("cookie")
            .expect("cookie")
            .set_sensitive(true);
        req.extensions_mut().insert(OriginalUri(uri));
        req
    }

    fn inside(buffer: &Bytes, s: &[u8]) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&s.as_ptr())
    }

    #[tokio::test]
    async fn nothing_of_the_head_points_into_the_read_buffer_any_more() {
        let mut raw = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nCookie: a=b\r\n\r\n".to_vec();
        raw.resize(16 * 1024, 0);
        let buffer = Bytes::from(raw);
        let before = parsed_in_place(&buffer);
        assert!(
            inside(&buffer, before.uri().path().as_bytes()),
            "the fixture shares the buffer"
        );

        let req = detach_head(before).await;

        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(&buffer, req.uri().path().as_bytes()));
        assert!(!inside(
            &buffer,
            req.uri().query().expect("query").as_bytes()
        ));
        let original = &req
            .extensions()
            .get::<OriginalUri>()
            .expect("original uri")
            .0;
        assert_eq!(original, req.uri());
        assert!(!inside(&buffer, original.path().as_bytes()));
        assert_eq!(req.headers().len(), 2);
        for (name, value) in req.headers() {
            assert!(
                !inside(&buffer, value.as_bytes()),
                "{name} still shares the buffer"
            );
        }
        assert_eq!(req.headers()["x-forwarded-for"], "10.0.0.1");
        assert!(req.headers()["cookie"].is_sensitive());
    }

    #[tokio::test]
    async fn repeated_headers_keep_their_order() {
        let mut req = Request::new(Body::empty());
        for v in ["a", "b", "c"] {
            req.headers_mut()
                .append("x-many", HeaderValue::from_static(v));
        }
        let req = detach_head(req).await;
        let values: Vec<_> = req.headers().get_all("x-many").iter().collect();
        assert_eq!(values, ["a", "b", "c"]);
    }
}
