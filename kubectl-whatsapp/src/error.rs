//! What can go wrong, said in the user's language. Every error ends the plugin with exit code 1
//! (clap's usage errors keep their 2), like kubectl.

use std::time::Duration;

use crds::SessionState;

use crate::lang::Lang;

/// The resource the plugin reads and writes, as RBAC names it (`kubectl auth can-i VERB THIS`).
pub const RESOURCE: &str = "whatsappsessions.whatsapp.leadmaster.io";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or names no usable context.
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("session {name} does not exist in namespace {namespace}")]
    NotFound { name: String, namespace: String },
    /// The API server does not serve the resource: the CRD is not installed.
    #[error("the cluster does not serve {RESOURCE}: is the CRD installed?")]
    CrdMissing,
    /// `namespace` empty: all namespaces (`list -A`).
    #[error("RBAC forbids {verb} on {RESOURCE} {}: {detail}", where_en(namespace))]
    Forbidden {
        verb: &'static str,
        namespace: String,
        detail: String,
    },
    #[error("the Kubernetes API server could not be reached: {0}")]
    Unreachable(String),
    #[error("the API server refused {verb} {RESOURCE} ({code}): {message}")]
    Api {
        verb: &'static str,
        code: u16,
        message: String,
    },
    #[error("timed out after {}s waiting for session {name} to be {}", after.as_secs(), want.as_str())]
    Timeout {
        name: String,
        want: SessionState,
        after: Duration,
    },
    /// The QR round ended (the page offers no more QRs) without a scan.
    #[error("the QRs of session {name} expired without a scan")]
    QrExpired { name: String },
    /// The session was deleted while the plugin waited on it.
    #[error("session {name} was deleted in namespace {namespace}")]
    Deleted { name: String, namespace: String },
    #[error("the QR cannot be drawn: {0}")]
    Qr(String),
}

fn where_en(namespace: &str) -> String {
    if namespace.is_empty() {
        "in any namespace".into()
    } else {
        format!("in namespace {namespace}")
    }
}

fn where_es(namespace: &str) -> String {
    if namespace.is_empty() {
        "en todos los espacios de nombres".into()
    } else {
        format!("en el espacio de nombres {namespace}")
    }
}

impl Error {
    /// Maps a failed API call: `verb` on session `name` (None for list/watch of many).
    pub fn from_kube(
        e: kube::Error,
        verb: &'static str,
        namespace: &str,
        name: Option<&str>,
    ) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 403 => Error::Forbidden {
                verb,
                namespace: namespace.to_string(),
                detail: s.message,
            },
            // A 404 naming the object is a missing session; one without is a missing resource
            // type (the CRD), which a user must fix differently.
            kube::Error::Api(s) if s.code == 404 => {
                let named = s
                    .details
                    .as_ref()
                    .is_some_and(|d| Some(d.name.as_str()) == name);
                match name {
                    Some(n) if named || s.message.contains(&format!("\"{n}\"")) => {
                        Error::NotFound {
                            name: n.to_string(),
                            namespace: namespace.to_string(),
                        }
                    }
                    _ => Error::CrdMissing,
                }
            }
            kube::Error::Api(s) => Error::Api {
                verb,
                code: s.code,
                message: s.message,
            },
            other @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                Error::Unreachable(other.to_string())
            }
            other => Error::Api {
                verb,
                code: 0,
                message: other.to_string(),
            },
        }
    }

    /// The message for the user, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Error::Config(e), Lang::Es) => format!("no se pudo usar el kubeconfig: {e}"),
            (Error::NotFound { name, namespace }, Lang::Es) => {
                format!("no existe la sesión {name} en el espacio de nombres {namespace}")
            }
            (Error::CrdMissing, Lang::Es) => format!(
                "el clúster no sirve {RESOURCE}: ¿está instalado el CRD de whatsapp-operator?"
            ),
            (
                Error::Forbidden {
                    verb,
                    namespace,
                    detail,
                },
                Lang::Es,
            ) => format!(
                "RBAC no permite «{verb}» sobre {RESOURCE} {} \
                 (pida ese permiso en un Role o use otro -n/--context)\n  servidor: {detail}",
                where_es(namespace)
            ),
            (Error::Unreachable(e), Lang::Es) => {
                format!("no se pudo contactar con el servidor de API de Kubernetes: {e}")
            }
            (
                Error::Api {
                    verb,
                    code,
                    message,
                },
                Lang::Es,
            ) => {
                format!("el servidor de API rechazó «{verb}» sobre {RESOURCE} ({code}): {message}")
            }
            (Error::Timeout { name, want, after }, Lang::Es) => format!(
                "se agotó el tiempo ({}s) esperando que la sesión {name} llegue a «{}»",
                after.as_secs(),
                want.as_str()
            ),
            (Error::QrExpired { name }, Lang::Es) => format!(
                "los QR de la sesión {name} expiraron sin ser escaneados; \
                 vuelva a ejecutar: kubectl whatsapp qr {name}"
            ),
            (Error::Deleted { name, namespace }, Lang::Es) => {
                format!("la sesión {name} se borró del espacio de nombres {namespace}")
            }
            (Error::Qr(e), Lang::Es) => format!("no se puede dibujar el QR: {e}"),
            (Error::Forbidden { .. }, Lang::En) => {
                format!("{self} (ask for that permission in a Role, or use another -n/--context)")
            }
            (Error::QrExpired { name }, Lang::En) => {
                format!("{self}; run again: kubectl whatsapp qr {name}")
            }
            (_, Lang::En) => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;

    fn api(code: u16, message: &str, name: Option<&str>) -> kube::Error {
        let mut s = kube::core::Status::failure(message, "").with_code(code);
        if let Some(n) = name {
            s = s.with_details(StatusDetails {
                name: n.into(),
                group: "whatsapp.leadmaster.io".into(),
                kind: "whatsappsessions".into(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(s.boxed())
    }

    #[test]
    fn a_404_naming_the_session_is_an_unknown_session() {
        let e = Error::from_kube(
            api(404, "whatsappsessions \"x\" not found", Some("x")),
            "get",
            "ns",
            Some("x"),
        );
        assert_eq!(
            e.message(Lang::Es),
            "no existe la sesión x en el espacio de nombres ns"
        );
        assert_eq!(
            e.message(Lang::En),
            "session x does not exist in namespace ns"
        );
    }

    #[test]
    fn a_404_without_the_name_is_a_missing_crd() {
        let e = Error::from_kube(
            api(
                404,
                "the server could not find the requested resource",
                None,
            ),
            "get",
            "ns",
            Some("x"),
        );
        assert!(matches!(e, Error::CrdMissing), "{e:?}");
        let e = Error::from_kube(api(404, "not found", None), "list", "ns", None);
        assert!(matches!(e, Error::CrdMissing), "{e:?}");
    }

    #[test]
    fn a_403_names_rbac_the_verb_and_the_resource() {
        let e = Error::from_kube(
            api(403, "User \"u\" cannot patch resource", None),
            "patch",
            "prod",
            Some("x"),
        );
        let es = e.message(Lang::Es);
        assert!(es.starts_with("RBAC no permite «patch» sobre whatsappsessions.whatsapp.leadmaster.io en el espacio de nombres prod"), "{es}");
        assert!(es.contains("User \"u\" cannot patch resource"), "{es}");
        let en = e.message(Lang::En);
        assert!(
            en.starts_with(
                "RBAC forbids patch on whatsappsessions.whatsapp.leadmaster.io in namespace prod"
            ),
            "{en}"
        );
    }
}
