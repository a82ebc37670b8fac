//! Shopify: `<X-Shopify-Hmac-Sha256>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::shopify;

fuzz_target!(|data: &[u8]| {
    let ([signature], body) = common::split::<1>(data);
    let _ = shopify::verify(&["hush", "rotated"], signature, body);
});
