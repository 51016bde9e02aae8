//! Which children need a server-side apply. Applying all five children (ServiceAccount, Role,
//! RoleBinding, PVC, StatefulSet) and GETting the pod at every reconcile costs ~7 requests each
//! time any of them changes, and a session starting up changes them a dozen times.
//!
//! So the operator remembers, per child, what it last applied (a hash of the body) and how the
//! apply left the child (its [`fingerprint`]); the watch caches show the child as it is. An
//! apply is skipped when both match: nothing was changed on our side, and nobody changed the
//! child since (a hand edit, a deletion, a re-creation all change the fingerprint, so they are
//! still taken back at once). Forgetting is always safe: an unknown child is applied. A memory
//! is trusted for [`TRUSTED_FOR`] at most, so whatever a watch may have missed is still applied
//! again at the periodic resync.
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// How a child's fingerprint is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Every write changes what we compare (resourceVersion): objects without a status
    /// (ServiceAccount, Role, RoleBinding) and the PVC, whose few status writes (binding) cost
    /// one no-op apply each.
    EveryWrite,
    /// Spec writes (generation) and metadata we set, but not status writes: the StatefulSet,
    /// whose status the StatefulSet controller rewrites at every pod change.
    SpecAndMetadata,
}

/// A stable 64-bit FNV-1a hasher: fingerprints must not depend on `RandomState`.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn fnv() -> Fnv {
    Fnv(0xcbf2_9ce4_8422_2325)
}

/// The child as someone other than its status writer last left it.
pub fn fingerprint(meta: &ObjectMeta, tracked: Tracked) -> u64 {
    let mut h = fnv();
    meta.uid.hash(&mut h);
    match tracked {
        Tracked::EveryWrite => meta.resource_version.hash(&mut h),
        Tracked::SpecAndMetadata => {
            meta.generation.hash(&mut h);
            meta.labels.hash(&mut h);
            meta.annotations.hash(&mut h);
            meta.finalizers.hash(&mut h);
            meta.deletion_timestamp.is_some().hash(&mut h);
            for o in meta.owner_references.iter().flatten() {
                (&o.uid, &o.controller, &o.block_owner_deletion).hash(&mut h);
            }
        }
    }
    h.finish()
}

/// What we ask for: the hash of the apply body.
pub fn body_hash<K: Serialize>(body: &K) -> Result<u64, serde_json::Error> {
    let mut h = fnv();
    h.write(&serde_json::to_vec(body)?);
    Ok(h.finish())
}

/// How long an apply is trusted: the controller's periodic resync (5 minutes) then applies
/// every child again.
pub const TRUSTED_FOR: Duration = Duration::from_secs(290);

/// What was last applied to one child, how the apply left it, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedChild {
    /// [`body_hash`] of the apply body.
    pub body_hash: u64,
    /// The child's [`fingerprint`] as the apply returned it.
    pub fingerprint_after: u64,
    pub applied_at: Instant,
}

/// Whether the child must be applied: unless we applied this very body less than
/// [`TRUSTED_FOR`] ago and the child, as the cache shows it, is still as that apply left it.
pub fn needs_apply(
    last: Option<AppliedChild>,
    body: u64,
    cached: Option<u64>,
    now: Instant,
) -> bool {
    !matches!((last, cached), (Some(a), Some(seen))
        if a.body_hash == body
            && a.fingerprint_after == seen
            && now.saturating_duration_since(a.applied_at) < TRUSTED_FOR)
}

/// (kind, namespace, name) of a child.
pub type ChildKey = (String, String, String);

/// The operator's memory of its applies.
#[derive(Default)]
pub struct Ledger(Mutex<HashMap<ChildKey, AppliedChild>>);

impl Ledger {
    pub fn get(&self, key: &ChildKey) -> Option<AppliedChild> {
        self.0.lock().ok()?.get(key).copied()
    }

    pub fn record(&self, key: ChildKey, applied: AppliedChild) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, applied);
        }
    }

    /// Forgets a session's children (it is being deleted).
    pub fn forget(&self, namespace: &str, names: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|(_, ns, n), _| !(ns == namespace && names.contains(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(rv: &str, generation: i64) -> ObjectMeta {
        ObjectMeta {
            uid: Some("u1".into()),
            resource_version: Some(rv.into()),
            generation: Some(generation),
            labels: Some(BTreeMap::from([("a".into(), "1".into())])),
            ..Default::default()
        }
    }

    #[test]
    fn status_writes_change_only_the_every_write_fingerprint() {
        let (before, after_status) = (meta("10", 1), meta("11", 1));
        assert_eq!(
            fingerprint(&before, Tracked::SpecAndMetadata),
            fingerprint(&after_status, Tracked::SpecAndMetadata)
        );
        assert_ne!(
            fingerprint(&before, Tracked::EveryWrite),
            fingerprint(&after_status, Tracked::EveryWrite)
        );
    }

    #[test]
    fn spec_and_label_edits_and_recreation_change_the_fingerprint() {
        let base = fingerprint(&meta("10", 1), Tracked::SpecAndMetadata);
        assert_ne!(base, fingerprint(&meta("12", 2), Tracked::SpecAndMetadata));
        let mut relabelled = meta("12", 1);
        relabelled.labels = None;
        assert_ne!(base, fingerprint(&relabelled, Tracked::SpecAndMetadata));
        let mut recreated = meta("10", 1);
        recreated.uid = Some("u2".into());
        assert_ne!(base, fingerprint(&recreated, Tracked::SpecAndMetadata));
        assert_ne!(
            fingerprint(&meta("10", 1), Tracked::EveryWrite),
            fingerprint(&recreated, Tracked::EveryWrite)
        );
    }

    #[test]
    fn apply_is_skipped_only_for_the_same_body_on_an_untouched_child() {
        let t = Instant::now();
        let a = AppliedChild {
            body_hash: 7,
            fingerprint_after: 70,
            applied_at: t,
        };
        assert!(!needs_apply(Some(a), 7, Some(70), t));
        assert!(needs_apply(Some(a), 8, Some(70), t), "our body changed");
        assert!(
            needs_apply(Some(a), 7, Some(71), t),
            "someone changed the child"
        );
        assert!(needs_apply(Some(a), 7, None, t), "the child is gone");
        assert!(
            needs_apply(None, 7, Some(70), t),
            "never applied by this process"
        );
        assert!(
            needs_apply(Some(a), 7, Some(70), t + TRUSTED_FOR),
            "applied too long ago: the resync applies again"
        );
    }

    #[test]
    fn body_hash_is_stable_and_content_sensitive() {
        let h = body_hash(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(h, body_hash(&serde_json::json!({"a": 1})).unwrap());
        assert_ne!(h, body_hash(&serde_json::json!({"a": 2})).unwrap());
    }

    #[test]
    fn forget_drops_only_that_sessions_children() {
        let l = Ledger::default();
        let a = AppliedChild {
            body_hash: 1,
            fingerprint_after: 1,
            applied_at: Instant::now(),
        };
        l.record(("Role".into(), "ns".into(), "wa-s1".into()), a);
        l.record(("Role".into(), "ns".into(), "wa-s2".into()), a);
        l.record(("Role".into(), "other".into(), "wa-s1".into()), a);
        l.forget("ns", &["wa-s1".into()]);
        assert_eq!(l.get(&("Role".into(), "ns".into(), "wa-s1".into())), None);
        assert_eq!(
            l.get(&("Role".into(), "ns".into(), "wa-s2".into())),
            Some(a)
        );
        assert_eq!(
            l.get(&("Role".into(), "other".into(), "wa-s1".into())),
            Some(a)
        );
    }
}
