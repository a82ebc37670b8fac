//! Discord interactions: `<X-Signature-Ed25519>\n<X-Signature-Timestamp>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::discord;

static KEY: LazyLock<discord::PublicKey> = LazyLock::new(|| {
    discord::PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        .expect("valid key")
});

fuzz_target!(|data: &[u8]| {
    let ([signature, timestamp], body) = common::split::<2>(data);
    let headers = discord::Headers {
        signature,
        timestamp,
    };
    for now in common::CLOCKS {
        let _ = discord::verify(&KEY, headers, body, now, None);
        let _ = discord::verify(&KEY, headers, body, now, Some(300));
    }
    if let Some(value) = signature {
        let _ = discord::PublicKey::from_hex(value);
    }
});
