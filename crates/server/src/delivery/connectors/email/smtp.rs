//! SMTP through lettre: `STARTTLS` (required, not opportunistic), TLS from the first byte, or a
//! plain connection; optional `AUTH` (PLAIN or LOGIN, after TLS). Connections are pooled (at
//! most `max_in_flight` kept open) and the pool is made on the first message, so building the
//! connector never connects.
//!
//! Replies decide retries: a 4xx reply (`451 try again later`, `452 mailbox full`) is retried, a
//! 5xx reply (`550 no such user`, `535 bad credentials`) fails the delivery; a connection, TLS or
//! network failure or a timeout is retried. Each mail's `Message-ID` is derived from the delivery
//! id, so a receiver can recognise the copy a retry may send.
//!
//! The SMTP host is configuration written by the operator (file only), so it is not subject to
//! the HTTP deliveries' SSRF policy.

use std::time::{Duration, Instant};

use lettre::message::{MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{EmailDestination, SmtpTls};

use super::{Composed, failed};
use crate::delivery::connectors::Attempt;
use crate::delivery::sender::AttemptReport;

/// The start of a certificate in a PEM file.
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Connections to the relay at most when `max_in_flight` is not set (relays limit connections
/// per client; a worker's default of 128 attempts in flight would open as many).
const DEFAULT_CONNECTIONS: usize = 10;

/// An SMTP relay.
pub struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    builder: AsyncSmtpTransportBuilder,
    transport: tokio::sync::OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
    /// One permit per connection: sends beyond it wait for a connection to come free (within
    /// the attempt's timeout) rather than opening more.
    connections: std::sync::Arc<tokio::sync::Semaphore>,
    max_connections: usize,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The builder holds the credentials: only the address is shown.
        f.debug_struct("Smtp")
            .field("to", &self.describe())
            .finish()
    }
}

impl Smtp {
    /// Checks the settings and reads `ca_file`.
    pub fn new(config: &EmailDestination) -> Result<Self, String> {
        let host = config
            .host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or("host is required for SMTP")?
            .to_owned();
        let port = config.smtp_port();
        let tls = config.smtp_tls();
        let connections = config
            .max_in_flight
            .unwrap_or(DEFAULT_CONNECTIONS)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(config.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(u32::try_from(connections).unwrap_or(u32::MAX))
                    .idle_timeout(Duration::from_secs(60)),
            );
        if tls != SmtpTls::None {
            let mut parameters = TlsParameters::builder(host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
                // lettre accepts a file without any certificate; that is a mistake here.
                let has_certificate = pem
                    .windows(CERTIFICATE_PEM.len())
                    .any(|w| w == CERTIFICATE_PEM);
                let certificate = Certificate::from_pem(&pem)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        has_certificate
                            .then_some(c)
                            .ok_or_else(|| "no `BEGIN CERTIFICATE` block".to_owned())
                    })
                    .map_err(|e| {
                        format!("ca_file `{}` is not a PEM certificate: {e}", path.display())
                    })?;
                parameters = parameters.add_root_certificate(certificate);
            }
            let parameters = parameters
                .build_rustls()
                .map_err(|e| format!("TLS settings for `{host}`: {e}"))?;
            builder = builder.tls(match tls {
                SmtpTls::Tls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        }
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        Ok(Self {
            host,
            port,
            tls,
            builder,
            transport: tokio::sync::OnceCell::new(),
            connections: std::sync::Arc::new(tokio::sync::Semaphore::new(connections)),
            max_connections: connections,
        })
    }

