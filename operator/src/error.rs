//! Errors of the operator.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer error: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("object is missing {0}")]
    MissingField(&'static str),

    #[error("could not serialize an object: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A short label for metrics (`wa_operator_reconcile_errors_total{kind}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// The API said the object — or its whole namespace — is gone or going: 404, or new content
/// refused because the namespace is being terminated (cause `NamespaceTerminating`).
pub fn kube_gone(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.is_not_found()
                || (s.is_forbidden()
                    && s.details.as_ref().is_some_and(|d| {
                        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                    }))
        }
        _ => false,
    }
}

impl Error {
    /// Whether this reconcile failed only because the session (or its namespace) is gone or
    /// going — nothing is left to do, and its next change (the deletion mark, or none at all)
    /// is what matters. Not for cleanup failures: those keep the finalizer, and a cleanup
    /// handles its own 404s (an already deleted PVC is a done cleanup).
    pub fn is_gone(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(e) => kube_gone(e),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) => e.is_gone(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => kube_gone(e),
                _ => false,
            },
            _ => false,
        }
    }
}

impl Error {
    /// Whether this reconcile failed only because the API server was away or overloaded
    /// (`runtime::kube_errors::is_transient`): the retry mends it once it is back, so it is not
    /// reported as a problem before the outage bound (docs/operator.md "Logs").
    pub fn is_transient(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        use runtime::kube_errors::is_transient;
        match self {
            Error::Kube(e) => is_transient(e),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.is_transient(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => is_transient(e),
                _ => false,
            },
            _ => false,
        }
    }

    /// The failure in words for the Warning Event on the session: the API server's own message
    /// rather than kube's debug dump of the whole Status.
    pub fn event_note(&self) -> String {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(e) => kube_note(e),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) => e.event_note(),
                F::CleanupFailed(e) => format!("cleanup: {}", e.event_note()),
                F::AddFinalizer(e) => format!("adding the finalizer: {}", kube_note(e)),
                F::RemoveFinalizer(e) => format!("removing the finalizer: {}", kube_note(e)),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }
}

fn kube_note(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the API server refused ({}): {}", s.code, s.message),
        other => other.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_carry_the_api_servers_message() {
        let status = kube::core::Status::failure(
            "persistentvolumeclaims \"data-a\" is forbidden: exceeded quota: no-pvc",
            "Forbidden",
        )
        .with_code(403);
        let e = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::Kube(kube::Error::Api(Box::new(status))),
        )));
        assert_eq!(
            e.event_note(),
            "the API server refused (403): persistentvolumeclaims \"data-a\" is forbidden: \
             exceeded quota: no-pvc"
        );
        assert_eq!(
            Error::MissingField("metadata.namespace").event_note(),
            "object is missing metadata.namespace"
        );
        assert!(!e.is_transient(), "a refusal is not an outage");
    }

    #[test]
    fn the_api_server_away_is_transient_wherever_the_reconcile_met_it() {
        let refused = || {
            kube::Error::Service(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        };
        assert!(Error::Kube(refused()).is_transient());
        let in_apply = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::Kube(refused()),
        )));
        assert!(in_apply.is_transient());
        let adding = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(
            refused(),
        )));
        assert!(adding.is_transient());
        assert!(!Error::MissingField("metadata.name").is_transient());
    }
}
