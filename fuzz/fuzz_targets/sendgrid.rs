//! SendGrid: `<X-Twilio-Email-Event-Webhook-Signature>\n<X-Twilio-Email-Event-Webhook-Timestamp>\n<body>`.
//!
//! Covers base64 and DER ECDSA signature parsing, the timestamp, and verification; the signature
//! value is also tried as a verification key and as a private key (operator input).

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::sendgrid;

static KEYS: LazyLock<Vec<sendgrid::PublicKey>> = LazyLock::new(|| {
    vec![
        sendgrid::PublicKey::from_base64_der(
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVHlIQo6YtPu2qUZx81PJKHlrIGk4+okM3T24gNzEyxCuf2x9OtLYrjrZiFKnVlN5NzrUJtnN2OwHh2M3krf7hw==",
        )
        .expect("valid key"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let ([signature, timestamp], body) = common::split::<2>(data);
    let headers = sendgrid::Headers {
        signature,
        timestamp,
    };
    for now in common::CLOCKS {
        let _ = sendgrid::verify(&KEYS, headers, body, now, None);
        let _ = sendgrid::verify(&KEYS, headers, body, now, Some(300));
    }
    if let Some(value) = signature {
        let _ = sendgrid::PublicKey::from_base64_der(value);
        let _ = sendgrid::sign(value, timestamp.unwrap_or("0"), body);
    }
});
