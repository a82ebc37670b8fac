//! `Stripe-Signature` parsing and verification: `<header>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::stripe;

fuzz_target!(|data: &[u8]| {
    let ([header], body) = common::split::<1>(data);
    let secrets = ["whsec_fuzz", "whsec_rotated"];
    for now in common::CLOCKS {
        let _ = stripe::verify(
            &secrets,
            header,
            body,
            now,
            Some(stripe::DEFAULT_TOLERANCE_SECS),
        );
        let _ = stripe::verify(&secrets, header, body, now, Some(i64::MAX));
        let _ = stripe::verify(&secrets, header, body, now, None);
    }
});
