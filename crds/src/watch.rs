//! The one way the operator and the hub watch WhatsAppSessions: the raw objects, each converted
//! to a [`WhatsAppSession`] on its own, so an object the Rust types cannot read is reported and
//! left out while every other one is served.
//!
//! Why raw: a watch of the typed objects breaks on one unreadable object. kube-client reads a
//! list as one `ObjectList<WhatsAppSession>`, so the first (and every later) list fails as a
//! whole and the view never fills; a watch event that fails to parse is an error the watcher
//! logs and skips, so the object silently stays out (or, once changed, stays stale). The API
//! server accepts more than the types read (a `date-time` up to 9999-12-31 against jiff's
//! 9999-12-30; objects stored under an older CRD), and a CRD's admission rules cannot cover
//! objects stored before them, so this is where such an object becomes visible: a WARN line
//! naming it and the field, [`Unparsables::count`] for the binaries' gauges
//! (`wa_operator_unparsable_sessions`, `wa_hub_unparsable_sessions`), and a caller's hook (the
//! operator's Warning Event `Unparsable`).
//!
//! An unreadable object is absent from the typed stream: skipped in a (re)list, and a
//! `Delete` when an object that was readable changes into one that is not, so stores built on
//! the stream drop it. Nothing else is done to it (its children stay as they are): reading it
//! wrong would be worse than not acting on it.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{WhatsAppSession, WhatsAppSessionSpec};

/// Fields whose values are secrets (a QR string or a pairing code links a phone): a parse error
/// there is reported by its path only. The CRD types them as strings, so serde's message could
/// only quote a value of another type, but the rule does not depend on that.
const SECRET_PATHS: [&str; 2] = ["status.qr", "status.pairingCode"];

/// The resource, for an `Api<DynamicObject>` of WhatsAppSessions.
pub fn api_resource() -> ApiResource {
    ApiResource::erase::<WhatsAppSession>(&())
}

/// The raw WhatsAppSessions of `namespace` (all namespaces when `None`).
pub fn api(client: Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// A WhatsAppSession the Rust types cannot read.
#[derive(Clone, Debug, PartialEq)]
pub struct Unparsable {
    pub namespace: String,
    pub name: String,
    /// Where reading stopped, e.g. `spec.qrRequestedAt` (`spec` or `status` when the part
    /// itself is wrong).
    pub path: String,
    /// What was wrong there (serde's message; withheld for [`SECRET_PATHS`]).
    pub error: String,
    /// The object, for an Event about it.
    pub reference: ObjectReference,
    resource_version: Option<String>,
}

impl fmt::Display for Unparsable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.error)
    }
}

/// `obj` as a [`WhatsAppSession`], or what stops it from being one.
pub fn parse(obj: DynamicObject) -> Result<WhatsAppSession, Box<Unparsable>> {
    let DynamicObject { metadata, data, .. } = obj;
    let (spec, status) = match data {
        Value::Object(mut fields) => (fields.remove("spec"), fields.remove("status")),
        _ => (None, None),
    };
    let spec = part::<WhatsAppSessionSpec>("spec", spec.unwrap_or(Value::Null));
    let status = match status {
        None | Some(Value::Null) => Ok(None),
        Some(v) => part("status", v).map(Some),
    };
    match (spec, status) {
        (Ok(spec), Ok(status)) => Ok(WhatsAppSession {
            metadata,
            spec,
            status,
        }),
        (Err((path, error)), _) | (_, Err((path, error))) => {
            Err(Box::new(unparsable(metadata, path, error)))
        }
    }
}

/// One part (`spec`, `status`) of the object, or the path and message of what failed in it.
fn part<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            name.to_string()
        } else {
            format!("{name}.{inner}")
        };
        let secret = SECRET_PATHS
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}.")));
        let error = if secret {
            "not readable (the value is a secret and is not shown)".to_string()
        } else {
            e.into_inner().to_string()
        };
        (path, error)
    })
}

