//! Property tests: no verifier or parser panics on arbitrary headers, bodies, URLs and clocks, and
//! every sign helper round-trips through its verifier while any change to the body is rejected.

use proptest::prelude::*;
use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};
use switchboard_signatures::standard_webhooks::{self as sw, AsymmetricSigningKey, SigningKey};
use switchboard_signatures::{
    HmacAlgorithm, SignatureError, discord, github, header_list, sendgrid, shopify, slack, stripe,
    twilio,
};

const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVHlIQo6YtPu2qUZx81PJKHlrIGk4+okM3T24gNzEyxCuf2x9OtLYrjrZiFKnVlN5NzrUJtnN2OwHh2M3krf7hw==";
const DISCORD_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

static V1A_KEY: std::sync::LazyLock<sw::PublicKey> =
    std::sync::LazyLock::new(|| AsymmetricSigningKey::from_seed(&[3; 32]).public_key());

/// Header values that are sometimes absent, sometimes arbitrary, and sometimes built from the
/// scheme's own syntax so that parsing gets past the first check.
fn header_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        any::<String>().prop_map(Some),
        "[tvs0-9a-fA-F=,. :+/_-]{0,120}".prop_map(Some),
        "(t=[0-9]{1,12},)?(v[01]=[0-9a-f]{0,70},?){0,3}".prop_map(Some),
        "(sha256|sha1|v0|v1|v1a)[=,][0-9a-zA-Z+/=]{0,140}".prop_map(Some),
        "[A-Za-z0-9+/]{0,96}={0,2}".prop_map(Some),
    ]
}

fn clock() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        1_600_000_000i64..1_800_000_000,
        any::<i64>(),
    ]
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(https?|HTTP|ftp)://([a-z]{1,3}(:[a-z]{0,2})?@)?(\\[[0-9a-f:]{0,6}\\]?|[a-z.]{0,10})(:[0-9a-z]{0,6})?(/[a-z?=&#%;]{0,12}){0,3}(\\?[a-zA-Z0-9=&%+]{0,30})?(#.{0,4})?",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[a-zA-Z0-9=&%+]{0,80}".prop_map(String::into_bytes),
    ]
}

