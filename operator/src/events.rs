//! Kubernetes Events on sessions (`kubectl describe wa NAME`). Publishing is best effort: a
//! failed Event is logged, never a reconcile error.
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: crds::managers::OPERATOR.into(),
            instance: Some(instance.to_string()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn normal(&self, obj: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(obj, EventType::Normal, reason, action, note)
            .await;
    }

    pub async fn warning(&self, obj: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(obj, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        obj: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        match self.recorder.publish(&event, obj).await {
            Ok(()) => {}
            // The namespace is being deleted: no new Events can go there, and nobody will read them.
            Err(error) if crate::error::kube_gone(&error) => {
                tracing::debug!(%error, reason, object = ?obj.name, "event not published: namespace going")
            }
            Err(error) => {
                tracing::warn!(%error, reason, object = ?obj.name, "could not publish event")
            }
        }
    }
}