fn unparsable(metadata: ObjectMeta, path: String, error: String) -> Unparsable {
    let stub = stub(metadata);
    Unparsable {
        namespace: stub.metadata.namespace.clone().unwrap_or_default(),
        name: stub.metadata.name.clone().unwrap_or_default(),
        path,
        error,
        reference: stub.object_ref(&()),
        resource_version: stub.metadata.resource_version.clone(),
    }
}

/// A session with only `metadata`: what a store needs to drop it.
fn stub(metadata: ObjectMeta) -> WhatsAppSession {
    WhatsAppSession {
        metadata,
        spec: WhatsAppSessionSpec::default(),
        status: None,
    }
}

type Key = (String, String);
type Hook = Arc<dyn Fn(&Unparsable) + Send + Sync>;

/// The unreadable objects of one watch, by namespace and name (with the resourceVersion
/// reported, so each version is reported once), and the hook told of each new one.
#[derive(Clone)]
pub struct Unparsables {
    state: Arc<Mutex<State>>,
    hook: Option<Hook>,
}

#[derive(Default)]
struct State {
    current: BTreeMap<Key, Option<String>>,
    /// While a (re)list runs: the unreadable objects it found so far. It replaces `current`
    /// when the list is complete, so an object deleted while the watch was down is forgotten.
    relisting: Option<BTreeMap<Key, Option<String>>>,
}

impl Default for Unparsables {
    fn default() -> Self {
        Self::new()
    }
}

impl Unparsables {
    /// Tracks without a hook (reports are the log line and [`Unparsables::count`]).
    pub fn new() -> Self {
        Unparsables {
            state: Arc::new(Mutex::new(State::default())),
            hook: None,
        }
    }

    /// Also calls `hook` for each newly unreadable object (or new version of one).
    pub fn with_hook(hook: impl Fn(&Unparsable) + Send + Sync + 'static) -> Self {
        Unparsables {
            hook: Some(Arc::new(hook)),
            ..Self::new()
        }
    }

    /// How many objects of the watch cannot be read now.
    pub fn count(&self) -> usize {
        self.lock().current.len()
    }

