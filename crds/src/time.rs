//! The one clock of the project's CR writers (operator, agent, hub).
//!
//! Kubernetes keeps `metav1.Time` to the second (k8s-openapi serializes `%Y-%m-%dT%H:%M:%SZ`),
//! so a time kept in memory with its fraction would not compare equal to the same time read
//! back from the CR; every writer therefore takes its "now" from here, already whole.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Now, truncated to the second.
pub fn now() -> Time {
    Time(whole_seconds(Timestamp::now()))
}

/// `t` without its fraction of a second (what a round trip through the CR leaves of it).
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_survives_a_round_trip_through_json() {
        let t = now();
        assert_eq!(t.0.subsec_nanosecond(), 0);
        let back: Time = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn whole_seconds_drops_the_fraction_only() {
        let t = Timestamp::new(1_700_000_000, 999_999_999).unwrap();
        assert_eq!(
            whole_seconds(t),
            Timestamp::from_second(1_700_000_000).unwrap()
        );
        let before_epoch = Timestamp::new(-5, -500_000_000).unwrap();
        assert_eq!(whole_seconds(before_epoch).as_second(), -5);
    }
}
