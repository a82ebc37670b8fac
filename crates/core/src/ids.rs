//! Identifiers. Events and deliveries get UUIDv7 ids: time-ordered, so primary-key inserts stay
//! append-mostly and ids sort by arrival.

use uuid::Uuid;

/// A fresh event id (UUIDv7, hyphenated).
pub fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

/// A fresh delivery id. It doubles as the `webhook-id` sent to the receiver, so it is prefixed
/// `msg_` (Standard Webhooks convention) and never contains `.`.
pub fn new_delivery_id() -> String {
    format!("msg_{}", Uuid::now_v7().simple())
}

/// Whether `id` is acceptable as a user-chosen identifier (sources, destinations, routes):
/// 1 to 64 characters of ASCII letters, digits, `-` and `_`, so it is safe in URLs and logs.
pub fn is_valid_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = new_delivery_id();
        let b = new_delivery_id();
        assert_ne!(a, b);
        assert!(a.starts_with("msg_") && !a.contains('.'));
        assert!(new_event_id() < new_event_id() || cfg!(miri));
    }

    #[test]
    fn resource_ids() {
        assert!(is_valid_resource_id("orders_v2-eu"));
        assert!(!is_valid_resource_id(""));
        assert!(!is_valid_resource_id("a/b"));
        assert!(!is_valid_resource_id(&"x".repeat(65)));
    }
}
