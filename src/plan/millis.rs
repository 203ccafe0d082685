//! Durations written as whole milliseconds in plans' JSON (the dry run, the
//! journal's copy of each step).

use std::time::Duration;

pub fn serialize<S: serde::Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
}

/// An optional duration, `null` when absent.
pub mod optional {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => super::serialize(duration, s),
            None => s.serialize_none(),
        }
    }
}
