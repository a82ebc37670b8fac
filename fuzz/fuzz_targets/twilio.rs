//! Twilio: `<URL>\n<X-Twilio-Signature>\n<X-Twilio-Webhooks-Signature-Settings>\n<Content-Type>\n<body>`.
//!
//! Covers URL parsing (ports, userinfo, IPv6, query and `bodySHA256`), the settings header, form
//! decoding and sorting, and the body-hash check.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::twilio;

fuzz_target!(|data: &[u8]| {
    let ([url, signature, settings, content_type], body) = common::split::<4>(data);
    let url = url.unwrap_or("https://example.com/twilio/sms?foo=1&bar=2");
    let headers = twilio::Headers {
        signature,
        signature_settings: settings,
        content_type,
    };
    let _ = twilio::verify(&["12345", "shared-key-secret-xyz"], url, headers, body);
    let _ = twilio::parse_signature_settings(settings);
    // The signers must not panic on the same inputs either.
    let _ = twilio::sign_form(b"12345", url, body, twilio::Algorithm::HmacSha1);
    let _ = twilio::url_with_body_hash(url, body);
});