    /// `smtp://host:port (starttls)`: never the credentials.
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("smtp://{host}:{} ({})", self.port, self.tls.as_str())
    }

    /// Sends one mail and classifies the reply.
    pub async fn send(&self, attempt: &Attempt<'_>, mail: Composed) -> AttemptReport {
        let started = Instant::now();
        let message = match build_message(attempt.delivery_id, mail) {
            Ok(message) => message,
            Err(error) => return failed(AttemptOutcome::Permanent, error, started),
        };
        // The pool spawns its upkeep task, so it is made here, inside the runtime.
        let transport = self
            .transport
            .get_or_init(|| async { self.builder.clone().build() })
            .await
            .clone();
        // The send runs as its own task holding a connection permit: when the attempt times
        // out it is left to finish (each SMTP command has the same timeout) rather than cut off
        // mid-dialogue, which would leave a pooled connection out of step with the server.
        let connections = self.connections.clone();
        let sending = async move {
            let permit = connections.acquire_owned().await;
            tokio::spawn(async move {
                let _permit = permit;
                transport.send(message).await
            })
            .await
        };
        let result = match tokio::time::timeout(attempt.timeout, sending).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                return failed(
                    AttemptOutcome::Retryable { retry_after: None },
                    format!("SMTP send did not complete: {join}"),
                    started,
                );
            }
            Err(_) => {
                return failed(
                    AttemptOutcome::Retryable { retry_after: None },
                    format!(
                        "SMTP timed out after {:.1}s (waiting for one of {} connections, or for the server)",
                        attempt.timeout.as_secs_f64(),
                        self.max_connections,
                    ),
                    started,
                );
            }
        };
        match result {
            Ok(response) => {
                let reply = std::iter::once(response.code().to_string())
                    .chain(response.message().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" ");
                AttemptReport {
                    outcome: AttemptOutcome::Delivered,
                    status: None,
                    error: None,
                    headers: Vec::new(),
                    body_excerpt: reply.into_bytes(),
                    latency: started.elapsed(),
                }
            }
            Err(error) => {
                let outcome = classify(&error);
                failed(outcome, format!("SMTP {}", describe_error(&error)), started)
            }
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // lettre's pool spawns a clean-up task when dropped, which needs a runtime: outside
        // one (a process exiting) its connections are simply left to the operating system.
        if let Some(transport) = self.transport.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            std::mem::forget(transport);
        }
    }
}

/// Retryable for 4xx replies and anything that is not a reply; permanent for 5xx replies and
/// for what lettre refuses itself (no common authentication mechanism, an unusable address).
fn classify(error: &lettre::transport::smtp::Error) -> AttemptOutcome {
    if error.is_permanent() || error.is_client() {
        AttemptOutcome::Permanent
    } else {
        AttemptOutcome::Retryable { retry_after: None }
    }
}

/// The error with its causes, e.g. `permanent error (550): 5.1.1 no such user`.
fn describe_error(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error).and_then(std::error::Error::source);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The MIME message: text, HTML, or both as `multipart/alternative`.
fn build_message(delivery_id: &str, mail: Composed) -> Result<Message, String> {
    let domain = mail.from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(mail.from)
        .subject(mail.subject)
        .message_id(Some(format!("<{delivery_id}@{domain}>")));
    if let Some(reply_to) = mail.reply_to {
        builder = builder.reply_to(reply_to);
    }
    for mailbox in mail.to {
        builder = builder.to(mailbox);
    }
    for mailbox in mail.cc {
        builder = builder.cc(mailbox);
    }
    for mailbox in mail.bcc {
        builder = builder.bcc(mailbox);
    }
    let built = match (mail.text, mail.html) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        (None, Some(html)) => builder.singlepart(SinglePart::html(html)),
        (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
        (None, None) => return Err("the message is empty".into()),
    };
    built.map_err(|e| format!("the message could not be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> EmailDestination {
        toml::from_str(&format!(
            "id = \"mail\"\nhost = \"smtp.example.com\"\nfrom = \"a@example.com\"\n{extra}"
        ))
        .expect("valid")
    }

    #[test]
    fn describe_names_the_server_not_the_credentials() {
        let smtp = Smtp::new(&config("username = \"u\"\npassword = \"hunter2\"")).expect("valid");
        assert_eq!(smtp.describe(), "smtp://smtp.example.com:587 (starttls)");
        assert!(!format!("{smtp:?}").contains("hunter2"));
        let tls = Smtp::new(&config("tls = \"tls\"")).expect("valid");
        assert_eq!(tls.describe(), "smtp://smtp.example.com:465 (tls)");
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_a_configuration_error() {
        let error = Smtp::new(&config("ca_file = \"/nonexistent/ca.pem\"")).expect_err("missing");
        assert!(error.contains("ca_file `/nonexistent/ca.pem`"), "{error}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let error = Smtp::new(&config(&format!(
            "ca_file = {:?}",
            path.display().to_string()
        )))
        .expect_err("bad pem");
        assert!(error.contains("is not a PEM certificate"), "{error}");
    }

    #[test]
    fn messages_carry_both_parts_and_a_stable_id() {
        let mail = Composed {
            from: "Billing <billing@example.com>".parse().expect("valid"),
            reply_to: None,
            to: vec!["a@example.com".parse().expect("valid")],
            cc: Vec::new(),
            bcc: vec!["hidden@example.com".parse().expect("valid")],
            subject: "Hello".into(),
            text: Some("plain".into()),
            html: Some("<p>html</p>".into()),
        };
        let message = build_message("dlv_1", mail).expect("builds");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(text.contains("Message-ID: <dlv_1@example.com>"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("hidden@example.com"), "Bcc is not a header");
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(recipients, ["a@example.com", "hidden@example.com"]);
    }
}
