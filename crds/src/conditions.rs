use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types of a session. `Ready` and `Progressing` belong to the operator,
/// `Authenticated` and `Receiving` to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    Authenticated,
    Progressing,
    /// The linked page's message listeners are attached: incoming messages reach the agent.
    Receiving,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Authenticated => "Authenticated",
            Self::Progressing => "Progressing",
            Self::Receiving => "Receiving",
        }
    }
}

/// A condition's `status`. `Unknown` is for a writer that cannot tell (e.g. no agent observes
/// the page, or a saved login is still being restored); a `bool` converts to True/False.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// Sets a condition in `conditions` (from the previous status), keeping `lastTransitionTime`
/// unless `status` changed, so rewriting the same facts never produces a different object and
/// status writes do not feed back into reconcile loops.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    status: impl Into<ConditionStatus>,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) {
    let status = status.into().as_str().to_string();
    let previous = conditions.iter().position(|c| c.type_ == kind.as_str());
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now,
    };
    let condition = Condition {
        type_: kind.as_str().to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            ConditionType::Ready,
            false,
            "PodPending",
            "waiting",
            Some(1),
            at(10),
        );
        set_condition(
            &mut conds,
            ConditionType::Ready,
            false,
            "PodPending",
            "still waiting",
            Some(2),
            at(20),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].message, "still waiting");
        assert_eq!(conds[0].observed_generation, Some(2));
        set_condition(
            &mut conds,
            ConditionType::Ready,
            true,
            "PodReady",
            "ok",
            Some(2),
            at(30),
        );
        assert_eq!(conds[0].last_transition_time, at(30));
        assert_eq!(conds[0].status, "True");
        set_condition(
            &mut conds,
            ConditionType::Ready,
            ConditionStatus::Unknown,
            "NoPod",
            "",
            Some(2),
            at(40),
        );
        assert_eq!(conds[0].status, "Unknown");
        assert_eq!(
            conds[0].last_transition_time,
            at(40),
            "Unknown is a status of its own"
        );
    }

    #[test]
    fn conditions_are_keyed_by_type() {
        let mut conds = Vec::new();
        set_condition(&mut conds, ConditionType::Ready, true, "A", "", None, at(1));
        set_condition(
            &mut conds,
            ConditionType::Progressing,
            false,
            "B",
            "",
            None,
            at(1),
        );
        set_condition(&mut conds, ConditionType::Ready, true, "A", "", None, at(2));
        assert_eq!(conds.len(), 2);
    }
}
