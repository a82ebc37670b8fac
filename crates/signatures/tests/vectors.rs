//! Every vector in `tests/data/signatures.json` (official-SDK vectors) and
//! `tests/data/extra_vectors.json` (the tables of schemes.md) must verify at its own timestamp, be
//! reproduced by the sign helper where the scheme is deterministic, and be rejected with the right
//! error once the body, secret, timestamp or headers are tampered with.

use serde_json::Value;
use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};
use switchboard_signatures::standard_webhooks::{
    self as sw, AsymmetricSigningKey, PublicKey as SwPublicKey, SigningKey,
};
use switchboard_signatures::{
    HeaderLookup, HmacAlgorithm, SignatureError, discord, github, header_list, sendgrid, shopify,
    slack, stripe, twilio,
};

const SDK_VECTORS: &str = include_str!("data/signatures.json");
const EXTRA_VECTORS: &str = include_str!("data/extra_vectors.json");

/// Schemes this file knows how to check; a vector of any other scheme fails the suite.
const KNOWN_SCHEMES: &[&str] = &[
    "standardwebhooks",
    "svix",
    "standardwebhooks-v1a",
    "github",
    "stripe",
    "slack",
    "shopify",
    "twilio",
    "sendgrid",
    "discord",
];

fn all(source: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(source).expect("vector file is JSON");
    doc["vectors"].as_array().expect("`vectors` array").clone()
}

fn of(source: &str, scheme: &str) -> Vec<Value> {
    let vectors: Vec<Value> = all(source)
        .into_iter()
        .filter(|v| v["scheme"] == scheme)
        .collect();
    assert!(!vectors.is_empty(), "no `{scheme}` vectors");
    vectors
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut node = v;
    for key in path {
        node = &node[*key];
    }
    node.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {v}"))
}

fn int(v: &Value, path: &[&str]) -> i64 {
    let mut node = v;
    for key in path {
        node = &node[*key];
    }
    node.as_i64()
        .unwrap_or_else(|| panic!("{path:?} is not an integer in {v}"))
}

/// `inputs.secret` followed by `inputs.extra_secrets`.
fn secrets(v: &Value) -> Vec<String> {
    let mut out = vec![text(v, &["inputs", "secret"]).to_owned()];
    for extra in v["inputs"]["extra_secrets"]
        .as_array()
        .expect("extra_secrets")
    {
        out.push(extra.as_str().expect("secret").to_owned());
    }
    out
}

/// The vector's headers as owned pairs, in file order.
fn header_pairs(v: &Value) -> Vec<(String, String)> {
    v["headers"]
        .as_object()
        .expect("headers object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_owned()))
        .collect()
}

/// Runs `f` with a case-insensitive lookup over `pairs`, with header `drop` removed and header
/// `replace.0` replaced by `replace.1` (both matched case-insensitively).
fn with_headers<R>(
    pairs: &[(String, String)],
    drop: Option<&str>,
    replace: Option<(&str, &str)>,
    f: impl for<'e> FnOnce(&dyn HeaderLookup<'e>) -> R,
) -> R {
    let edited: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| drop.is_none_or(|d| !k.eq_ignore_ascii_case(d)))
        .map(|(k, v)| match replace {
            Some((name, value)) if k.eq_ignore_ascii_case(name) => (k.as_str(), value),
            _ => (k.as_str(), v.as_str()),
        })
        .collect();
    let lookup = header_list(&edited);
    f(&lookup)
}

fn tampered(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    match out.last_mut() {
        Some(last) => *last ^= 1,
        None => out.push(b'x'),
    }
    out
}

fn assert_malformed<T: std::fmt::Debug>(result: Result<T, SignatureError>, what: &str) {
    assert!(
        matches!(result, Err(SignatureError::MalformedHeader { .. })),
        "{what}: expected MalformedHeader, got {result:?}"
    );
}

#[test]
fn every_vector_has_a_checked_scheme() {
    let mut total = 0;
    for source in [SDK_VECTORS, EXTRA_VECTORS] {
        for v in all(source) {
            let scheme = v["scheme"].as_str().expect("scheme");
            assert!(KNOWN_SCHEMES.contains(&scheme), "unchecked scheme {scheme}");
            total += 1;
        }
    }
    assert_eq!(
        total,
        16 + 16,
        "vector files changed: update the per-scheme tests"
    );
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks / Svix

struct SwCase<'a> {
    keys: Vec<SigningKey>,
    msg_id: &'a str,
    timestamp: i64,
    body: &'a [u8],
    pairs: Vec<(String, String)>,
    svix: bool,
}

