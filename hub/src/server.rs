//! The public listener's own accept loop (issue 28, item 7).
//!
//! Not `axum::serve`: it gives hyper no timer, so hyper's header read timeout would not apply,
//! and a client trickling header bytes, an idle keep-alive connection or a request whose body
//! never completes could each hold a connection (and its buffers) for as long as the client
//! liked. Here every connection gets:
//! - a **header read timeout** (hyper's, with a tokio timer). hyper restarts it whenever it
//!   waits for a request head, so it also bounds an idle keep-alive connection between requests;
//! - a **body read deadline** counted from the request head: the whole body must arrive within
//!   it, or reading it fails with [`BodyTimeout`] (the JSON extractor answers 408 `TIMEOUT`). A
//!   deadline for the whole body rather than per chunk, so a body trickled a byte at a time does
//!   not reset it;
//! - a **bounded read buffer** (hyper's `max_buf_size`): larger request heads get 431;
//! - **admission**: at most `max_connections` open connections in all and
//!   `max_connections_per_client` from one client address (a trusted proxy, which carries many
//!   clients, has no per-client cap); beyond either, the connection is
//!   closed at once, before anything is read from it, and counted in
//!   `wa_hub_connections_refused_total{reason}`. A connection counts until its socket is closed,
//!   including its life as a websocket after an upgrade.
//!
//! HTTP/1.1 only: websockets (socket.io) need it. Graceful shutdown: stop accepting, close the
//! socket.io sockets first (an open websocket would otherwise hold the shutdown forever), then
//! let requests in flight finish — for at most [`DRAIN_LIMIT`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::client_addr::{TrustedProxies, client_key};
use crate::metrics::{Metrics, RefusedLabels};

/// How long a shutdown waits for requests in flight once the sockets are closed. Requests are
/// short (the longest is a patch to the API server or one argon2 check); a client stalling
/// its request must not hold the pod past its termination grace period.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// hyper's read buffer per connection, and so the largest request head (431 beyond). hyper's
/// default is ~400 KiB; a request head here is a few hundred bytes plus a JWT.
pub const MAX_BUF_BYTES: usize = 16 * 1024;

/// What each connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a request head to arrive, counted from when the connection starts waiting for one
    /// (a new connection, or an idle keep-alive one).
    pub header_read_timeout: Duration,
    /// For the whole request body to arrive, counted from the request head.
    pub body_read_timeout: Duration,
    /// Open connections in all; 0: no limit.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client: its /64); 0: no limit.
    pub max_connections_per_client: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, awaits
/// `close_sockets` (the socket.io sockets: an upgraded connection is not hyper's to close) and
/// gives requests in flight [`DRAIN_LIMIT`] to finish.
pub async fn serve<C>(
    mut listener: TcpListener,
    router: Router,
    limits: Limits,
    trusted: TrustedProxies,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
    close_sockets: C,
) where
    C: Future<Output = ()>,
{
    let admission = Arc::new(Admission::new(limits, trusted, metrics));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_BYTES);
    // Every connection task holds a receiver: the sender sees them all gone when they end.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = Listener::accept(&mut listener) => accepted,
        };
        let Some(permit) = admission.admit(peer.ip()) else {
            // Closing at once: nothing is read, no task or buffer is spent on it.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let body_timeout = limits.body_read_timeout;
        let app = router.clone();
        let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
            let mut req = req.map(|body| DeadlineBody::after(body, body_timeout));
            // What `into_make_service_with_connect_info` did: the login throttle keys on it.
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = http
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            // Timeouts, resets and malformed requests: the client's doing.
                            tracing::debug!(error = %e, client = %peer.ip(), "connection ended");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        // Finish the request in flight, then close; an idle one closes now.
                        conn.as_mut().graceful_shutdown();
                        stopping = true;
                    }
                }
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    close_sockets.await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_LIMIT, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::info!(
            open = stop_tx.receiver_count(),
            "connections still open after the drain limit; closing them"
        );
    }
}

