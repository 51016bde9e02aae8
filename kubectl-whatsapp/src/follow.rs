//! Following one session as it changes: a watch on `metadata.name=NAME` (RBAC: list and watch;
//! with `resourceNames` too), which is how `qr` redraws the moment the agent publishes a new QR
//! and how `wait` returns the moment the state is reached.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::Api;
use kube::runtime::watcher::{self, Event};

use crds::WhatsAppSession;

use crate::error::Error;

/// After a transient failure (connection lost, API server restarting) the watch starts again
/// after this pause rather than at once, which would spin.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub struct Follow {
    stream: BoxStream<'static, watcher::Result<Event<WhatsAppSession>>>,
    name: String,
    namespace: String,
    /// Whether the current (re)list has shown the session.
    listed: bool,
}

impl Follow {
    pub fn new(api: Api<WhatsAppSession>, name: &str, namespace: &str) -> Self {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        Self {
            stream: watcher::watcher(api, config).boxed(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            listed: false,
        }
    }

    /// The next version of the session (the current one first).
    pub async fn next(&mut self) -> Result<WhatsAppSession, Error> {
        loop {
            let event = self
                .stream
                .next()
                .await
                .ok_or_else(|| Error::Unreachable("the watch ended".into()))?;
            match event {
                Ok(Event::Apply(s) | Event::InitApply(s)) => {
                    self.listed = true;
                    return Ok(s);
                }
                Ok(Event::Init) => self.listed = false,
                Ok(Event::InitDone) if !self.listed => return Err(self.deleted()),
                Ok(Event::InitDone) => {}
                Ok(Event::Delete(_)) => return Err(self.deleted()),
                Err(e) => self.failed(e).await?,
            }
        }
    }

    fn deleted(&self) -> Error {
        Error::Deleted {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// A refusal (RBAC, no CRD) ends the command; anything else is retried.
    async fn failed(&self, e: watcher::Error) -> Result<(), Error> {
        let (verb, cause) = match e {
            watcher::Error::InitialListFailed(k) => ("list", Some(k)),
            watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => {
                ("watch", Some(k))
            }
            watcher::Error::WatchError(s) => ("watch", Some(kube::Error::Api(s))),
            watcher::Error::NoResourceVersion => ("watch", None),
        };
        if let Some(k) = cause {
            let e = Error::from_kube(k, verb, &self.namespace, None);
            if matches!(e, Error::Forbidden { .. } | Error::CrdMissing) {
                return Err(e);
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
        Ok(())
    }
}
