//! Switchboard's domain: configuration tree, identifiers, retry schedules and delivery outcomes.
//!
//! Nothing here performs I/O; the store, the server and the binary build on these types so that
//! the rules (when to retry, what a config may say) are written once and unit-tested in isolation.

pub mod config;
pub mod correlation;
pub mod duration;
pub mod ids;
pub mod outbound;
pub mod outcome;
pub mod providers;
pub mod retry;
pub mod time;

pub use config::Config;
pub use outcome::{AttemptOutcome, DeliveryStatus};
pub use retry::RetryPolicy;