/// The connections open in all and per client, checked on accept.
struct Admission {
    limits: Limits,
    trusted: TrustedProxies,
    open: Mutex<Open>,
    gauge: Gauge,
    refused: Family<RefusedLabels, Counter>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Admission {
    fn new(limits: Limits, trusted: TrustedProxies, metrics: &Metrics) -> Self {
        Self {
            limits,
            trusted,
            open: Mutex::new(Open::default()),
            gauge: metrics.connections_open.clone(),
            refused: metrics.connections_refused.clone(),
        }
    }

    /// A permit for one more connection from `ip`, or `None` (counted) when a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let client = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let reached = |limit: usize, n: usize| limit != 0 && n >= limit;
        let refused = if reached(self.limits.max_connections, open.total) {
            Some("total")
        } else if !self.trusted.contains(ip)
            && reached(
                self.limits.max_connections_per_client,
                open.by_client.get(&client).copied().unwrap_or(0),
            )
        {
            Some("per_client")
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(open);
            self.refused
                .get_or_create(&RefusedLabels {
                    reason: reason.into(),
                })
                .inc();
            tracing::debug!(client = %ip, reason, "connection refused");
            return None;
        }
        open.total += 1;
        *open.by_client.entry(client).or_insert(0) += 1;
        self.gauge.inc();
        Some(Permit {
            admission: self.clone(),
            client,
        })
    }

    fn release(&self, client: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        // Entries go when their count does: the map holds only clients with open connections.
        if let Some(n) = open.by_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&client);
            }
        }
        self.gauge.dec();
    }
}

/// One admitted connection; released when the socket is dropped.
struct Permit {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.client);
    }
}

/// The TCP stream with its permit: after a websocket upgrade hyper hands the stream to
/// engineioxide, and the permit goes with it until the websocket closes.
struct Counted {
    stream: TcpStream,
    _permit: Permit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The error of a request body that did not arrive within the body read timeout. The JSON
/// extractor finds it in the error's source chain and answers 408 `TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimeout;

/// Whether `err` (or anything in its source chain) is a [`BodyTimeout`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A request body that fails with [`BodyTimeout`] unless it is complete by its deadline.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Made on the first poll that has to wait, so requests without a body allocate nothing.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    /// `body`, due within `timeout` from now (a body already complete is passed as is).
    pub fn after(body: B, timeout: Duration) -> Body {
        if body.is_end_stream() {
            return Body::new(body);
        }
        Body::new(DeadlineBody {
            inner: body,
            deadline: Instant::now() + timeout,
            sleep: None,
        })
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that sends one chunk and then never completes, as a stalled client.
    struct Stalled(bool);

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"user")))))
            }
        }
    }

    #[tokio::test]
    async fn a_stalled_body_fails_with_the_timeout_the_json_extractor_answers_as_408() {
        use axum::extract::FromRequest;
        use axum::response::IntoResponse;
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(DeadlineBody::after(
                Stalled(false),
                Duration::from_millis(50),
            ))
            .unwrap();
        let rejected = crate::routes::JsonBody::<serde_json::Value>::from_request(req, &()).await;
        let err = rejected.err().expect("a stalled body is refused");
        assert_eq!(err.code, crate::error::Code::Timeout);
        assert_eq!(err.into_response().status(), 408);
    }

    #[tokio::test]
    async fn a_complete_body_is_read_as_is() {
        let body = DeadlineBody::after(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(1),
        );
        let bytes = axum::body::to_bytes(body, 1024).await.unwrap();
        assert_eq!(&bytes[..], b"hello");
    }

    #[test]
    fn admission_counts_per_client_and_in_all_and_releases_on_drop() {
        let metrics = Metrics::new();
        let limits = Limits {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_connections_per_client: 2,
        };
        let adm = Arc::new(Admission::new(limits, TrustedProxies::default(), &metrics));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = adm.admit(a).expect("first");
        let a2 = adm.admit(a).expect("second");
        assert!(adm.admit(a).is_none(), "third from one client");
        let b1 = adm.admit(b).expect("another client");
        assert!(adm.admit(b).is_none(), "over the total");
        assert_eq!(metrics.connections_open.get(), 3);
        drop(a1);
        let a3 = adm.admit(a).expect("a slot freed");
        drop((a2, a3, b1));
        assert_eq!(metrics.connections_open.get(), 0);
        assert!(adm.open.lock().unwrap().by_client.is_empty());
        let refused = |reason: &str| {
            metrics
                .connections_refused
                .get_or_create(&RefusedLabels {
                    reason: reason.into(),
                })
                .get()
        };
        assert_eq!((refused("per_client"), refused("total")), (1, 1));
    }

    #[test]
    fn a_trusted_proxy_has_no_per_client_cap() {
        let metrics = Metrics::new();
        let limits = Limits {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            max_connections: 0,
            max_connections_per_client: 1,
        };
        let trusted = TrustedProxies::parse(&["10.9.0.0/16".into()]).unwrap();
        let adm = Arc::new(Admission::new(limits, trusted, &metrics));
        let proxy: IpAddr = "10.9.0.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| adm.admit(proxy).expect("proxy")).collect();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let one = adm.admit(client).expect("first");
        assert!(adm.admit(client).is_none(), "a client's second");
        drop((held, one));
    }
}
