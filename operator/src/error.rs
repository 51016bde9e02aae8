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

    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

impl Error {
    /// A short label for metrics (`wa_operator_reconcile_errors_total{kind}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
            Error::Serialize(_) => "serialize",
            Error::Lease(_) => "lease",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
