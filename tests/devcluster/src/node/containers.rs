//! The state the agent keeps per container and how it is reported in `containerStatuses`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// How a container process ended.
#[derive(Clone, Debug)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

#[derive(Clone, Debug)]
pub enum State {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: Timestamp },
    Terminated(Terminated),
}

#[derive(Clone, Debug)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    /// Terminated for good: the restart policy will not start it again.
    pub finished: bool,
    /// It has run at least once (for the pod phase: Running vs Pending).
    pub ever_ran: bool,
}

impl ContainerState {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerState {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: None,
            state: State::Waiting { reason: "ContainerCreating".into(), message: None },
            last: None,
            restart_count: 0,
            ready: false,
            started: false,
            finished: false,
            ever_ran: false,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    pub fn exit_code(&self) -> Option<i32> {
        match &self.state {
            State::Terminated(t) => Some(t.exit_code),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state_json(&self.state),
            "lastState": self.last.as_ref().map_or(json!({}), terminated_json),
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "terminated": {
            "exitCode": t.exit_code,
            "reason": t.reason,
            "finishedAt": Time(t.finished_at),
        }
    });
    let inner = &mut v["terminated"];
    if let Some(s) = t.signal {
        inner["signal"] = json!(s);
    }
    if let Some(m) = &t.message {
        inner["message"] = json!(m);
    }
    if let Some(s) = t.started_at {
        inner["startedAt"] = json!(Time(s));
    }
    if let Some(id) = &t.container_id {
        inner["containerID"] = json!(id);
    }
    v
}

fn state_json(s: &State) -> Value {
    match s {
        State::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({ "waiting": w })
        }
        State::Running { started_at } => json!({ "running": { "startedAt": Time(*started_at) } }),
        State::Terminated(t) => terminated_json(t),
    }
}
