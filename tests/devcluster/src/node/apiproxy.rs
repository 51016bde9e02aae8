//! The node and its pods reach the API server at `host_ip:api_port`: a TCP forwarder to
//! `127.0.0.1:api_port` (the API server listens on loopback only). TLS passes through
//! untouched.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards every connection on `listen` to `target` until shutdown.
pub async fn forward(listener: TcpListener, target: SocketAddr, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Binds `host_ip:api_port`. When the API server itself already listens there (bound to all
/// addresses), pods reach it directly and no forwarder is needed: returns None.
pub async fn bind(host_ip: Ipv4Addr, api_port: u16) -> Option<TcpListener> {
    match TcpListener::bind((host_ip, api_port)).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::info!(%host_ip, api_port, error = %e, "no API forwarder on the bridge address (port already served)");
            None
        }
    }
}
