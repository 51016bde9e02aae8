//! Errors of the operator. A failed request to the API server carries the [`Call`] that failed
//! (what was asked of which object), so the log line and the Warning Event
//! ([`crate::events::Events::error`]) say which child or call it was, not only the API
//! server's message.
use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{call}: {source}")]
    Kube {
        call: Box<Call>,
        #[source]
        source: kube::Error,
    },

    #[error("finalizer error: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("object is missing {0}")]
    MissingField(&'static str),

    #[error("could not serialize {object}: {source}")]
    Serialize {
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What was asked of the API server: `verb` on the object `kind` `namespace`/`name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub verb: Verb,
    pub api_version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Server-side apply of the operator's fields.
    Apply,
    /// Server-side apply to the status subresource.
    ApplyStatus,
    Get,
    Create,
    Replace,
    Patch,
    Delete,
}

impl Verb {
    fn gerund(self) -> &'static str {
        match self {
            Verb::Apply => "applying",
            Verb::ApplyStatus => "applying the status of",
            Verb::Get => "reading",
            Verb::Create => "creating",
            Verb::Replace => "replacing",
            Verb::Patch => "patching",
            Verb::Delete => "deleting",
        }
    }
}

impl Call {
    /// `verb` on the `K` named `name` in `namespace`.
    pub fn on<K: Resource<DynamicType = ()>>(
        verb: Verb,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        Call {
            verb,
            api_version: K::api_version(&()),
            kind: K::kind(&()),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    /// The object the call was about, for an Event's `related` object.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.to_string()),
            kind: Some(self.kind.to_string()),
            namespace: self.namespace.clone(),
            name: Some(self.name.clone()),
            ..Default::default()
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.verb.gerund(), self.kind, self.name)
    }
}

/// Names the call a `kube::Result` came from: `api.get(name).await.during(call)?`.
pub trait During<T> {
    fn during(self, call: Call) -> Result<T>;
}

impl<T> During<T> for kube::Result<T> {
    fn during(self, call: Call) -> Result<T> {
        self.map_err(|source| Error::Kube {
            call: Box::new(call),
            source,
        })
    }
}

impl Error {
    /// A short label for metrics (`wa_operator_reconcile_errors_total{kind}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// The API server's answer, when the failure was one.
    pub fn kube(&self) -> Option<&kube::Error> {
        match self {
            Error::Kube { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the API server refused the call with `code`.
    pub fn is_api_code(&self, code: u16) -> bool {
        matches!(self.kube(), Some(kube::Error::Api(s)) if s.code == code)
    }

    /// The call that failed, wherever in the reconcile (or its finalizer) it was.
    pub fn call(&self) -> Option<&Call> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube { call, .. } => Some(call.as_ref()),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.call(),
                _ => None,
            },
            _ => None,
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
            Error::Kube { source, .. } => kube_gone(source),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) => e.is_gone(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => kube_gone(e),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether this reconcile failed only because the API server was away or overloaded
    /// (`runtime::kube_errors::is_transient`): the retry mends it once it is back, so it is not
    /// reported as a problem before the outage bound (docs/operator.md "Logs").
    pub fn is_transient(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        use runtime::kube_errors::is_transient;
        match self {
            Error::Kube { source, .. } => is_transient(source),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.is_transient(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => is_transient(e),
                _ => false,
            },
            _ => false,
        }
    }

    /// The failure in words for the Warning Event on the session: the API server's own message
    /// rather than kube's debug dump of the whole Status, then which call it answered.
    pub fn event_note(&self) -> String {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube { call, source } => format!("{} ({call})", kube_note(source)),
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
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    fn applying_pvc(source: kube::Error) -> Error {
        Err::<(), _>(source)
            .during(Call::on::<PersistentVolumeClaim>(
                Verb::Apply,
                Some("ns"),
                "data-a",
            ))
            .expect_err("failed")
    }

    #[test]
    fn event_notes_carry_the_api_servers_message() {
        let status = kube::core::Status::failure(
            "persistentvolumeclaims \"data-a\" is forbidden: exceeded quota: no-pvc",
            "Forbidden",
        )
        .with_code(403);
        let e = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            applying_pvc(kube::Error::Api(Box::new(status))),
        )));
        assert_eq!(
            e.event_note(),
            "the API server refused (403): persistentvolumeclaims \"data-a\" is forbidden: \
             exceeded quota: no-pvc (applying PersistentVolumeClaim data-a)"
        );
        let related = e.call().map(Call::object_ref).expect("the call");
        assert_eq!(related.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(related.namespace.as_deref(), Some("ns"));
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
        assert!(applying_pvc(refused()).is_transient());
        let in_apply = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            applying_pvc(refused()),
        )));
        assert!(in_apply.is_transient());
        let adding = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(
            refused(),
        )));
        assert!(adding.is_transient());
        assert!(!Error::MissingField("metadata.name").is_transient());
    }
}
