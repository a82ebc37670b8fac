//! Verification cost per scheme: one typical request with a 1 KiB body, verified over and over.
//!
//! Run with `cargo bench -p switchboard-signatures --bench verify`. Each scheme is calibrated to
//! about half a second of work, split into five samples; the table shows the median and the best
//! sample in nanoseconds per verification. Numbers from a busy machine are upper bounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchboard_signatures::hmac::{Encoding, GenericHmac, GenericHmacConfig};
use switchboard_signatures::standard_webhooks::{self as sw, AsymmetricSigningKey, SigningKey};
use switchboard_signatures::{
    HmacAlgorithm, discord, github, header_list, sendgrid, shopify, slack, stripe, twilio,
};

const BODY_LEN: usize = 1024;
const NOW: i64 = 1_700_000_000;
const TARGET: Duration = Duration::from_millis(500);
const SAMPLES: u32 = 5;

/// A P-256 test key (PKCS#8 DER, base64); never use it for anything real.
const SENDGRID_PRIVATE_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEtu9t+611S6m5WMPpRwhjkoLv+pZN0MPYZU+i/cYJfShRANCAARUeUhCjpi0+7apRnHzU8koeWsgaTj6iQzdPbiA3MTLEK5/bH060tiuOtmIUqdWU3k3OtQm2c3Y7AeHYzeSt/uH";

/// A JSON body of exactly `BODY_LEN` bytes.
fn json_body() -> Vec<u8> {
    let head = r#"{"id":"evt_1PzQ8bLkdIwHu7ixQ3xYvS2T","type":"invoice.paid","data":{"note":""#;
    let tail = r#""}}"#;
    let pad = BODY_LEN - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
}

/// A form body of exactly `BODY_LEN` bytes with typical Twilio SMS fields.
fn form_body() -> Vec<u8> {
    let fields = "ToCountry=US&ToState=CA&SmsMessageSid=SM79599ef7537bb4490a1825ec42fba7e0&NumMedia=0\
        &ToCity=SAN+FRANCISCO&FromZip=94105&SmsSid=SM79599ef7537bb4490a1825ec42fba7e0&FromState=CA\
        &SmsStatus=received&FromCity=SAN+FRANCISCO&FromCountry=US&To=%2B14155550100\
        &MessagingServiceSid=MG9752274e9e519418a7406176694466fa&ToZip=94107&NumSegments=1\
        &MessageSid=SM79599ef7537bb4490a1825ec42fba7e0&AccountSid=AC5ef872f6da5a21de157d80997a64bd33\
        &From=%2B14155550199&ApiVersion=2010-04-01&Body=";
    let pad = BODY_LEN - fields.len();
    format!("{fields}{}", "Hello+world+".repeat(pad / 12 + 1))
        .into_bytes()
        .into_iter()
        .take(BODY_LEN)
        .collect()
}

/// Runs `f` in batches: calibrates the count to about `TARGET`, then returns (median, best) in
/// nanoseconds per call and the number of calls timed.
fn measure(mut f: impl FnMut()) -> (f64, f64, u64) {
    let mut n: u64 = 1;
    let per_call = loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_millis(20) {
            break elapsed.as_secs_f64() / n as f64;
        }
        n *= 2;
    };
    let per_sample = ((TARGET.as_secs_f64() / f64::from(SAMPLES)) / per_call).ceil() as u64;
    let per_sample = per_sample.max(1);
    let mut results: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_sample {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / per_sample as f64
        })
        .collect();
    results.sort_by(f64::total_cmp);
    (
        results[results.len() / 2],
        results[0],
        per_sample * u64::from(SAMPLES),
    )
}

