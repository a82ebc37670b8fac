//! Slack: `<X-Slack-Request-Timestamp>\n<X-Slack-Signature>\n<body>`.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::slack;

fuzz_target!(|data: &[u8]| {
    let ([timestamp, signature], body) = common::split::<2>(data);
    let headers = slack::Headers {
        timestamp,
        signature,
    };
    let secrets = ["8f742231b10e8888abcd99yyyzzz85a5", "fuzz"];
    for now in common::CLOCKS {
        let _ = slack::verify(&secrets, headers, body, now, slack::DEFAULT_TOLERANCE_SECS);
        let _ = slack::verify(&secrets, headers, body, now, i64::MAX);
        let _ = slack::verify(&secrets, headers, body, now, -1);
    }
});