fn check_standard_webhooks(case: &SwCase<'_>, entries: &[&str]) {
    let (id_h, ts_h, sig_h) = if case.svix {
        ("svix-id", "svix-timestamp", "svix-signature")
    } else {
        ("webhook-id", "webhook-timestamp", "webhook-signature")
    };
    let run = |keys: &[SigningKey], body: &[u8], now: i64, drop, replace| {
        with_headers(&case.pairs, drop, replace, |lookup| {
            sw::verify(keys, sw::Headers::from_lookup(lookup), body, now, 300)
        })
    };
    let ts = case.timestamp;
    for (key, entry) in case.keys.iter().zip(entries) {
        assert_eq!(key.sign(case.msg_id, ts, case.body), *entry, "sign");
        let one = std::slice::from_ref(key);
        assert_eq!(run(one, case.body, ts, None, None), Ok(()), "verify");
        assert_eq!(
            run(one, case.body, ts - 300, None, None),
            Ok(()),
            "edge old"
        );
        assert_eq!(
            run(one, case.body, ts + 300, None, None),
            Ok(()),
            "edge new"
        );
    }
    assert_eq!(
        run(&case.keys, &tampered(case.body), ts, None, None),
        Err(SignatureError::NoMatch),
        "tampered body"
    );
    let wrong = SigningKey::from_bytes(b"a different 24-byte key!".to_vec());
    assert_eq!(
        run(&[wrong], case.body, ts, None, None),
        Err(SignatureError::NoMatch),
        "wrong secret"
    );
    assert_eq!(
        run(&case.keys, case.body, ts + 301, None, None),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
    );
    assert_eq!(
        run(&case.keys, case.body, ts - 301, None, None),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: 301 })
    );
    for (header, name) in [
        (id_h, "webhook-id"),
        (ts_h, "webhook-timestamp"),
        (sig_h, "webhook-signature"),
    ] {
        assert_eq!(
            run(&case.keys, case.body, ts, Some(header), None),
            Err(SignatureError::MissingHeader(name))
        );
    }
    for bad_ts in ["1.7e9", "", "-1", "1700000000.0"] {
        assert_malformed(
            run(&case.keys, case.body, ts, None, Some((ts_h, bad_ts))),
            "timestamp",
        );
    }
    assert_malformed(
        run(&case.keys, case.body, ts, None, Some((sig_h, "v1"))),
        "signature without comma",
    );
    // The timestamp is signed: a different (in-window) timestamp does not verify.
    let moved = (ts + 1).to_string();
    assert_eq!(
        run(&case.keys, case.body, ts, None, Some((ts_h, &moved))),
        Err(SignatureError::NoMatch)
    );
}

fn sw_case(v: &Value, svix: bool) -> (SwCase<'_>, Vec<String>) {
    let pairs = header_pairs(v);
    let sig_h = if svix {
        "svix-signature"
    } else {
        "webhook-signature"
    };
    let header = text(v, &["headers", sig_h]);
    let entries = header.split(' ').map(str::to_owned).collect();
    let keys = secrets(v)
        .iter()
        .map(|s| SigningKey::from_secret(s).expect("whsec secret"))
        .collect();
    let case = SwCase {
        keys,
        msg_id: text(v, &["inputs", "msg_id"]),
        timestamp: int(v, &["inputs", "timestamp"]),
        body: text(v, &["inputs", "body"]).as_bytes(),
        pairs,
        svix,
    };
    (case, entries)
}

#[test]
fn standard_webhooks_sdk_vectors() {
    for v in of(SDK_VECTORS, "standardwebhooks") {
        let (case, entries) = sw_case(&v, false);
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        check_standard_webhooks(&case, &refs);
        // The rotation header is exactly what `sign_header` produces for the secrets in order.
        assert_eq!(
            sw::sign_header(&case.keys, case.msg_id, case.timestamp, case.body),
            text(&v, &["headers", "webhook-signature"])
        );
    }
}

#[test]
fn svix_sdk_vectors() {
    for v in of(SDK_VECTORS, "svix") {
        let (case, entries) = sw_case(&v, true);
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        check_standard_webhooks(&case, &refs);
    }
}

fn extra_sw_case(v: &Value, svix: bool) -> SwCase<'_> {
    let (id_h, ts_h, sig_h) = if svix {
        ("svix-id", "svix-timestamp", "svix-signature")
    } else {
        ("webhook-id", "webhook-timestamp", "webhook-signature")
    };
    let timestamp = int(v, &["timestamp"]);
    SwCase {
        keys: vec![SigningKey::from_secret(text(v, &["secret"])).expect("whsec secret")],
        msg_id: text(v, &["msg_id"]),
        timestamp,
        body: text(v, &["body"]).as_bytes(),
        pairs: vec![
            (id_h.to_owned(), text(v, &["msg_id"]).to_owned()),
            (ts_h.to_owned(), timestamp.to_string()),
            (sig_h.to_owned(), text(v, &["signature"]).to_owned()),
        ],
        svix,
    }
}