fn main() {
    let json = json_body();
    let form = form_body();
    assert_eq!(json.len(), BODY_LEN);
    assert_eq!(form.len(), BODY_LEN);
    let ts = NOW.to_string();
    let mut rows: Vec<(&str, (f64, f64, u64))> = Vec::new();

    // GitHub: X-Hub-Signature-256 over the body.
    let secret = "It's a Secret to Everybody";
    let sig = github::sign(secret.as_bytes(), &json);
    rows.push((
        "github",
        measure(|| {
            let r = github::verify(black_box(&[secret]), black_box(Some(sig.as_str())), &json);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Stripe: t=…,v1=… over `{t}.{body}`.
    let secret = "whsec_test_secret";
    let header = stripe::sign(&[secret], NOW, &json);
    rows.push((
        "stripe",
        measure(|| {
            let r = stripe::verify(
                black_box(&[secret]),
                black_box(Some(header.as_str())),
                &json,
                NOW,
                Some(300),
            );
            assert!(black_box(r).is_ok());
        }),
    ));

    // Slack: v0= over `v0:{ts}:{body}`.
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let sig = slack::sign(secret.as_bytes(), &ts, &json);
    rows.push((
        "slack",
        measure(|| {
            let headers = slack::Headers {
                timestamp: Some(black_box(ts.as_str())),
                signature: Some(black_box(sig.as_str())),
            };
            let r = slack::verify(black_box(&[secret]), headers, &json, NOW, 300);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Shopify: base64 HMAC-SHA256 over the body.
    let sig = shopify::sign(b"hush", &json);
    rows.push((
        "shopify",
        measure(|| {
            let r = shopify::verify(black_box(&["hush"]), black_box(Some(sig.as_str())), &json);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Twilio, form body: HMAC-SHA1 over the URL and the sorted decoded parameters.
    let url = "https://example.com/twilio/sms?foo=1&bar=2";
    let sig = twilio::sign_form(b"12345", url, &form, twilio::Algorithm::HmacSha1);
    rows.push((
        "twilio (form)",
        measure(|| {
            let headers = twilio::Headers {
                signature: Some(black_box(sig.as_str())),
                signature_settings: None,
                content_type: Some("application/x-www-form-urlencoded"),
            };
            let r = twilio::verify(black_box(&["12345"]), black_box(url), headers, &form);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Twilio, JSON body: `bodySHA256` in the URL, HMAC-SHA1 over the URL.
    let signed = twilio::sign_with_body_hash(b"12345", url, &json, twilio::Algorithm::HmacSha1);
    rows.push((
        "twilio (JSON, bodySHA256)",
        measure(|| {
            let headers = twilio::Headers {
                signature: Some(black_box(signed.signature.as_str())),
                signature_settings: None,
                content_type: Some("application/json"),
            };
            let r = twilio::verify(
                black_box(&["12345"]),
                black_box(&signed.url),
                headers,
                &json,
            );
            assert!(black_box(r).is_ok());
        }),
    ));

    // SendGrid: ECDSA P-256 over `{ts}{body}`.
    let (public, sig) = sendgrid::sign(SENDGRID_PRIVATE_KEY, &ts, &json).expect("test key signs");
    let keys = [sendgrid::PublicKey::from_base64_der(&public).expect("public key")];
    rows.push((
        "sendgrid (ECDSA P-256)",
        measure(|| {
            let headers = sendgrid::Headers {
                signature: Some(black_box(sig.as_str())),
                timestamp: Some(black_box(ts.as_str())),
            };
            let r = sendgrid::verify(black_box(&keys), headers, &json, NOW, Some(300));
            assert!(black_box(r).is_ok());
        }),
    ));

    // Standard Webhooks v1: HMAC-SHA256 over `{id}.{ts}.{body}`.
    let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let sig = key.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW, &json);
    let keys = [key];
    rows.push((
        "standard-webhooks v1",
        measure(|| {
            let headers = sw::Headers {
                id: Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
                timestamp: Some(black_box(ts.as_str())),
                signature: Some(black_box(sig.as_str())),
            };
            let r = sw::verify(black_box(&keys), headers, &json, NOW, 300);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Standard Webhooks v1a: Ed25519 over `{id}.{ts}.{body}`.
    let signer = AsymmetricSigningKey::from_seed(&[7; 32]);
    let sig = signer.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW, &json);
    let keys = [signer.public_key()];
    rows.push((
        "standard-webhooks v1a (Ed25519)",
        measure(|| {
            let headers = sw::Headers {
                id: Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
                timestamp: Some(black_box(ts.as_str())),
                signature: Some(black_box(sig.as_str())),
            };
            let r = sw::verify_asymmetric(black_box(&keys), headers, &json, NOW, 300);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Discord: Ed25519 over `{ts}{body}`, hex.
    let (key, sig) = discord::sign(&[9; 32], &ts, &json);
    rows.push((
        "discord (Ed25519)",
        measure(|| {
            let headers = discord::Headers {
                signature: Some(black_box(sig.as_str())),
                timestamp: Some(black_box(ts.as_str())),
            };
            let r = discord::verify(black_box(&key), headers, &json, NOW, None);
            assert!(black_box(r).is_ok());
        }),
    ));

    // Generic HMAC-SHA256: `sha256=<hex>` over `{timestamp}.{body}` with a timestamp header.
    let generic = GenericHmac::new(GenericHmacConfig {
        algorithm: HmacAlgorithm::Sha256,
        encoding: Encoding::Hex,
        signature_header: "X-Signature".into(),
        prefix: Some("sha256=".into()),
        template: "{timestamp}.{body}".into(),
        timestamp_header: Some("X-Timestamp".into()),
        id_header: None,
        tolerance_secs: Some(300),
    })
    .expect("valid config");
    let signed = generic.sign(b"k", &json, NOW, "");
    let pairs: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let headers = header_list(&pairs);
    rows.push((
        "hmac (generic, sha256)",
        measure(|| {
            let r = generic.verify(black_box(&["k"]), &headers, &json, NOW);
            assert!(black_box(r).is_ok());
        }),
    ));

    println!("verification cost, {BODY_LEN}-byte body, one valid request per scheme");
    println!();
    println!("| scheme | ns/verify (median) | best sample | verifications |");
    println!("|---|---:|---:|---:|");
    for (name, (median, best, count)) in rows {
        println!("| {name} | {median:.0} | {best:.0} | {count} |");
    }
}
