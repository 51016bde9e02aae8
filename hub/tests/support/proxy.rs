//! A TCP forwarder between the hub and the API server, so a test can cut the hub off from the
//! API (listener closed, every open connection reset) and restore it, without disturbing the
//! devcluster other tests share. TLS passes through untouched (the API server certificate is
//! for 127.0.0.1, which the proxy also listens on).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct ApiProxy {
    pub port: u16,
    upstream: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiProxy {
    /// Start forwarding to the API server of `kubeconfig`; returns the proxy and a kubeconfig
    /// (in `dir`) that points at it.
    pub async fn start(kubeconfig: &Path, dir: &Path) -> (Self, PathBuf) {
        let text = std::fs::read_to_string(kubeconfig).unwrap();
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .map(|s| s.trim().trim_matches('"').to_owned())
            .expect("server: in kubeconfig");
        let hostport = server
            .strip_prefix("https://")
            .expect("https server")
            .trim_end_matches('/');
        let upstream: SocketAddr = hostport.parse().expect("server is ip:port");
        let port = devcluster_testing::free_port();
        let mut p = ApiProxy {
            port,
            upstream,
            task: None,
        };
        p.up().await;
        let proxied = dir.join("kubeconfig-proxied");
        std::fs::write(
            &proxied,
            text.replace(&server, &format!("https://{}:{port}", upstream.ip())),
        )
        .unwrap();
        (p, proxied)
    }

    pub async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// Cut the hub off: stop listening and reset every open connection.
    pub async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}
