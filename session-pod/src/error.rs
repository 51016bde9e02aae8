use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The API server refused this agent's credentials for its CR.
    #[error("access to WhatsAppSession {namespace}/{name} refused (HTTP {code}): {message}")]
    Refused {
        namespace: String,
        name: String,
        code: u16,
        message: String,
    },

    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),

    #[error("launching Chromium: {0}")]
    Launch(String),

    #[error("Chromium DevTools protocol: {0}")]
    Cdp(#[from] chromiumoxide::error::CdpError),

    #[error("page script {script} did not answer within {secs:.1}s")]
    ScriptTimeout { script: &'static str, secs: f64 },

    #[error("page script {script} failed: {message}")]
    Script {
        script: &'static str,
        message: String,
    },

    #[error("page driver script {path}: {source}")]
    DriverScript {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("profile {path}: {source}")]
    Profile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("installing the signal handlers: {0}")]
    Signals(std::io::Error),

    #[error("health and metrics server: {0}")]
    Http(#[from] runtime::metrics::ServeError),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Whether Chromium or the page only answered too slowly (a loaded machine), as opposed
    /// to failing: the status says TIMEOUT and the profile is not suspected.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::ScriptTimeout { .. } | Error::Cdp(chromiumoxide::error::CdpError::Timeout)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
