//! Generic HMAC: `<template>\n<signature header>\n<timestamp header>\n<id header>\n<body>`.
//!
//! The first part is used as a signed-content template (operator input); every configuration it
//! yields is checked against the three header values, with every algorithm and encoding.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};
use switchboard_signatures::{HmacAlgorithm, header_list};

fuzz_target!(|data: &[u8]| {
    let ([template, signature, timestamp, id], body) = common::split::<4>(data);
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(value) = signature {
        pairs.push(("x-signature", value));
    }
    if let Some(value) = timestamp {
        pairs.push(("x-timestamp", value));
    }
    if let Some(value) = id {
        pairs.push(("x-id", value));
    }
    let headers = header_list(&pairs);
    let templates = [
        template.unwrap_or("{body}"),
        "{timestamp}.{body}",
        "{id}.{timestamp}.{body}",
    ];
    for template in templates {
        for algorithm in [
            HmacAlgorithm::Sha1,
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha512,
        ] {
            for (encoding, prefix) in [(Encoding::Hex, Some("sha256=")), (Encoding::Base64, None)] {
                let config = GenericHmacConfig {
                    algorithm,
                    encoding,
                    signature_header: "X-Signature".into(),
                    prefix: prefix.map(str::to_owned),
                    template: template.to_owned(),
                    timestamp_header: Some("X-Timestamp".into()),
                    id_header: Some("X-Id".into()),
                    tolerance_secs: Some(300),
                };
                let Ok(verifier) = GenericHmac::new(config) else {
                    continue;
                };
                for now in common::CLOCKS {
                    let _ = verifier.verify(&["k", "rotated"], &headers, body, now);
                }
            }
        }
    }
});
