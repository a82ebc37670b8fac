//! Standard Webhooks (`v1` HMAC and `v1a` Ed25519) header parsing and verification:
//! `<webhook-id>\n<webhook-timestamp>\n<webhook-signature>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::standard_webhooks::{
    self as sw, AsymmetricSigningKey, Headers, PublicKey, SigningKey,
};

static KEYS: LazyLock<Vec<SigningKey>> = LazyLock::new(|| {
    vec![
        SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret"),
        SigningKey::from_bytes(b"fuzz".to_vec()),
    ]
});
static PUBLIC: LazyLock<Vec<PublicKey>> =
    LazyLock::new(|| vec![AsymmetricSigningKey::from_seed(&[7; 32]).public_key()]);

fuzz_target!(|data: &[u8]| {
    let ([id, timestamp, signature], body) = common::split::<3>(data);
    let headers = Headers {
        id,
        timestamp,
        signature,
    };
    for now in common::CLOCKS {
        let _ = sw::verify(&KEYS, headers, body, now, sw::DEFAULT_TOLERANCE_SECS);
        let _ = sw::verify(&KEYS, headers, body, now, i64::MAX);
        let _ = sw::verify_asymmetric(&PUBLIC, headers, body, now, sw::DEFAULT_TOLERANCE_SECS);
    }
    // Secret and public-key parsing take operator input.
    if let Some(value) = id {
        let _ = SigningKey::from_secret(value);
        let _ = AsymmetricSigningKey::from_secret(value);
        let _ = PublicKey::from_secret(value);
    }
});
