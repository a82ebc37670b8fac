//! `kind = "sms"` end to end: webhook in, a route transform, Twilio's Messages API out, against
//! a local stand-in that behaves like Twilio (same path, HTTP basic auth with the account SID
//! and auth token, form-encoded parameters, `201` with a message resource, and Twilio's error
//! JSON `{"code", "message", "more_info", "status"}` for refusals).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;
use switchboard_core::config::{DestinationConfig, RouteConfig};

use crate::support::{TestServer, config_to, schedule_ms};

/// The account of the tests.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token.
pub const AUTH_TOKEN: &str = "twilio-auth-token-not-for-logs";

/// Twilio's test number for an invalid `To` (error 21211).
pub const INVALID: &str = "+15005550001";
/// Answered `429` with `Retry-After: 1` the first time, then accepted.
pub const RATE_LIMITED: &str = "+15005550429";
/// Answered `500` the first time, then accepted.
pub const FLAKY: &str = "+15005550500";

/// One request Twilio received.
#[derive(Debug, Clone)]
pub struct TwilioCall {
    /// The account SID of the path.
    pub account: String,
    /// `authorization` header.
    pub authorization: String,
    /// Form parameters in order.
    pub form: Vec<(String, String)>,
}

impl TwilioCall {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A stand-in for `api.twilio.com` holding one account.
pub struct FakeTwilio {
    /// Base URL, for `base_url`.
    pub base: String,
    calls: Arc<Mutex<Vec<TwilioCall>>>,
}

fn twilio_error(status: u16, code: u32, message: &str) -> axum::response::Response {
    axum::response::IntoResponse::into_response((
        StatusCode::from_u16(status).expect("status"),
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })),
    ))
}

impl FakeTwilio {
    /// Starts the stand-in for the tests' account on a loopback port.
    pub async fn start() -> Self {
        Self::start_for(ACCOUNT_SID, AUTH_TOKEN).await
    }

    /// Starts the stand-in for the account `sid` with `token`.
    pub async fn start_for(sid: &str, token: &str) -> Self {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
        );
        let sid = sid.to_owned();
        let calls: Arc<Mutex<Vec<TwilioCall>>> = Arc::default();
        let recorded = calls.clone();
        let app = axum::Router::new().route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            axum::routing::post(
                move |axum::extract::Path(account): axum::extract::Path<String>,
                      headers: HeaderMap,
                      body: axum::body::Bytes| {
                    let recorded = recorded.clone();
                    let (sid, expected) = (sid.clone(), expected.clone());
                    async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let call = TwilioCall {
                            account: account.clone(),
                            authorization: header("authorization"),
                            form: url::form_urlencoded::parse(&body).into_owned().collect(),
                        };
                        let earlier = {
                            let mut calls = recorded.lock().expect("lock");
                            let to = call.get("To").map(str::to_owned);
                            let earlier = calls
                                .iter()
                                .filter(|c| c.get("To").map(str::to_owned) == to)
                                .count();
                            calls.push(call.clone());
                            earlier
                        };
                        if account != sid || call.authorization != expected {
                            let mut response = twilio_error(401, 20003, "Authenticate");
                            response.headers_mut().insert(
                                "www-authenticate",
                                "Basic realm=\"Twilio API\"".parse().expect("header"),
                            );
                            return response;
                        }
                        if !header("content-type").starts_with("application/x-www-form-urlencoded")
                        {
                            return twilio_error(400, 21600, "Unsupported content type");
                        }
                        let Some(to) = call.get("To") else {
                            return twilio_error(400, 21604, "A 'To' phone number is required.");
                        };
                        if call.get("From").is_none() && call.get("MessagingServiceSid").is_none()
                        {
                            return twilio_error(400, 21603, "A 'From' phone number is required.");
                        }
                        if call.get("Body").is_none() && call.get("MediaUrl").is_none() {
                            return twilio_error(400, 21602, "Message body is required.");
                        }
                        match to {
                            INVALID => {
                                return twilio_error(
                                    400,
                                    21211,
                                    &format!("The 'To' number {to} is not a valid phone number."),
                                );
                            }
                            RATE_LIMITED if earlier == 0 => {
                                let mut response = twilio_error(429, 20429, "Too Many Requests");
                                response
                                    .headers_mut()
                                    .insert("retry-after", "1".parse().expect("header"));
                                return response;
                            }
                            FLAKY if earlier == 0 => {
                                return twilio_error(500, 20500, "Internal Server Error");
                            }
                            _ => {}
                        }
                        let sid = format!("SM{:032x}", rand::random::<u128>());
                        axum::response::IntoResponse::into_response((
                            StatusCode::CREATED,
                            axum::Json(json!({
                                "account_sid": account,
                                "api_version": "2010-04-01",
                                "body": call.get("Body"),
                                "direction": "outbound-api",
                                "from": call.get("From"),
                                "messaging_service_sid": call.get("MessagingServiceSid"),
                                "num_segments": "1",
                                "sid": sid,
                                "status": "queued",
                                "to": to,
                                "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
                            })),
                        ))
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, calls }
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<TwilioCall> {
        self.calls.lock().expect("lock").clone()
    }

    /// How many requests went to each `To`.
    pub fn per_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for call in self.calls() {
            *counts
                .entry(call.get("To").unwrap_or("").to_owned())
                .or_default() += 1;
        }
        counts
    }
}