proptest! {
    // Cheap (HMAC and parsing) properties; the Ed25519/P-256 ones below run fewer cases because
    // unoptimized curve arithmetic is slow in test builds.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hmac_verifiers_never_panic(
        a in header_value(),
        b in header_value(),
        c in header_value(),
        body in body(),
        now in clock(),
        tolerance in any::<i64>(),
    ) {
        let secrets = ["s3cret", "whsec_other"];
        let _ = github::verify(&secrets, a.as_deref(), &body);
        let _ = github::verify_sha1(&secrets, a.as_deref(), &body);
        let _ = shopify::verify(&secrets, a.as_deref(), &body);
        let _ = stripe::verify(&secrets, a.as_deref(), &body, now, Some(tolerance));
        let _ = stripe::verify(&secrets, a.as_deref(), &body, now, None);
        let _ = slack::verify(
            &secrets,
            slack::Headers { timestamp: a.as_deref(), signature: b.as_deref() },
            &body,
            now,
            tolerance,
        );
        let key = SigningKey::from_bytes(b"0123456789abcdef01234567".to_vec());
        let headers = sw::Headers { id: a.as_deref(), timestamp: b.as_deref(), signature: c.as_deref() };
        let _ = sw::verify(&[key], headers, &body, now, tolerance);
        let _ = sw::verify_asymmetric(std::slice::from_ref(&*V1A_KEY), headers, &body, now, tolerance);
    }

    #[test]
    fn twilio_never_panics(
        url in url(),
        signature in header_value(),
        settings in header_value(),
        content_type in prop_oneof![
            Just(None),
            Just(Some("application/x-www-form-urlencoded".to_owned())),
            Just(Some("application/json".to_owned())),
            any::<String>().prop_map(Some),
        ],
        body in body(),
    ) {
        let headers = twilio::Headers {
            signature: signature.as_deref(),
            signature_settings: settings.as_deref(),
            content_type: content_type.as_deref(),
        };
        let _ = twilio::verify(&["12345"], &url, headers, &body);
        let _ = twilio::parse_signature_settings(settings.as_deref());
        let _ = twilio::url_with_body_hash(&url, &body);
        let _ = twilio::sign_form(b"12345", &url, &body, twilio::Algorithm::HmacSha256);
    }

    #[test]
    fn generic_hmac_never_panics(
        template in prop_oneof![any::<String>(), "[a-z:.{}]{0,6}\\{(body|timestamp|id|x)\\}[a-z:.{}]{0,6}"],
        signature_header in prop_oneof![any::<String>(), "[a-zA-Z-]{1,12}"],
        prefix in proptest::option::of("[a-z0-9=,]{0,6}"),
        tolerance in proptest::option::of(any::<i64>()),
        sig in header_value(),
        ts in header_value(),
        id in header_value(),
        body in body(),
        now in clock(),
    ) {
        let config = GenericHmacConfig {
            algorithm: HmacAlgorithm::Sha512,
            encoding: Encoding::Base64,
            signature_header,
            prefix,
            template,
            timestamp_header: Some("x-ts".into()),
            id_header: Some("x-id".into()),
            tolerance_secs: tolerance,
        };
        if let Ok(generic) = GenericHmac::new(config) {
            let name = generic.signature_header().to_owned();
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            if let Some(sig) = &sig { pairs.push((&name, sig)); }
            if let Some(ts) = &ts { pairs.push(("x-ts", ts)); }
            if let Some(id) = &id { pairs.push(("x-id", id)); }
            let _ = generic.verify(&["k"], &header_list(&pairs), &body, now);
            let _ = generic.sign(b"k", &body, now, id.as_deref().unwrap_or_default());
        }
    }

    #[test]
    fn sign_then_verify_round_trips(
        secret in "[ -~]{1,40}",
        body in body(),
        ts in 1_000_000_000i64..2_000_000_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let s = secret.as_bytes();
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(0);
        } else {
            let i = flip.index(changed.len());
            changed[i] ^= 0x20;
        }
        let ts_s = ts.to_string();

        let sig = github::sign(s, &body);
        prop_assert_eq!(github::verify(&[s], Some(&sig), &body), Ok(()));
        prop_assert_eq!(github::verify(&[s], Some(&sig), &changed), Err(SignatureError::NoMatch));

        let sig = shopify::sign(s, &body);
        prop_assert_eq!(shopify::verify(&[s], Some(&sig), &body), Ok(()));
        prop_assert_eq!(shopify::verify(&[s], Some(&sig), &changed), Err(SignatureError::NoMatch));

        let header = stripe::sign(&[s], ts, &body);
        prop_assert_eq!(stripe::verify(&[s], Some(&header), &body, ts, Some(300)), Ok(()));
        prop_assert_eq!(
            stripe::verify(&[s], Some(&header), &changed, ts, Some(300)),
            Err(SignatureError::NoMatch)
        );

        let sig = slack::sign(s, &ts_s, &body);
        let headers = slack::Headers { timestamp: Some(&ts_s), signature: Some(&sig) };
        prop_assert_eq!(slack::verify(&[s], headers, &body, ts, 300), Ok(()));
        prop_assert_eq!(slack::verify(&[s], headers, &changed, ts, 300), Err(SignatureError::NoMatch));

        let key = SigningKey::from_bytes(s.to_vec());
        let sig = key.sign("msg_1", ts, &body);
        let headers = sw::Headers { id: Some("msg_1"), timestamp: Some(&ts_s), signature: Some(&sig) };
        prop_assert_eq!(sw::verify(std::slice::from_ref(&key), headers, &body, ts, 300), Ok(()));
        prop_assert_eq!(
            sw::verify(std::slice::from_ref(&key), headers, &changed, ts, 300),
            Err(SignatureError::NoMatch)
        );

        // Twilio: JSON-style body covered by bodySHA256, over a URL with a query.
        let signed = twilio::sign_with_body_hash(s, "https://example.com/hook?x=1", &body, twilio::Algorithm::HmacSha1);
        let headers = twilio::Headers {
            signature: Some(&signed.signature),
            signature_settings: None,
            content_type: Some("application/json"),
        };
        prop_assert_eq!(twilio::verify(&[s], &signed.url, headers, &body), Ok(()));
        prop_assert_eq!(
            twilio::verify(&[s], &signed.url, headers, &changed),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn twilio_form_round_trips(
        params in proptest::collection::vec(("[A-Za-z]{1,6}", "[ -~é✓]{0,10}"), 0..8),
        sha256 in any::<bool>(),
    ) {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            serializer.append_pair(k, v);
        }
        let body = serializer.finish();
        let algorithm = if sha256 { twilio::Algorithm::HmacSha256 } else { twilio::Algorithm::HmacSha1 };
        let url = "https://example.com/sms?a=1";
        let sig = twilio::sign_form(b"tok", url, body.as_bytes(), algorithm);
        prop_assert_eq!(&sig, &twilio::compute_signature(b"tok", url, &params, algorithm));
        let settings = format!("key=k1,algorithm={}", algorithm.name());
        let headers = twilio::Headers {
            signature: Some(&sig),
            signature_settings: Some(&settings),
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
        };
        prop_assert_eq!(twilio::verify(&["tok"], url, headers, body.as_bytes()), Ok(()));
        prop_assert_eq!(twilio::verify(&["tok"], "https://example.com:444/sms?a=1", headers, body.as_bytes()), Ok(()));
        // Parameter order on the wire does not matter.
        let mut reversed = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().rev() {
            reversed.append_pair(k, v);
        }
        prop_assert_eq!(twilio::verify(&["tok"], url, headers, reversed.finish().as_bytes()), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn public_key_verifiers_never_panic(
        a in header_value(),
        b in header_value(),
        der in proptest::collection::vec(any::<u8>(), 0..80),
        body in body(),
        now in clock(),
        tolerance in proptest::option::of(any::<i64>()),
    ) {
        use base64::Engine as _;
        let keys = [sendgrid::PublicKey::from_base64_der(SENDGRID_KEY).expect("key")];
        let _ = sendgrid::verify(
            &keys,
            sendgrid::Headers { signature: a.as_deref(), timestamp: b.as_deref() },
            &body,
            now,
            tolerance,
        );
        // Arbitrary DER bytes behind valid base64 reach the DER parser.
        let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
        let _ = sendgrid::verify(
            &keys,
            sendgrid::Headers { signature: Some(&encoded), timestamp: Some("1700000000") },
            &body,
            now,
            tolerance,
        );
        let _ = sendgrid::PublicKey::from_base64_der(&encoded);
        let _ = sendgrid::PublicKey::from_der(&der);
        let key = discord::PublicKey::from_hex(DISCORD_KEY).expect("key");
        let _ = discord::verify(
            &key,
            discord::Headers { signature: a.as_deref(), timestamp: b.as_deref() },
            &body,
            now,
            tolerance,
        );
        let _ = discord::PublicKey::from_hex(a.as_deref().unwrap_or_default());
        let _ = sw::PublicKey::from_secret(a.as_deref().unwrap_or_default());
        let _ = AsymmetricSigningKey::from_secret(a.as_deref().unwrap_or_default());
        let _ = SigningKey::from_secret(a.as_deref().unwrap_or_default());
    }

    #[test]
    fn ed25519_sign_then_verify_round_trips(
        secret in "[ -~]{1,40}",
        body in body(),
        ts in 1_000_000_000i64..2_000_000_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let s = secret.as_bytes();
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(0);
        } else {
            let i = flip.index(changed.len());
            changed[i] ^= 0x20;
        }
        let ts_s = ts.to_string();

        let mut seed = [0u8; 32];
        for (i, b) in s.iter().enumerate() { seed[i % 32] ^= b; }
        let signer = AsymmetricSigningKey::from_seed(&seed);
        let sig = signer.sign("msg_1", ts, &body);
        let headers = sw::Headers { id: Some("msg_1"), timestamp: Some(&ts_s), signature: Some(&sig) };
        prop_assert_eq!(sw::verify_asymmetric(&[signer.public_key()], headers, &body, ts, 300), Ok(()));
        prop_assert_eq!(
            sw::verify_asymmetric(&[signer.public_key()], headers, &changed, ts, 300),
            Err(SignatureError::NoMatch)
        );

        let (public, sig) = discord::sign(&seed, &ts_s, &body);
        let headers = discord::Headers { signature: Some(&sig), timestamp: Some(&ts_s) };
        prop_assert_eq!(discord::verify(&public, headers, &body, ts, Some(5)), Ok(()));
        prop_assert_eq!(discord::verify(&public, headers, &changed, ts, None), Err(SignatureError::NoMatch));

    }
}