#[test]
fn standard_webhooks_and_svix_extra_vectors() {
    for (scheme, svix) in [("standardwebhooks", false), ("svix", true)] {
        for v in of(EXTRA_VECTORS, scheme) {
            let case = extra_sw_case(&v, svix);
            check_standard_webhooks(&case, &[text(&v, &["signature"])]);
        }
    }
    // The SDK tests' invalid fixture inside a multi-signature header is skipped, not fatal.
    let v = &of(EXTRA_VECTORS, "standardwebhooks")[0];
    let case = extra_sw_case(v, false);
    let invalid = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let headers = |sig| sw::Headers {
        id: Some(case.msg_id),
        timestamp: Some("1614265330"),
        signature: Some(sig),
    };
    let both = format!("{invalid} {}", text(v, &["signature"]));
    assert_eq!(
        sw::verify(&case.keys, headers(&both), case.body, case.timestamp, 300),
        Ok(())
    );
    assert_eq!(
        sw::verify(&case.keys, headers(invalid), case.body, case.timestamp, 300),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn svix_headers_win_over_webhook_headers() {
    let v = &of(EXTRA_VECTORS, "svix")[0];
    let case = extra_sw_case(v, true);
    let mut pairs = case.pairs.clone();
    pairs.push(("webhook-id".into(), "msg_wrong".into()));
    assert_eq!(
        with_headers(&pairs, None, None, |lookup| sw::verify(
            &case.keys,
            sw::Headers::from_lookup(lookup),
            case.body,
            case.timestamp,
            300
        )),
        Ok(())
    );
    // A wrong svix-id with a correct webhook-id is rejected.
    pairs.push(("webhook-id".into(), case.msg_id.into()));
    assert_eq!(
        with_headers(&pairs, None, Some(("svix-id", "msg_wrong")), |lookup| {
            sw::verify(
                &case.keys,
                sw::Headers::from_lookup(lookup),
                case.body,
                case.timestamp,
                300,
            )
        }),
        Err(SignatureError::NoMatch)
    );
}

fn check_v1a(seed: &str, public: &str, msg_id: &str, ts: i64, body: &[u8], sig: &str) {
    let signer = AsymmetricSigningKey::from_secret(seed).expect("whsk seed");
    assert_eq!(signer.public_key().to_secret(), public);
    assert_eq!(
        signer.sign(msg_id, ts, body),
        sig,
        "Ed25519 is deterministic"
    );
    let keys = [SwPublicKey::from_secret(public).expect("whpk key")];
    let ts_s = ts.to_string();
    let pairs = vec![
        ("webhook-id".to_owned(), msg_id.to_owned()),
        ("webhook-timestamp".to_owned(), ts_s.clone()),
        ("webhook-signature".to_owned(), sig.to_owned()),
    ];
    let run = |keys: &[SwPublicKey], body: &[u8], now: i64, drop, replace| {
        with_headers(&pairs, drop, replace, |lookup| {
            sw::verify_asymmetric(keys, sw::Headers::from_lookup(lookup), body, now, 300)
        })
    };
    assert_eq!(run(&keys, body, ts, None, None), Ok(()));
    assert_eq!(
        run(&keys, &tampered(body), ts, None, None),
        Err(SignatureError::NoMatch)
    );
    let wrong = [AsymmetricSigningKey::from_seed(&[7; 32]).public_key()];
    assert_eq!(
        run(&wrong, body, ts, None, None),
        Err(SignatureError::NoMatch)
    );
    assert!(matches!(
        run(&keys, body, ts + 301, None, None),
        Err(SignatureError::TimestampOutOfTolerance { .. })
    ));
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(
            run(&keys, body, ts, Some(name), None),
            Err(SignatureError::MissingHeader(name))
        );
    }
    assert_malformed(
        run(&keys, body, ts, None, Some(("webhook-timestamp", "x"))),
        "ts",
    );
    // Only v1 entries: no v1a entry to check.
    assert_malformed(
        run(
            &keys,
            body,
            ts,
            None,
            Some((
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            )),
        ),
        "no v1a",
    );
    // A truncated signature never verifies.
    let truncated = &sig[..sig.len() - 4];
    assert_eq!(
        run(
            &keys,
            body,
            ts,
            None,
            Some(("webhook-signature", truncated))
        ),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn standard_webhooks_v1a_vectors() {
    for v in of(SDK_VECTORS, "standardwebhooks-v1a") {
        check_v1a(
            text(&v, &["inputs", "secret"]),
            text(&v, &["public_key"]),
            text(&v, &["inputs", "msg_id"]),
            int(&v, &["inputs", "timestamp"]),
            text(&v, &["inputs", "body"]).as_bytes(),
            text(&v, &["headers", "webhook-signature"]),
        );
    }
    for v in of(EXTRA_VECTORS, "standardwebhooks-v1a") {
        check_v1a(
            text(&v, &["secret"]),
            text(&v, &["public_key"]),
            text(&v, &["msg_id"]),
            int(&v, &["timestamp"]),
            text(&v, &["body"]).as_bytes(),
            text(&v, &["signature"]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub

fn check_github(secret: &str, body: &[u8], sig256: &str, sig1: &str) {
    assert_eq!(github::sign(secret.as_bytes(), body), sig256);
    assert_eq!(github::sign_sha1(secret.as_bytes(), body), sig1);
    let cases = [
        (false, sig256, github::SIGNATURE_HEADER, "sha256="),
        (true, sig1, github::SIGNATURE_SHA1_HEADER, "sha1="),
    ];
    for (legacy, sig, header, prefix) in cases {
        let verify = |secrets: &[&str], sig: Option<&str>, body: &[u8]| {
            if legacy {
                github::verify_sha1(secrets, sig, body)
            } else {
                github::verify(secrets, sig, body)
            }
        };
        assert_eq!(verify(&[secret], Some(sig), body), Ok(()));
        assert_eq!(verify(&["rolled-over", secret], Some(sig), body), Ok(()));
        assert_eq!(
            verify(&[secret], Some(sig), &tampered(body)),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(&["wrong secret"], Some(sig), body),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(&[secret], None, body),
            Err(SignatureError::MissingHeader(header))
        );
        let hex = &sig[prefix.len()..];
        assert_malformed(verify(&[secret], Some(hex), body), "no prefix");
        assert_malformed(
            verify(&[secret], Some(&format!("{prefix}{}", &hex[2..])), body),
            "short",
        );
        assert_malformed(
            verify(&[secret], Some(&format!("{prefix}zz{}", &hex[2..])), body),
            "non-hex",
        );
    }
    // The two headers are not interchangeable.
    assert_malformed(
        github::verify(&[secret], Some(sig1), body),
        "sha1 as sha256",
    );
}

#[test]
fn github_vectors() {
    for v in of(SDK_VECTORS, "github") {
        let secret = text(&v, &["inputs", "secret"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let pairs = header_pairs(&v);
        let sig256 = text(&v, &["headers", "X-Hub-Signature-256"]);
        check_github(
            secret,
            body,
            sig256,
            text(&v, &["headers", "X-Hub-Signature"]),
        );
        assert_eq!(
            format!("sha256={}", text(&v, &["per_secret_sha256", secret])),
            sig256
        );
        // Through a lookup with the provider's header casing.
        with_headers(&pairs, None, None, |lookup| {
            assert_eq!(
                github::verify(&[secret], lookup.header(github::SIGNATURE_HEADER), body),
                Ok(())
            );
        });
    }
    for v in of(EXTRA_VECTORS, "github") {
        check_github(
            text(&v, &["secret"]),
            text(&v, &["body"]).as_bytes(),
            text(&v, &["signature_256"]),
            text(&v, &["signature_sha1"]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe

fn check_stripe(secrets: &[String], ts: i64, body: &[u8], header: &str) {
    assert_eq!(stripe::sign(secrets, ts, body), header, "sign");
    let run = |secrets: &[String], header: Option<&str>, body: &[u8], now: i64| {
        stripe::verify(
            secrets,
            header,
            body,
            now,
            Some(stripe::DEFAULT_TOLERANCE_SECS),
        )
    };
    for secret in secrets {
        let one = std::slice::from_ref(secret);
        assert_eq!(run(one, Some(header), body, ts), Ok(()), "verify");
        assert_eq!(run(one, Some(header), body, ts + 300), Ok(()), "edge");
        assert_eq!(
            run(one, Some(header), body, ts - 100_000),
            Ok(()),
            "future timestamps are accepted"
        );
    }
    assert_eq!(
        run(secrets, Some(header), &tampered(body), ts),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run(&["whsec_wrong".into()], Some(header), body, ts),
        Err(SignatureError::NoMatch)
    );
    // The key is the whole string, prefix included.
    let stripped: Vec<String> = secrets
        .iter()
        .map(|s| s.trim_start_matches("whsec_").to_owned())
        .collect();
    assert_eq!(
        run(&stripped, Some(header), body, ts),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run(secrets, Some(header), body, ts + 301),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
    );
    assert_eq!(
        stripe::verify(secrets, Some(header), body, ts + 100_000, None),
        Ok(()),
        "no tolerance, no age check"
    );
    assert_eq!(
        run(secrets, None, body, ts),
        Err(SignatureError::MissingHeader(stripe::SIGNATURE_HEADER))
    );
    let without_t = header.split_once(',').expect("t first").1;
    assert_malformed(run(secrets, Some(without_t), body, ts), "no t");
    assert_malformed(
        run(secrets, Some(&header.replacen("t=", "t=x", 1)), body, ts),
        "bad t",
    );
    assert_malformed(
        run(secrets, Some(&header.replace("v1=", "v0=")), body, ts),
        "only v0",
    );
    // The timestamp is signed.
    let moved = header.replacen(&format!("t={ts}"), &format!("t={}", ts + 1), 1);
    assert_eq!(
        run(secrets, Some(&moved), body, ts),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn stripe_vectors() {
    for v in of(SDK_VECTORS, "stripe") {
        let secrets = secrets(&v);
        let header = text(&v, &["headers", "Stripe-Signature"]);
        let ts = int(&v, &["inputs", "timestamp"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        check_stripe(&secrets, ts, body, header);
        for secret in secrets.iter() {
            assert_eq!(v["verified"][secret.as_str()], true);
        }
    }
    for v in of(EXTRA_VECTORS, "stripe") {
        let secrets: Vec<String> = v["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .map(|s| s.as_str().expect("secret").to_owned())
            .collect();
        check_stripe(
            &secrets,
            int(&v, &["timestamp"]),
            text(&v, &["body"]).as_bytes(),
            text(&v, &["header"]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Slack

fn check_slack(secret: &str, ts_raw: &str, body: &[u8], sig: &str) {
    assert_eq!(slack::sign(secret.as_bytes(), ts_raw, body), sig);
    let ts: i64 = ts_raw.parse().expect("ts");
    let pairs = vec![
        ("X-Slack-Request-Timestamp".to_owned(), ts_raw.to_owned()),
        ("X-Slack-Signature".to_owned(), sig.to_owned()),
    ];
    let run = |secret: &str, body: &[u8], now: i64, drop, replace| {
        with_headers(&pairs, drop, replace, |lookup| {
            slack::verify(
                &[secret],
                slack::Headers::from_lookup(lookup),
                body,
                now,
                slack::DEFAULT_TOLERANCE_SECS,
            )
        })
    };
    assert_eq!(run(secret, body, ts, None, None), Ok(()));
    assert_eq!(run(secret, body, ts + 300, None, None), Ok(()));
    assert_eq!(run(secret, body, ts - 300, None, None), Ok(()));
    assert_eq!(
        run(secret, &tampered(body), ts, None, None),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run("wrong", body, ts, None, None),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run(secret, body, ts + 301, None, None),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
    );
    assert_eq!(
        run(secret, body, ts - 301, None, None),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: 301 })
    );
    for name in [slack::TIMESTAMP_HEADER, slack::SIGNATURE_HEADER] {
        assert_eq!(
            run(secret, body, ts, Some(name), None),
            Err(SignatureError::MissingHeader(name))
        );
    }
    assert_malformed(
        run(
            secret,
            body,
            ts,
            None,
            Some((slack::TIMESTAMP_HEADER, "1e9")),
        ),
        "ts",
    );
    assert_malformed(
        run(
            secret,
            body,
            ts,
            None,
            Some((slack::SIGNATURE_HEADER, &sig[3..])),
        ),
        "no v0=",
    );
    // Leading zero: same instant, different signed string.
    let zero = format!("0{ts_raw}");
    assert_eq!(
        run(
            secret,
            body,
            ts,
            None,
            Some((slack::TIMESTAMP_HEADER, &zero))
        ),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn slack_vectors() {
    for v in of(SDK_VECTORS, "slack") {
        check_slack(
            text(&v, &["inputs", "secret"]),
            text(&v, &["headers", "X-Slack-Request-Timestamp"]),
            text(&v, &["inputs", "body"]).as_bytes(),
            text(&v, &["headers", "X-Slack-Signature"]),
        );
        assert_eq!(
            int(&v, &["inputs", "timestamp"]).to_string(),
            text(&v, &["headers", "X-Slack-Request-Timestamp"])
        );
    }
    for v in of(EXTRA_VECTORS, "slack") {
        check_slack(
            text(&v, &["secret"]),
            text(&v, &["timestamp"]),
            text(&v, &["body"]).as_bytes(),
            text(&v, &["signature"]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shopify

#[test]
fn shopify_vectors() {
    for v in of(SDK_VECTORS, "shopify") {
        let secret = text(&v, &["inputs", "secret"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let sig = text(&v, &["headers", "X-Shopify-Hmac-Sha256"]);
        assert_eq!(shopify::sign(secret.as_bytes(), body), sig);
        let pairs = header_pairs(&v);
        with_headers(&pairs, None, None, |lookup| {
            assert_eq!(
                shopify::verify(&[secret], lookup.header(shopify::SIGNATURE_HEADER), body),
                Ok(())
            );
        });
        assert_eq!(shopify::verify(&["old", secret], Some(sig), body), Ok(()));
        assert_eq!(
            shopify::verify(&[secret], Some(sig), &tampered(body)),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            shopify::verify(&["wrong"], Some(sig), body),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            shopify::verify(&[secret], None, body),
            Err(SignatureError::MissingHeader(shopify::SIGNATURE_HEADER))
        );
        assert_malformed(
            shopify::verify(&[secret], Some("not base64!"), body),
            "base64",
        );
        assert_malformed(
            shopify::verify(&[secret], Some(&sig[4..]), body),
            "truncated",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Twilio

struct TwilioCase {
    secret: String,
    /// The URL the request was sent to.
    url: String,
    /// The URL the signature was computed over (port variants differ from `url`).
    signed_url: String,
    params: Option<Vec<(String, String)>>,
    body: Vec<u8>,
    content_type: String,
    settings: Option<String>,
    algorithm: twilio::Algorithm,
    signature: String,
}

fn check_twilio(case: &TwilioCase) {
    let secret = case.secret.as_bytes();
    match &case.params {
        Some(params) => {
            assert_eq!(
                twilio::compute_signature(secret, &case.signed_url, params, case.algorithm),
                case.signature,
                "compute_signature"
            );
            assert_eq!(
                twilio::sign_form(secret, &case.signed_url, &case.body, case.algorithm),
                case.signature,
                "sign_form"
            );
        }
        None => {
            let hash = switchboard_signatures::common::sha256_hex(&case.body);
            let unsigned = case
                .signed_url
                .replace(&format!("&bodySHA256={hash}"), "")
                .replace(&format!("?bodySHA256={hash}"), "");
            assert_eq!(
                twilio::sign_with_body_hash(secret, &unsigned, &case.body, case.algorithm),
                twilio::SignedUrl {
                    url: case.signed_url.clone(),
                    signature: case.signature.clone()
                }
            );
        }
    }
    let mut pairs = vec![
        ("X-Twilio-Signature".to_owned(), case.signature.clone()),
        ("Content-Type".to_owned(), case.content_type.clone()),
    ];
    if let Some(settings) = &case.settings {
        pairs.push((
            "X-Twilio-Webhooks-Signature-Settings".to_owned(),
            settings.clone(),
        ));
    }
    let run = |secret: &str, url: &str, body: &[u8], drop, replace| {
        with_headers(&pairs, drop, replace, |lookup| {
            twilio::verify(&[secret], url, twilio::Headers::from_lookup(lookup), body)
        })
    };
    assert_eq!(
        run(&case.secret, &case.url, &case.body, None, None),
        Ok(()),
        "verify {}",
        case.url
    );
    assert_eq!(
        twilio::verify(
            &["rolled", case.secret.as_str()],
            &case.url,
            twilio::Headers {
                signature: Some(&case.signature),
                signature_settings: case.settings.as_deref(),
                content_type: Some(&case.content_type),
            },
            &case.body
        ),
        Ok(()),
        "rotation"
    );
    let tampered_error = if case.params.is_some() {
        SignatureError::NoMatch
    } else {
        SignatureError::BodyHashMismatch
    };
    assert_eq!(
        run(&case.secret, &case.url, &tampered(&case.body), None, None),
        Err(tampered_error),
        "tampered body"
    );
    assert_eq!(
        run("54321", &case.url, &case.body, None, None),
        Err(SignatureError::NoMatch),
        "wrong secret"
    );
    assert_eq!(
        run(
            &case.secret,
            &case.url,
            &case.body,
            Some("x-twilio-signature"),
            None
        ),
        Err(SignatureError::MissingHeader(twilio::SIGNATURE_HEADER))
    );
    assert_malformed(
        run(
            &case.secret,
            &case.url,
            &case.body,
            None,
            Some(("x-twilio-signature", "not base64!")),
        ),
        "signature",
    );
    assert_malformed(
        twilio::verify(
            &[case.secret.as_str()],
            &case.url,
            twilio::Headers {
                signature: Some(&case.signature),
                signature_settings: Some("key=k,algorithm=HMAC_MD5"),
                content_type: Some(&case.content_type),
            },
            &case.body,
        ),
        "settings",
    );
    let host_end = case.url["https://".len()..]
        .find('/')
        .map(|i| i + "https://".len())
        .expect("path");
    let other_path = format!("{}/other{}", &case.url[..host_end], &case.url[host_end..]);
    assert_eq!(
        run(&case.secret, &other_path, &case.body, None, None),
        Err(SignatureError::NoMatch),
        "URL is signed"
    );
    // Port normalisation: when the signature covers the port-less URL, a request URL with any
    // explicit port still verifies (the SDK strips every port).
    if case.signed_url == case.url && !case.url[..host_end].contains(".com:") {
        for port in [":443", ":8443", ":80"] {
            let with_port = format!("{}{port}{}", &case.url[..host_end], &case.url[host_end..]);
            assert_eq!(
                run(&case.secret, &with_port, &case.body, None, None),
                Ok(()),
                "{with_port}"
            );
        }
    } else if !case.url[..host_end].contains(".com:") {
        // Signed over the URL with its default port: another port does not verify.
        let other = format!("{}:8443{}", &case.url[..host_end], &case.url[host_end..]);
        assert_eq!(
            run(&case.secret, &other, &case.body, None, None),
            Err(SignatureError::NoMatch),
            "{other}"
        );
    }
}

fn twilio_algorithm(name: &str) -> twilio::Algorithm {
    twilio::Algorithm::from_name(name).expect("known algorithm")
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    serializer.finish().into_bytes()
}

fn params_of(v: &Value) -> Option<Vec<(String, String)>> {
    v["params"].as_array().map(|params| {
        params
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("name").to_owned(),
                    pair[1].as_str().expect("value").to_owned(),
                )
            })
            .collect()
    })
}

#[test]
fn twilio_sdk_vectors() {
    for v in of(SDK_VECTORS, "twilio") {
        let params = params_of(&v);
        let (body, content_type) = match &params {
            Some(_) => (
                text(&v, &["form_body"]).as_bytes().to_vec(),
                "application/x-www-form-urlencoded",
            ),
            None => (
                text(&v, &["inputs", "body"]).as_bytes().to_vec(),
                "application/json",
            ),
        };
        let signed_url = text(&v, &["signed_url"]).to_owned();
        let mut signed = text(&v, &["inputs", "url"]).to_owned();
        if params.is_none() {
            signed = twilio::url_with_body_hash(&signed, &body);
            assert_eq!(
                text(&v, &["bodySHA256"]),
                switchboard_signatures::common::sha256_hex(&body)
            );
        }
        assert_eq!(signed, signed_url);
        let case = TwilioCase {
            secret: text(&v, &["inputs", "secret"]).to_owned(),
            url: signed_url.clone(),
            signed_url,
            params,
            body,
            content_type: content_type.to_owned(),
            settings: v["headers"]["X-Twilio-Webhooks-Signature-Settings"]
                .as_str()
                .map(str::to_owned),
            algorithm: twilio_algorithm(text(&v, &["algorithm"])),
            signature: text(&v, &["headers", "X-Twilio-Signature"]).to_owned(),
        };
        check_twilio(&case);
        if let Some(settings) = &case.settings {
            // Without the settings header the SHA-256 tag is read as a (wrong-length) SHA-1 tag.
            let headers = twilio::Headers {
                signature: Some(&case.signature),
                signature_settings: None,
                content_type: Some(&case.content_type),
            };
            assert_malformed(
                twilio::verify(&[&case.secret], &case.url, headers, &case.body),
                "sha256 tag without settings",
            );
            assert!(settings.contains("algorithm=HMAC_SHA256"));
        }
    }
}

#[test]
fn twilio_extra_vectors() {
    for v in of(EXTRA_VECTORS, "twilio") {
        let params = params_of(&v);
        let body = match &params {
            Some(params) => form_body(params),
            None => text(&v, &["body"]).as_bytes().to_vec(),
        };
        check_twilio(&TwilioCase {
            secret: text(&v, &["secret"]).to_owned(),
            url: text(&v, &["url"]).to_owned(),
            signed_url: text(&v, &["signed_url"]).to_owned(),
            params,
            body,
            content_type: text(&v, &["content_type"]).to_owned(),
            settings: None,
            algorithm: twilio_algorithm(text(&v, &["algorithm"])),
            signature: text(&v, &["signature"]).to_owned(),
        });
    }
}

#[test]
fn twilio_unsigned_bodies_are_refused() {
    let v = &of(SDK_VECTORS, "twilio")[1];
    // A JSON body sent to a URL without bodySHA256 is not covered by the signature.
    let url = text(v, &["inputs", "url"]);
    let sig = twilio::compute_signature(
        b"12345",
        url,
        &[] as &[(&str, &str)],
        twilio::Algorithm::HmacSha1,
    );
    let headers = twilio::Headers {
        signature: Some(&sig),
        signature_settings: None,
        content_type: Some("application/json"),
    };
    assert!(matches!(
        twilio::verify(&["12345"], url, headers, b"{}"),
        Err(SignatureError::InvalidRequest(_))
    ));
    // An empty body (GET) signs the URL alone.
    assert_eq!(twilio::verify(&["12345"], url, headers, b""), Ok(()));
    assert!(matches!(
        twilio::verify(&["12345"], "/relative/path", headers, b""),
        Err(SignatureError::InvalidRequest(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// SendGrid

const SENDGRID_OFFICIAL_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const SENDGRID_WORKED_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVHlIQo6YtPu2qUZx81PJKHlrIGk4+okM3T24gNzEyxCuf2x9OtLYrjrZiFKnVlN5NzrUJtnN2OwHh2M3krf7hw==";

fn check_sendgrid(key_b64: &str, ts_raw: &str, body: &[u8], sig: &str) {
    let keys = [sendgrid::PublicKey::from_base64_der(key_b64).expect("key")];
    let wrong_b64 = if key_b64 == SENDGRID_OFFICIAL_KEY {
        SENDGRID_WORKED_KEY
    } else {
        SENDGRID_OFFICIAL_KEY
    };
    let wrong = [sendgrid::PublicKey::from_base64_der(wrong_b64).expect("key")];
    let ts: i64 = ts_raw.parse().expect("ts");
    let pairs = vec![
        (
            "X-Twilio-Email-Event-Webhook-Signature".to_owned(),
            sig.to_owned(),
        ),
        (
            "X-Twilio-Email-Event-Webhook-Timestamp".to_owned(),
            ts_raw.to_owned(),
        ),
    ];
    let run = |keys: &[sendgrid::PublicKey], body: &[u8], now: i64, tolerance, drop, replace| {
        with_headers(&pairs, drop, replace, |lookup| {
            sendgrid::verify(
                keys,
                sendgrid::Headers::from_lookup(lookup),
                body,
                now,
                tolerance,
            )
        })
    };
    assert_eq!(run(&keys, body, ts, None, None, None), Ok(()));
    assert_eq!(run(&keys, body, ts, Some(300), None, None), Ok(()));
    assert_eq!(
        run(&keys, body, ts + 10_000_000, None, None, None),
        Ok(()),
        "the SDK checks no window"
    );
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &key_b64[..64],
        &key_b64[64..]
    );
    let pem_keys = [sendgrid::PublicKey::from_base64_der(&pem).expect("pem")];
    assert_eq!(run(&pem_keys, body, ts, None, None, None), Ok(()));
    assert_eq!(
        run(&keys, &tampered(body), ts, None, None, None),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run(&wrong, body, ts, None, None, None),
        Err(SignatureError::NoMatch)
    );
    assert_eq!(
        run(&keys, body, ts + 301, Some(300), None, None),
        Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
    );
    for name in [sendgrid::SIGNATURE_HEADER, sendgrid::TIMESTAMP_HEADER] {
        assert_eq!(
            run(&keys, body, ts, None, Some(name), None),
            Err(SignatureError::MissingHeader(name))
        );
    }
    assert_malformed(
        run(
            &keys,
            body,
            ts,
            None,
            None,
            Some((sendgrid::SIGNATURE_HEADER, "AAAA")),
        ),
        "not DER",
    );
    assert_malformed(
        run(
            &keys,
            body,
            ts,
            None,
            None,
            Some((sendgrid::SIGNATURE_HEADER, "***")),
        ),
        "not base64",
    );
    assert_malformed(
        run(
            &keys,
            body,
            ts,
            None,
            None,
            Some((sendgrid::TIMESTAMP_HEADER, "yesterday")),
        ),
        "timestamp",
    );
    // The timestamp is part of the signed message.
    let moved = (ts + 1).to_string();
    assert_eq!(
        run(
            &keys,
            body,
            ts,
            None,
            None,
            Some((sendgrid::TIMESTAMP_HEADER, &moved))
        ),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn sendgrid_vectors() {
    for v in of(SDK_VECTORS, "sendgrid") {
        assert_eq!(
            text(&v, &["public_key_base64_der_spki"]),
            SENDGRID_WORKED_KEY
        );
        check_sendgrid(
            text(&v, &["public_key_base64_der_spki"]),
            text(&v, &["headers", "X-Twilio-Email-Event-Webhook-Timestamp"]),
            text(&v, &["inputs", "body"]).as_bytes(),
            text(&v, &["headers", "X-Twilio-Email-Event-Webhook-Signature"]),
        );
    }
    for v in of(EXTRA_VECTORS, "sendgrid") {
        let body = text(&v, &["body"]);
        assert!(body.ends_with("\r\n"));
        check_sendgrid(
            text(&v, &["public_key"]),
            text(&v, &["timestamp"]),
            body.as_bytes(),
            text(&v, &["signature"]),
        );
        // Removing the trailing CR LF breaks the signature (the body is byte-exact).
        let keys = [sendgrid::PublicKey::from_base64_der(text(&v, &["public_key"])).expect("key")];
        let headers = sendgrid::Headers {
            signature: Some(text(&v, &["signature"])),
            timestamp: Some(text(&v, &["timestamp"])),
        };
        assert_eq!(
            sendgrid::verify(&keys, headers, body.trim_end().as_bytes(), 0, None),
            Err(SignatureError::NoMatch)
        );
    }
    assert!(matches!(
        sendgrid::PublicKey::from_base64_der("MFkw"),
        Err(SignatureError::InvalidSecret(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Discord

#[test]
fn discord_vectors() {
    for v in of(SDK_VECTORS, "discord") {
        let seed_hex = text(&v, &["inputs", "secret"]);
        let seed: [u8; 32] = (0..32)
            .map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect::<Vec<_>>()
            .try_into()
            .expect("32 bytes");
        let ts_raw = text(&v, &["headers", "X-Signature-Timestamp"]);
        let ts = int(&v, &["inputs", "timestamp"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let sig = text(&v, &["headers", "X-Signature-Ed25519"]);
        let key = discord::PublicKey::from_hex(text(&v, &["public_key_hex"])).expect("key");
        let (derived, signed) = discord::sign(&seed, ts_raw, body);
        assert_eq!(derived, key);
        assert_eq!(signed, sig, "Ed25519 is deterministic");

        let pairs = header_pairs(&v);
        let run = |key: &discord::PublicKey, body: &[u8], now: i64, tolerance, drop, replace| {
            with_headers(&pairs, drop, replace, |lookup| {
                discord::verify(
                    key,
                    discord::Headers::from_lookup(lookup),
                    body,
                    now,
                    tolerance,
                )
            })
        };
        assert_eq!(run(&key, body, ts, None, None, None), Ok(()));
        assert_eq!(run(&key, body, ts, Some(300), None, None), Ok(()));
        let upper = sig.to_uppercase();
        assert_eq!(
            run(
                &key,
                body,
                ts,
                None,
                None,
                Some((discord::SIGNATURE_HEADER, &upper))
            ),
            Ok(()),
            "hex is decoded, either case"
        );
        assert_eq!(
            run(&key, &tampered(body), ts, None, None, None),
            Err(SignatureError::NoMatch)
        );
        let (wrong, _) = discord::sign(&[7; 32], ts_raw, body);
        assert_eq!(
            run(&wrong, body, ts, None, None, None),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            run(&key, body, ts - 301, Some(300), None, None),
            Err(SignatureError::TimestampOutOfTolerance { skew_secs: 301 })
        );
        for name in [discord::SIGNATURE_HEADER, discord::TIMESTAMP_HEADER] {
            assert_eq!(
                run(&key, body, ts, None, Some(name), None),
                Err(SignatureError::MissingHeader(name))
            );
        }
        assert_malformed(
            run(
                &key,
                body,
                ts,
                None,
                None,
                Some((discord::SIGNATURE_HEADER, &sig[2..])),
            ),
            "short",
        );
        assert_malformed(
            run(
                &key,
                body,
                ts,
                None,
                None,
                Some((discord::TIMESTAMP_HEADER, "now")),
            ),
            "timestamp",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Generic HMAC, configured to mimic providers, checked against their vectors.

#[test]
fn generic_hmac_reproduces_provider_vectors() {
    let github_like = GenericHmac::new(GenericHmacConfig {
        signature_header: "X-Hub-Signature-256".into(),
        prefix: Some("sha256=".into()),
        ..GenericHmacConfig::default()
    })
    .expect("config");
    let github_sha1 = GenericHmac::new(GenericHmacConfig {
        algorithm: HmacAlgorithm::Sha1,
        signature_header: "X-Hub-Signature".into(),
        prefix: Some("sha1=".into()),
        ..GenericHmacConfig::default()
    })
    .expect("config");
    for v in of(SDK_VECTORS, "github") {
        let secret = text(&v, &["inputs", "secret"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let pairs = header_pairs(&v);
        for (generic, header) in [
            (&github_like, "X-Hub-Signature-256"),
            (&github_sha1, "X-Hub-Signature"),
        ] {
            let expected = text(&v, &["headers", header]);
            assert_eq!(generic.signature(secret.as_bytes(), body, "", ""), expected);
            with_headers(&pairs, None, None, |lookup| {
                assert_eq!(generic.verify(&[secret], lookup, body, 0), Ok(()));
                assert_eq!(
                    generic.verify(&[secret], lookup, &tampered(body), 0),
                    Err(SignatureError::NoMatch)
                );
                assert_eq!(
                    generic.verify(&["wrong"], lookup, body, 0),
                    Err(SignatureError::NoMatch)
                );
            });
            with_headers(&pairs, Some(header), None, |lookup| {
                assert_eq!(
                    generic.verify(&[secret], lookup, body, 0),
                    Err(SignatureError::MissingHeader("configured signature header"))
                );
            });
            with_headers(&pairs, None, Some((header, "sha256=xyz")), |lookup| {
                assert_malformed(generic.verify(&[secret], lookup, body, 0), "generic");
            });
        }
    }

    let slack_like = GenericHmac::new(GenericHmacConfig {
        signature_header: "x-slack-signature".into(),
        prefix: Some("v0=".into()),
        template: "v0:{timestamp}:{body}".into(),
        timestamp_header: Some("X-Slack-Request-Timestamp".into()),
        tolerance_secs: Some(300),
        ..GenericHmacConfig::default()
    })
    .expect("config");
    for v in of(SDK_VECTORS, "slack") {
        let secret = text(&v, &["inputs", "secret"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let ts = int(&v, &["inputs", "timestamp"]);
        let pairs = header_pairs(&v);
        let sent = slack_like.sign(secret.as_bytes(), body, ts, "");
        assert_eq!(
            sent,
            vec![
                (
                    "x-slack-signature".to_owned(),
                    text(&v, &["headers", "X-Slack-Signature"]).to_owned()
                ),
                ("x-slack-request-timestamp".to_owned(), ts.to_string()),
            ]
        );
        with_headers(&pairs, None, None, |lookup| {
            assert_eq!(slack_like.verify(&[secret], lookup, body, ts), Ok(()));
            assert_eq!(
                slack_like.verify(&[secret], lookup, body, ts + 301),
                Err(SignatureError::TimestampOutOfTolerance { skew_secs: -301 })
            );
        });
        with_headers(&pairs, Some("x-slack-request-timestamp"), None, |lookup| {
            assert_eq!(
                slack_like.verify(&[secret], lookup, body, ts),
                Err(SignatureError::MissingHeader("configured timestamp header"))
            );
        });
        with_headers(
            &pairs,
            None,
            Some(("x-slack-request-timestamp", "soon")),
            |lookup| assert_malformed(slack_like.verify(&[secret], lookup, body, ts), "ts"),
        );
    }

    let shopify_like = GenericHmac::new(GenericHmacConfig {
        encoding: Encoding::Base64,
        signature_header: "X-Shopify-Hmac-Sha256".into(),
        ..GenericHmacConfig::default()
    })
    .expect("config");
    for v in of(SDK_VECTORS, "shopify") {
        let secret = text(&v, &["inputs", "secret"]);
        let body = text(&v, &["inputs", "body"]).as_bytes();
        let pairs = header_pairs(&v);
        assert_eq!(
            shopify_like.signature(secret.as_bytes(), body, "", ""),
            text(&v, &["headers", "X-Shopify-Hmac-Sha256"])
        );
        with_headers(&pairs, None, None, |lookup| {
            assert_eq!(shopify_like.verify(&[secret], lookup, body, 0), Ok(()));
        });
    }

    // Standard-Webhooks-shaped content with an id header (key = raw bytes here).
    let with_id = GenericHmac::new(GenericHmacConfig {
        encoding: Encoding::Base64,
        signature_header: "x-sig".into(),
        prefix: Some("v1,".into()),
        template: "{id}.{timestamp}.{body}".into(),
        timestamp_header: Some("x-ts".into()),
        id_header: Some("x-id".into()),
        ..GenericHmacConfig::default()
    })
    .expect("config");
    let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
    let raw_key = [
        0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f, 0x08,
        0x2c, 0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0,
    ];
    assert_eq!(
        SigningKey::from_bytes(raw_key.to_vec()).to_secret(),
        key.to_secret()
    );
    let sent = with_id.sign(
        &raw_key,
        br#"{"test": 2432232314}"#,
        1614265330,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
    );
    assert_eq!(sent[0].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let pairs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = header_list(&pairs);
    assert_eq!(
        with_id.verify(&[raw_key], &lookup, br#"{"test": 2432232314}"#, 1614265330),
        Ok(())
    );
    let no_id: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "x-id")
        .collect();
    assert_eq!(
        with_id.verify(
            &[raw_key],
            &header_list(&no_id),
            br#"{"test": 2432232314}"#,
            1614265330
        ),
        Err(SignatureError::MissingHeader("configured id header"))
    );
}