    /// Namespace and name of each object that cannot be read now.
    pub fn names(&self) -> Vec<(String, String)> {
        self.lock().current.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One raw watch event as the typed event the stores and triggers get, if any.
    pub fn convert(
        &self,
        event: watcher::Event<DynamicObject>,
    ) -> Option<watcher::Event<WhatsAppSession>> {
        match event {
            watcher::Event::Init => {
                self.lock().relisting = Some(BTreeMap::new());
                Some(watcher::Event::Init)
            }
            watcher::Event::InitApply(obj) => match parse(obj) {
                Ok(s) => Some(watcher::Event::InitApply(s)),
                Err(u) => {
                    self.found(&u, true);
                    None
                }
            },
            watcher::Event::InitDone => {
                let mut state = self.lock();
                let listed = state.relisting.take().unwrap_or_default();
                for (ns, name) in state.current.keys() {
                    if !listed.contains_key(&(ns.clone(), name.clone())) {
                        tracing::info!(
                            namespace = %ns,
                            name = %name,
                            "the unreadable WhatsAppSession is gone or readable again"
                        );
                    }
                }
                state.current = listed;
                Some(watcher::Event::InitDone)
            }
            watcher::Event::Apply(obj) => {
                let meta = obj.metadata.clone();
                match parse(obj) {
                    Ok(s) => {
                        self.forget(&meta, "readable again");
                        Some(watcher::Event::Apply(s))
                    }
                    Err(u) => {
                        self.found(&u, false);
                        // It may have been readable before: the stores must drop that version.
                        Some(watcher::Event::Delete(stub(meta)))
                    }
                }
            }
            watcher::Event::Delete(obj) => {
                self.forget(&obj.metadata, "deleted");
                Some(watcher::Event::Delete(stub(obj.metadata)))
            }
        }
    }

    /// Records `u` (in the relist under way when `listing`); reports it unless this version was
    /// reported already.
    fn found(&self, u: &Unparsable, listing: bool) {
        let key = (u.namespace.clone(), u.name.clone());
        let reported = {
            let mut state = self.lock();
            let known = state.current.get(&key) == Some(&u.resource_version);
            match state.relisting.as_mut() {
                Some(list) if listing => list.insert(key, u.resource_version.clone()),
                _ => state.current.insert(key, u.resource_version.clone()),
            };
            known
        };
        if reported {
            return;
        }
        // What an operator needs to find and fix it; never the object's values (`error` is
        // serde's message about the one field, withheld for secret fields).
        tracing::warn!(
            namespace = %u.namespace,
            name = %u.name,
            path = %u.path,
            error = %u.error,
            "a WhatsAppSession cannot be read and is left out until it is fixed (kubectl edit it, or delete it)"
        );
        if let Some(hook) = &self.hook {
            hook(u);
        }
    }

    fn forget(&self, meta: &ObjectMeta, why: &str) {
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let mut state = self.lock();
        let was = state.current.remove(&key).is_some();
        if let Some(list) = state.relisting.as_mut() {
            list.remove(&key);
        }
        if was {
            tracing::info!(namespace = %key.0, name = %key.1, "the unreadable WhatsAppSession is {why}");
        }
    }
}

/// `raw` (a watcher of [`api`]) as a watch of typed sessions, unreadable objects left out and
/// tracked in `unparsables`. Back-off and reflectors go on the result as on any watcher.
pub fn typed<S>(
    raw: S,
    unparsables: Unparsables,
) -> impl Stream<Item = Result<watcher::Event<WhatsAppSession>, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send,
{
    raw.filter_map(move |event| {
        let out = match event {
            Ok(e) => unparsables.convert(e).map(Ok),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

/// A watch of the sessions of `namespace` (all when `None`) with `config`, as [`typed`].
pub fn watch(
    client: Client,
    namespace: Option<&str>,
    config: watcher::Config,
    unparsables: Unparsables,
) -> impl Stream<Item = Result<watcher::Event<WhatsAppSession>, watcher::Error>> + Send + use<> {
    typed(watcher(api(client, namespace), config), unparsables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn raw(name: &str, rv: &str, spec: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "whatsapp.leadmaster.io/v1alpha1",
            "kind": "WhatsAppSession",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": rv},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn good(name: &str, rv: &str) -> DynamicObject {
        raw(name, rv, json!({"tenant": "acme"}), Value::Null)
    }

    fn bad(name: &str, rv: &str) -> DynamicObject {
        raw(
            name,
            rv,
            json!({"tenant": "acme", "qrRequestedAt": "9999-12-31T23:59:59Z"}),
            Value::Null,
        )
    }

    #[test]
    fn a_good_object_reads_as_the_typed_one() {
        let s = parse(raw(
            "a",
            "1",
            json!({"tenant": "acme", "qrRequestedAt": "2026-01-02T03:04:05Z"}),
            json!({"status": "connected"}),
        ))
        .unwrap();
        assert_eq!(s.spec.tenant, "acme");
        assert_eq!(s.metadata.name.as_deref(), Some("a"));
        assert_eq!(
            s.status.and_then(|st| st.status),
            Some(crate::SessionState::Connected)
        );
    }

    #[test]
    fn an_unreadable_object_names_itself_and_the_field() {
        let u = parse(bad("b", "7")).unwrap_err();
        assert_eq!((u.namespace.as_str(), u.name.as_str()), ("ns", "b"));
        assert_eq!(u.path, "spec.qrRequestedAt");
        assert!(!u.error.is_empty());
        assert_eq!(u.reference.kind.as_deref(), Some("WhatsAppSession"));
        assert_eq!(u.reference.uid.as_deref(), Some("uid-b"));
        assert_eq!(u.to_string(), format!("spec.qrRequestedAt: {}", u.error));

        let u = parse(raw("c", "1", json!({"displayName": "x"}), Value::Null)).unwrap_err();
        assert_eq!(u.path, "spec", "{u}");
        assert!(u.error.contains("tenant"), "{u}");
        let u = parse(raw(
            "d",
            "1",
            json!({"tenant": "acme"}),
            json!({"status": "dancing"}),
        ))
        .unwrap_err();
        assert_eq!(u.path, "status.status", "{u}");
    }

    #[test]
    fn a_secret_field_is_reported_by_its_path_only() {
        let u = parse(raw(
            "e",
            "1",
            json!({"tenant": "acme"}),
            json!({"qr": {"ref": "2@SECRETVALUE"}}),
        ))
        .unwrap_err();
        assert_eq!(u.path, "status.qr");
        assert!(!u.error.contains("SECRET"), "{u}");
        assert!(u.error.contains("not shown"), "{u}");
    }

    fn name_of(e: &watcher::Event<WhatsAppSession>) -> (&'static str, String) {
        let (kind, s) = match e {
            watcher::Event::Apply(s) => ("apply", s),
            watcher::Event::InitApply(s) => ("init-apply", s),
            watcher::Event::Delete(s) => ("delete", s),
            watcher::Event::Init => return ("init", String::new()),
            watcher::Event::InitDone => return ("init-done", String::new()),
        };
        (kind, s.metadata.name.clone().unwrap_or_default())
    }

    #[test]
    fn the_typed_watch_leaves_out_and_counts_what_it_cannot_read() {
        let hooked = Arc::new(AtomicUsize::new(0));
        let h = hooked.clone();
        let u = Unparsables::with_hook(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let out = |e| u.convert(e).map(|e| name_of(&e));

        // A list: the bad object is left out; the good ones are there.
        assert_eq!(out(watcher::Event::Init), Some(("init", String::new())));
        assert_eq!(
            out(watcher::Event::InitApply(good("a", "1"))),
            Some(("init-apply", "a".into()))
        );
        assert_eq!(out(watcher::Event::InitApply(bad("b", "2"))), None);
        assert_eq!(
            out(watcher::Event::InitApply(good("c", "3"))),
            Some(("init-apply", "c".into()))
        );
        assert_eq!(u.count(), 0, "counted once the list is complete");
        out(watcher::Event::InitDone);
        assert_eq!(u.names(), vec![("ns".to_string(), "b".to_string())]);
        assert_eq!(hooked.load(Ordering::SeqCst), 1);

        // A readable object turning unreadable is a Delete for the stores; reported once per
        // version.
        assert_eq!(
            out(watcher::Event::Apply(bad("a", "4"))),
            Some(("delete", "a".into()))
        );
        assert_eq!(u.count(), 2);
        assert_eq!(hooked.load(Ordering::SeqCst), 2);

        // A relist finds the same versions: no new report; fixed and gone ones are forgotten.
        out(watcher::Event::Init);
        out(watcher::Event::InitApply(bad("a", "4")));
        out(watcher::Event::InitApply(good("c", "3")));
        assert_eq!(u.count(), 2, "the count holds during a relist");
        out(watcher::Event::InitDone);
        assert_eq!(u.names(), vec![("ns".to_string(), "a".to_string())]);
        assert_eq!(hooked.load(Ordering::SeqCst), 2);

        // Fixed: typed again and no longer counted; a deleted one is a Delete.
        assert_eq!(
            out(watcher::Event::Apply(good("a", "5"))),
            Some(("apply", "a".into()))
        );
        assert_eq!(u.count(), 0);
        out(watcher::Event::Apply(bad("d", "6")));
        assert_eq!(u.count(), 1);
        assert_eq!(
            out(watcher::Event::Delete(bad("d", "7"))),
            Some(("delete", "d".into()))
        );
        assert_eq!(u.count(), 0);
        assert_eq!(hooked.load(Ordering::SeqCst), 3);
    }
}
