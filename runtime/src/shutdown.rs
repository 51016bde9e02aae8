//! One shutdown handle per binary, modelled on kubert's `shutdown`: SIGTERM or SIGINT starts a
//! graceful shutdown that every task sees through a [`CancellationToken`]; a second signal ends
//! the process at once (a stuck drain must not outlive the operator's patience — nor the
//! kubelet's grace period, which ends in SIGKILL anyway). Installing the handlers is part of
//! start-up: a binary that cannot is told so at once instead of running unstoppable.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The process's shutdown: cancelled by the first SIGTERM or SIGINT, or by the binary itself
/// ([`Shutdown::trigger`], e.g. when it lost its leadership).
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// Installs the SIGTERM and SIGINT handlers and watches them in a task. Needs a Tokio
    /// runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        let shutdown = Self::new();
        tokio::spawn(watch(term, int, shutdown.token.clone()));
        Ok(shutdown)
    }

    /// A handle no signal cancels (tests, commands that run once).
    pub fn new() -> Self {
        Shutdown {
            token: CancellationToken::new(),
        }
    }

    /// The token tasks select on; cancelled when the shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Resolves when the shutdown has started.
    pub async fn started(&self) {
        self.token.cancelled().await
    }

    pub fn is_started(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Starts the shutdown from inside the binary.
    pub fn trigger(&self) {
        self.token.cancel()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

async fn watch(mut term: Signal, mut int: Signal, token: CancellationToken) {
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        // Started from inside: a later signal still ends the process at once.
        _ = token.cancelled() => "",
    };
    if !name.is_empty() {
        tracing::info!(signal = name, "shutting down");
        token.cancel();
    }
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("a second signal during the shutdown; exiting now");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_starts_the_shutdown() {
        let shutdown = Shutdown::on_signals().expect("handlers");
        assert!(!shutdown.is_started());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
        tokio::time::timeout(std::time::Duration::from_secs(10), shutdown.started())
            .await
            .expect("the shutdown started");
    }

    #[test]
    fn a_trigger_starts_it_for_every_clone() {
        let shutdown = Shutdown::new();
        let token = shutdown.clone().token();
        shutdown.trigger();
        assert!(token.is_cancelled());
    }
}
