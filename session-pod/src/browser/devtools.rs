//! The DevTools address Chromium prints on stderr (`--remote-debugging-port=0` picks a free
//! port), and the drain of the rest of its stderr.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use crate::error::{Error, Result};

use super::process::Chromium;

/// Lines of Chromium's stderr a failed launch reports.
const TAIL: usize = 20;

/// Reads Chromium's stderr until it prints `DevTools listening on ws://…`; then keeps draining
/// it (at debug level, target `chromium`) in a task of `tasks` so Chromium never writes into a
/// full or closed pipe.
pub(super) async fn address(
    chromium: &mut Chromium,
    timeout: Duration,
    tasks: &mut JoinSet<()>,
) -> Result<String> {
    let stderr = chromium
        .take_stderr()
        .ok_or_else(|| Error::Launch("Chromium's stderr is not piped".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut tail: VecDeque<String> = VecDeque::new();
    let found = tokio::time::timeout(timeout, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(url) = listening_on(&line) {
                        return Ok(url.to_string());
                    }
                    tail.push_back(line);
                    if tail.len() > TAIL {
                        tail.pop_front();
                    }
                }
                Ok(None) => return Err("Chromium exited before DevTools was listening".to_string()),
                Err(e) => return Err(format!("reading Chromium's stderr: {e}")),
            }
        }
    })
    .await;
    let url = match found {
        Ok(Ok(url)) => url,
        Ok(Err(why)) => {
            let status = chromium
                .exit_status()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            return Err(Error::Launch(format!(
                "{why}{status}: {}",
                Vec::from(tail).join("\n")
            )));
        }
        Err(_) => {
            return Err(Error::Launch(format!(
                "Chromium did not open DevTools within {timeout:?}: {}",
                Vec::from(tail).join("\n")
            )));
        }
    };
    tasks.spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "chromium", %line);
        }
    });
    Ok(url)
}

/// The browser's DevTools WebSocket address, if `line` announces it.
fn listening_on(line: &str) -> Option<&str> {
    let (_, url) = line.rsplit_once("listening on ")?;
    (url.starts_with("ws") && url.contains("devtools/browser")).then(|| url.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_address_is_read_from_its_line() {
        assert_eq!(
            listening_on("DevTools listening on ws://127.0.0.1:40123/devtools/browser/ab-cd\n"),
            Some("ws://127.0.0.1:40123/devtools/browser/ab-cd")
        );
        assert_eq!(
            listening_on("[1:2:ERROR:foo.cc] listening on nothing"),
            None
        );
        assert_eq!(
            listening_on("DevTools listening on ws://127.0.0.1:1/devtools/page/x"),
            None
        );
    }
}
