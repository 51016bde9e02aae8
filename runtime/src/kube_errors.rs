//! What a Kubernetes API error means for the caller: the API server away (retry, an
//! [`crate::outage::Outage`]) or a real problem (a 403, a 404, an unreadable object). Used by the
//! log policy and by the operator's retry policy alike.

/// Whether a kube-client error is the API server being away or overloaded (connection
/// refused or reset, a watch cut, 5xx, 429): the kind of failure a retry mends once it is
/// back. Anything else (403, 404, 422, an unreadable object) is not an outage.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// What a kube-runtime watcher's error means for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFailure {
    /// 410 Gone ("too old resource version", e.g. after an API server or etcd restart): the
    /// watcher lists again by itself. Debug.
    Relist,
    /// The API server away ([`is_transient`]): a [`crate::outage::Outage`].
    Outage,
    /// Anything else (a 403: RBAC): a WARN.
    Other,
}

pub fn classify_watch(e: &kube::runtime::watcher::Error) -> WatchFailure {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) if is_transient(e) => {
            WatchFailure::Outage
        }
        W::WatchError(s) if s.code == 410 => WatchFailure::Relist,
        W::WatchError(s) if s.code >= 500 || s.code == 429 => WatchFailure::Outage,
        _ => WatchFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_api_server_being_away() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert!(is_transient(&status(503)));
        assert!(is_transient(&status(500)));
        assert!(is_transient(&status(429)));
        assert!(!is_transient(&status(403)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&status(422)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_transient(&kube::Error::Service(Box::new(refused))));
        use kube::runtime::watcher::Error as W;
        let gone = W::WatchError(Box::new(kube::core::Status {
            code: 410,
            ..Default::default()
        }));
        assert_eq!(classify_watch(&gone), WatchFailure::Relist);
        assert_eq!(
            classify_watch(&W::WatchStartFailed(status(503))),
            WatchFailure::Outage
        );
        assert_eq!(
            classify_watch(&W::InitialListFailed(status(403))),
            WatchFailure::Other
        );
    }
}
