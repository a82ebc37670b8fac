//! Pure webhook signing and verification.
//!
//! Every scheme here works on raw bytes and an explicit clock value, never on I/O, so each one can
//! be tested against the providers' official SDK vectors and fuzzed. Comparisons are constant-time
//! over the decoded MAC with an explicit length check, and errors never carry the expected value.
//!
//! | module | scheme |
//! |---|---|
//! | [`standard_webhooks`] | Standard Webhooks / Svix: `v1` HMAC-SHA256 and `v1a` Ed25519 |
//! | [`github`] | `X-Hub-Signature-256` (and legacy `X-Hub-Signature`) |
//! | [`stripe`] | `Stripe-Signature` |
//! | [`slack`] | `X-Slack-Signature` + `X-Slack-Request-Timestamp` |
//! | [`shopify`] | `X-Shopify-Hmac-Sha256` |
//! | [`twilio`] | `X-Twilio-Signature` (Auth Token and SharedKey) |
//! | [`sendgrid`] | signed Event Webhook (ECDSA P-256) |
//! | [`discord`] | interactions (Ed25519) |
//! | [`hmac`] | configurable HMAC for everything else |
//!
//! Header names are exported as lowercase constants; multi-header schemes have a `Headers` struct
//! with a `from_lookup` constructor taking any [`HeaderLookup`].

pub mod common;
pub mod discord;
pub mod error;
pub mod github;
pub mod hmac;
pub mod sendgrid;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod twilio;

pub use common::{HeaderLookup, HmacAlgorithm, header_list};
pub use error::SignatureError;