/// An SMS destination `sms` on the stand-in; `extra` adds or replaces settings.
pub fn sms_destination(base: &str, extra: Value) -> DestinationConfig {
    let mut settings = json!({
        "kind": "sms",
        "id": "sms",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": "+15017122661",
        "to": "{{ .body.phone }}",
        "base_url": base,
        "timeout": "5s",
        "retry": serde_json::to_value(schedule_ms(&[50, 50])).expect("retry"),
    });
    if let (Some(settings), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            settings.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(settings).expect("sms destination")
}

fn config_with(
    destination: DestinationConfig,
    transform: Option<&str>,
) -> switchboard_core::Config {
    let mut config = config_to("http://127.0.0.1:9/unused", schedule_ms(&[50]));
    config.destinations = vec![destination];
    config.routes = vec![RouteConfig {
        id: Some("texts".into()),
        source: "src".into(),
        destination: "sms".into(),
        filter: None,
        transform: transform.map(str::to_owned),
        enabled: true,
    }];
    config
}

/// The transform's `body` is the text, `to` comes from the template, and Twilio gets the
/// account's basic auth and the form it documents. The token shows nowhere.
#[tokio::test]
async fn sms_through_twilio_carries_the_templated_text() {
    let twilio = FakeTwilio::start().await;
    let server = TestServer::start(config_with(
        sms_destination(
            &twilio.base,
            json!({"status_callback": "https://hooks.example.com/in/twilio"}),
        ),
        Some(r#"{body: "Payment of \(.body.amount) failed for \(.body.customer)"}"#),
    ))
    .await;
    let event = server
        .ingest_ok(
            "src",
            r#"{"phone": "+15558675310", "amount": "$49.00", "customer": "Jenny"}"#,
        )
        .await;
    let delivered = server
        .wait_delivery(&event, "texted", |d| d.status == DeliveryStatus::Succeeded)
        .await;
    assert_eq!(delivered.attempts, 1);
    let calls = twilio.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.account, ACCOUNT_SID);
    assert_eq!(call.get("To"), Some("+15558675310"));
    assert_eq!(call.get("From"), Some("+15017122661"));
    assert_eq!(call.get("Body"), Some("Payment of $49.00 failed for Jenny"));
    assert_eq!(
        call.get("StatusCallback"),
        Some("https://hooks.example.com/in/twilio")
    );
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].status_code, Some(201));
    assert_eq!(
        attempts[0].request_url,
        format!(
            "twilio {}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            twilio.base
        )
    );
    let answer: Value = serde_json::from_slice(&attempts[0].response_body).expect("json");
    assert_eq!(answer["status"], "queued");

    let shown = server.api().get("/v1/destinations/sms").await;
    let shown = shown.ok(200);
    assert_eq!(shown["kind"], "sms");
    assert!(
        !shown.to_string().contains(AUTH_TOKEN),
        "the auth token is not shown: {shown}"
    );
    assert!(
        !attempts[0].request_url.contains(AUTH_TOKEN),
        "nor recorded with attempts"
    );
    server.stop().await;
}

/// Twilio's refusals: an invalid number (21211) fails at once with Twilio's code and message;
/// `429` is retried after its `Retry-After`; `500` is retried.
#[tokio::test]
async fn sms_twilio_errors_fail_or_retry() {
    let twilio = FakeTwilio::start().await;
    let server = TestServer::start(config_with(
        sms_destination(&twilio.base, json!({"body": "Payment failed"})),
        None,
    ))
    .await;
    let invalid = server
        .ingest_ok("src", json!({"phone": INVALID}).to_string())
        .await;
    let limited = server
        .ingest_ok("src", json!({"phone": RATE_LIMITED}).to_string())
        .await;
    let flaky = server
        .ingest_ok("src", json!({"phone": FLAKY}).to_string())
        .await;

    let failed = server
        .wait_delivery(&invalid, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "an invalid number is not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("Twilio error 21211")
            && error.contains("The 'To' number +15005550001 is not a valid phone number."),
        "{error}"
    );

    let delivered = server
        .wait_delivery(&limited, "delivered after the rate limit", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivered.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts[0].outcome, "retryable");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("Twilio error 20429"),
        "{:?}",
        attempts[0].error
    );
    let waited = attempts[1].started_at - attempts[0].started_at;
    assert!(waited >= 900, "Retry-After: 1 was honoured ({waited} ms)");

    let recovered = server
        .wait_delivery(&flaky, "delivered after the 500", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(recovered.attempts, 2);
    // The plain event body was not sent: the `body` template was.
    assert!(
        twilio
            .calls()
            .iter()
            .all(|c| c.get("Body") == Some("Payment failed"))
    );
    server.stop().await;
}

/// Each recipient gets one text: a retry after one recipient's failure does not text the
/// others again.
#[tokio::test]
async fn sms_several_recipients_are_texted_once_each() {
    let twilio = FakeTwilio::start().await;
    let server = TestServer::start(config_with(
        sms_destination(
            &twilio.base,
            json!({"to": ["+15558675310", "{{ .body.phone }}"]}),
        ),
        Some(r#"{body: "Invoice \(.body.invoice) failed"}"#),
    ))
    .await;
    let event = server
        .ingest_ok(
            "src",
            json!({"phone": FLAKY, "invoice": "in_1"}).to_string(),
        )
        .await;
    let delivered = server
        .wait_delivery(&event, "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivered.attempts, 2);
    let counts = twilio.per_recipient();
    assert_eq!(counts.get("+15558675310"), Some(&1), "{counts:?}");
    assert_eq!(counts.get(FLAKY), Some(&2), "{counts:?}");
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    let error = attempts[0].error.as_deref().unwrap_or("");
    assert!(
        error.contains("to +15005550500: Twilio error 20500"),
        "{error}"
    );
    server.stop().await;
}
