//! GitHub: `<X-Hub-Signature-256>\n<X-Hub-Signature>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::github;

fuzz_target!(|data: &[u8]| {
    let ([sha256, sha1], body) = common::split::<2>(data);
    let secrets = ["It's a Secret to Everybody", "rotated"];
    let _ = github::verify(&secrets, sha256, body);
    let _ = github::verify_sha1(&secrets, sha1, body);
});
