//! Debian's tinyproxy as a real forward proxy for the session's egress (`spec.proxy`), with its
//! log in a file the tests read: which requests Chromium sent, and which the proxy forwarded.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tinyproxy in the foreground (`-d`) on a free port of `listen`, its log in a file.
pub struct Tinyproxy {
    child: Child,
    listen: IpAddr,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy on 127.0.0.1, forwarding only to 127.0.0.1 (the fake): Chromium's
    /// own background requests (component updates, accounts.google.com, …) are refused with 403
    /// "Filtered", not sent out of the machine, and logged. With `auth` it answers requests
    /// without (valid) credentials with 407 (none) or 401 (wrong ones), as tinyproxy 1.11 does.
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let lo = IpAddr::from([127, 0, 0, 1]);
        Self::start_on(lo, &[lo.to_string()], auth)
    }

    /// Starts tinyproxy on `listen` (a free port), forwarding only to the hosts in `allowed`
    /// (fnmatch patterns on the host name or address) and refusing the rest, each logged.
    pub fn start_on(listen: IpAddr, allowed: &[String], auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port_on(listen);
        let filter = dir.path().join("filter");
        std::fs::write(&filter, allowed.join("\n") + "\n").expect("write filter");
        // A pod's address is not loopback: allow every client; the tests' own network is the
        // boundary.
        let mut conf = format!(
            "Port {port}\nListen {listen}\nTimeout 120\nMaxClients 64\n\
             LogLevel Connect\nDisableViaHeader Yes\nAllow 0.0.0.0/0\n\
             Filter \"{}\"\nFilterType fnmatch\nFilterDefaultDeny Yes\n",
            filter.display()
        );
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let log = dir.path().join("tinyproxy.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::from(file.try_clone().expect("dup")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting tinyproxy ({e}): install it (tests/scripts/install-deps.sh)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((listen, port)).is_err() {
            let exited = child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "tinyproxy not listening on {listen}:{port} ({exited:?}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            listen,
            port,
            log,
            _dir: dir,
        }
    }

    /// `http://ADDR:PORT`, what `WA_PROXY_URL` / `spec.proxy.url` take.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.listen, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests the proxy received for URLs starting with `prefix` (its `Request` lines).
    pub fn requests_for(&self, prefix: &str) -> Vec<String> {
        let needle = format!("GET {prefix}");
        self.log_text()
            .lines()
            .filter(|l| l.contains("]: Request (") && l.contains(&needle))
            .map(str::to_string)
            .collect()
    }

    /// The `host[:port]` of every request the proxy received (forwarded or refused), in order:
    /// `GET http://host:port/…` and `CONNECT host:443` alike.
    pub fn requested_hosts(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                l.split_once("]: Request (")?
                    .1
                    .split_once("): ")
                    .map(|p| p.1)
            })
            .filter_map(request_host)
            .collect()
    }

    /// The `host[:port]` of the requests for any host but `allowed`, in order.
    pub fn requested_hosts_except(&self, allowed: &str) -> Vec<String> {
        self.requested_hosts()
            .into_iter()
            .filter(|h| h != allowed)
            .collect()
    }

    /// How many connections the proxy opened to a server on the client's behalf.
    pub fn forwarded(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("Established connection to host"))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host[:port]` a request line asks for: `GET http://h:p/x HTTP/1.1` → `h:p`,
/// `CONNECT h:443 HTTP/1.1` → `h:443`.
fn request_host(line: &str) -> Option<String> {
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    if method.eq_ignore_ascii_case("CONNECT") {
        return Some(target.to_string());
    }
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    Some(rest.split(['/', '?']).next().unwrap_or(rest).to_string())
}

fn free_port_on(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port on {ip}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::request_host;

    #[test]
    fn request_lines_name_their_host() {
        assert_eq!(
            request_host("GET http://10.0.0.1:8080/app.js HTTP/1.1").as_deref(),
            Some("10.0.0.1:8080")
        );
        assert_eq!(
            request_host("CONNECT accounts.google.com:443 HTTP/1.1").as_deref(),
            Some("accounts.google.com:443")
        );
        assert_eq!(
            request_host("GET http://h?x HTTP/1.1").as_deref(),
            Some("h")
        );
    }
}
