//! Human-readable durations in configuration (`"15s"`, `"5m"`, `"1h 30m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serde adapter for `Duration` fields written as human-readable strings.
pub mod human {
    use super::*;

    /// Deserializes `"15s"`-style strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(d)?;
        humantime::parse_duration(&raw).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{raw}`: {e} (try \"15s\", \"5m\")"
            ))
        })
    }

    /// Serializes as a human-readable string.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

/// Serde adapter for `Vec<Duration>` written as a list of human-readable strings.
pub mod human_list {
    use super::*;

    /// Deserializes `["5s", "5m"]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|item| {
                humantime::parse_duration(item).map_err(|e| {
                    serde::de::Error::custom(format!("invalid duration `{item}`: {e}"))
                })
            })
            .collect()
    }

    /// Serializes as a list of strings.
    pub fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            value
                .iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }
}

/// Serde adapter for `Option<Duration>` where `"off"` (or `"never"`) means `None`.
pub mod human_or_off {
    use super::*;

    /// Deserializes `"30d"` or `"off"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "off" | "never" => Ok(None),
            other => humantime::parse_duration(other)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("`{other}`: {e} (or \"off\")"))),
        }
    }

    /// Serializes as a human-readable string, or `"off"`.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::human::serialize(d, s),
            None => s.serialize_str("off"),
        }
    }
}

/// Serde adapter for `Option<Duration>` written as a human-readable string.
pub mod human_opt {
    use super::*;

    /// Deserializes an optional `"15s"`-style string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::human::deserialize(d).map(Some)
    }

    /// Serializes as a human-readable string (or nothing).
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::human::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
