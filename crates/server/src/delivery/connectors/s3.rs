//! S3 (and S3-compatible stores: MinIO, Ceph, R2…): events archived as objects.
//!
//! - `json`: one `PUT` per delivery; the object is the delivered JSON body as is. Its key is the
//!   rendered `key` template (a key ending in `/` gets `<delivery id>.json`), so a retry
//!   overwrites the same object.
//! - `jsonl_gzip`: deliveries whose keys render to the same prefix join an open batch; the batch
//!   is uploaded as `<prefix><batch id>.jsonl.gz` (one JSON line per delivery, gzip) once it
//!   holds `batch_max_events` events or `batch_max_bytes` bytes, or `batch_max_wait` after its
//!   first event. Every delivery of the batch waits for that upload and reports its result, so a
//!   delivery succeeds only once the object holding it is stored. A failed upload fails all of
//!   them (each retries on its own schedule and joins a later batch).
//!
//! Requests are signed with SigV4 in the `Authorization` header ([`super::sigv4`]), covering the
//! payload's SHA-256. The endpoint is the operator's configuration, like a database URL, so the
//! connector uses its own client and the SSRF policy for webhook URLs does not apply to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::de::IgnoredAny;
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{S3_UPLOAD_MARGIN, S3Destination, S3Format};
use tokio::sync::oneshot;

use super::sigv4::{self, Credentials};
use super::{Attempt, Connector};
use crate::delivery::sender::{AttemptReport, read_report, report_error};
use crate::template::TemplateSet;

/// How much of an error answer is kept.
const EXCERPT_LIMIT: usize = 16 * 1024;

/// A configured S3 destination.
pub struct S3 {
    bucket: Arc<Bucket>,
    templates: TemplateSet,
    format: S3Format,
    batcher: Option<Arc<Batcher>>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("to", &self.bucket.describe)
            .field("format", &self.format)
            .finish()
    }
}

/// Where objects go and how requests are signed.
struct Bucket {
    client: reqwest::Client,
    /// `…/bucket/` (path style) or `bucket.host/…/`: object URLs are this plus the encoded key.
    base: url::Url,
    name: String,
    region: String,
    credentials: Credentials,
    describe: String,
}

impl S3 {
    /// Checks and keeps the settings; no I/O (the client connects on first use).
    pub fn new(config: &S3Destination) -> Result<Self, String> {
        let endpoint = url::Url::parse(&config.endpoint_url())
            .map_err(|e| format!("endpoint is not a valid URL: {e}"))?;
        let base = base_url(endpoint, &config.bucket, config.uses_path_style())?;
        let mut templates = TemplateSet::new();
        templates.add("key", config.key_template())?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let bucket = Arc::new(Bucket {
            client,
            describe: format!("s3 {base}"),
            base,
            name: config.bucket.clone(),
            region: config.region.clone(),
            credentials: Credentials {
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.clone(),
                session_token: config.session_token.clone(),
            },
        });
        let batcher = match config.format {
            S3Format::Json => None,
            S3Format::JsonlGzip => Some(Arc::new(Batcher {
                destination: config.id.clone(),
                bucket: bucket.clone(),
                max_events: config.batch_max_events.max(1),
                max_bytes: config.batch_max_bytes.max(1),
                max_wait: config.batch_max_wait,
                // The first delivery of a batch waits up to `max_wait`, then for the upload; the
                // margin keeps the upload inside every waiting attempt's timeout.
                upload_timeout: config
                    .timeout
                    .saturating_sub(config.batch_max_wait)
                    .saturating_sub(S3_UPLOAD_MARGIN / 2)
                    .max(Duration::from_secs(1)),
                open: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            })),
        };
        Ok(Self {
            bucket,
            templates,
            format: config.format,
            batcher,
        })
    }
}

/// The URL objects are under: path style `endpoint/bucket/`, virtual-hosted
/// `scheme://bucket.host/…/`.
fn base_url(mut endpoint: url::Url, bucket: &str, path_style: bool) -> Result<url::Url, String> {
    let host = endpoint
        .host_str()
        .ok_or("endpoint has no host")?
        .to_owned();
    let path = endpoint.path().trim_end_matches('/').to_owned();
    if path_style {
        endpoint.set_path(&format!("{path}/{bucket}/"));
    } else {
        endpoint
            .set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|e| format!("bucket `{bucket}` cannot be used in a host name: {e}"))?;
        endpoint.set_path(&format!("{path}/"));
    }
    endpoint.set_query(None);
    endpoint.set_fragment(None);
    Ok(endpoint)
}

/// Checks a rendered object key: S3 accepts almost anything, but a key must stay inside the
/// bucket's URL and be readable back.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the object key is empty".into());
    }
    if key.len() > 1024 {
        return Err(format!(
            "the object key is {} bytes long; S3 allows 1024",
            key.len()
        ));
    }
    if key.starts_with('/') {
        return Err(format!("the object key `{key}` starts with `/`"));
    }
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!("the object key `{key}` has a `.` or `..` segment"));
    }
    if key.chars().any(char::is_control) {
        return Err(format!(
            "the object key {key:?} contains control characters"
        ));
    }
    Ok(())
}

/// What an upload ended with, shared by every delivery of a batch.
#[derive(Debug, Clone)]
struct Upload {
    outcome: AttemptOutcome,
    status: Option<u16>,
    error: Option<String>,
    headers: Vec<(String, String)>,
    body_excerpt: Vec<u8>,
}

impl Upload {
    fn from_report(report: AttemptReport) -> Self {
        Self {
            outcome: report.outcome,
            status: report.status,
            error: report.error,
            headers: report.headers,
            body_excerpt: report.body_excerpt,
        }
    }

    fn report(self, started: Instant) -> AttemptReport {
        AttemptReport {
            outcome: self.outcome,
            status: self.status,
            error: self.error,
            headers: self.headers,
            body_excerpt: self.body_excerpt,
            latency: started.elapsed(),
        }
    }
}

fn failure(outcome: AttemptOutcome, error: String, started: Instant) -> AttemptReport {
    AttemptReport {
        outcome,
        status: None,
        error: Some(error),
        headers: Vec::new(),
        body_excerpt: Vec::new(),
        latency: started.elapsed(),
    }
}

/// The text between `<tag>` and `</tag>` in an S3 error document.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim())
}

impl Bucket {
    /// The URL of `key` (checked, then encoded segment by segment).
    fn object_url(&self, key: &str) -> Result<url::Url, String> {
        check_key(key)?;
        let encoded = sigv4::uri_encode(key, true);
        let url = url::Url::parse(&format!("{}{encoded}", self.base))
            .map_err(|e| format!("the object key `{key}` does not make a valid URL: {e}"))?;
        // Nothing in the key may move the request out of the bucket.
        if url.path() != format!("{}{encoded}", self.base.path()) || url.host() != self.base.host()
        {
            return Err(format!("the object key `{key}` leaves the bucket's URL"));
        }
        Ok(url)
    }

    /// Uploads one object and classifies the answer.
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        timeout: Duration,
    ) -> AttemptReport {
        let started = Instant::now();
        let url = match self.object_url(key) {
            Ok(url) => url,
            Err(error) => return failure(AttemptOutcome::Permanent, error, started),
        };
        let signed = match sigv4::sign(
            "PUT",
            &url,
            &[("content-type", content_type)],
            &sigv4::sha256_hex(&body),
            &self.region,
            "s3",
            &self.credentials,
            SystemTime::now(),
        ) {
            Ok(headers) => headers,
            Err(error) => return failure(AttemptOutcome::Permanent, error, started),
        };
        let mut request = self
            .client
            .put(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in &signed {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return report_error(&error, timeout, started),
        };
        let (mut report, answer) = read_report(response, started, EXCERPT_LIMIT).await;
        if report.outcome == AttemptOutcome::Delivered {
            report.headers.push((
                "x-switchboard-object".into(),
                format!("s3://{}/{key}", self.name),
            ));
            return report;
        }
        let status = report.status.unwrap_or_default();
        let answer = String::from_utf8_lossy(&answer);
        let code = xml_field(&answer, "Code").unwrap_or_default().to_owned();
        let message = xml_field(&answer, "Message").unwrap_or_default();
        // Codes S3 documents as worth retrying; the status decides for the others (403, 404,
        // 400… are permanent, 5xx and 429 are not).
        if matches!(
            code.as_str(),
            "RequestTimeout"
                | "SlowDown"
                | "InternalError"
                | "ServiceUnavailable"
                | "OperationAborted"
        ) {
            report.outcome = AttemptOutcome::Retryable { retry_after: None };
        }
        report.error = Some(match code.as_str() {
            "" => format!("S3 answered HTTP {status}"),
            "NoSuchBucket" => format!(
                "bucket `{}` does not exist (S3 NoSuchBucket, HTTP {status})",
                self.name
            ),
            _ if status == 403 => format!(
                "S3 refused the request: {code}: {message} (HTTP 403; check access_key_id, \
                 secret_access_key and the bucket's permissions)"
            ),
            _ => format!("S3 error {code}: {message} (HTTP {status})"),
        });
        report
    }
}

/// Open `jsonl_gzip` batches by key prefix, and their uploads.
struct Batcher {
    destination: String,
    bucket: Arc<Bucket>,
    max_events: usize,
    max_bytes: usize,
    max_wait: Duration,
    upload_timeout: Duration,
    open: Mutex<HashMap<String, OpenBatch>>,
    next_id: AtomicU64,
}

/// A batch filling up: its lines and the deliveries waiting for its upload.
struct OpenBatch {
    id: u64,
    lines: Vec<u8>,
    waiters: Vec<oneshot::Sender<Upload>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Batcher {
    /// Adds `line` to the open batch of `prefix` (opening one, and flushing a full one); the
    /// receiver gets the upload's result.
    fn submit(self: &Arc<Self>, prefix: &str, line: Vec<u8>) -> oneshot::Receiver<Upload> {
        let (sender, receiver) = oneshot::channel();
        let mut full = Vec::new();
        {
            let mut open = lock(&self.open);
            // A line that would overflow the open batch goes into the next one.
            if open.get(prefix).is_some_and(|batch| {
                !batch.waiters.is_empty() && batch.lines.len() + line.len() > self.max_bytes
            }) && let Some(batch) = open.remove(prefix)
            {
                full.push(batch);
            }
            let batch = open.entry(prefix.to_owned()).or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                self.close_later(prefix.to_owned(), id);
                OpenBatch {
                    id,
                    lines: Vec::new(),
                    waiters: Vec::new(),
                }
            });
            batch.lines.extend_from_slice(&line);
            batch.waiters.push(sender);
            if (batch.waiters.len() >= self.max_events || batch.lines.len() >= self.max_bytes)
                && let Some(batch) = open.remove(prefix)
            {
                full.push(batch);
            }
        }
        for batch in full {
            tokio::spawn(self.clone().upload(prefix.to_owned(), batch));
        }
        receiver
    }

    /// Uploads batch `id` of `prefix` after `max_wait`, unless it was uploaded full before.
    fn close_later(self: &Arc<Self>, prefix: String, id: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.max_wait).await;
            let batch = {
                let mut open = lock(&this.open);
                match open.get(&prefix) {
                    Some(batch) if batch.id == id => open.remove(&prefix),
                    _ => None,
                }
            };
            if let Some(batch) = batch {
                this.upload(prefix, batch).await;
            }
        });
    }

    /// Compresses and uploads a batch, then answers every delivery in it.
    async fn upload(self: Arc<Self>, prefix: String, batch: OpenBatch) {
        let started = Instant::now();
        let events = batch.waiters.len();
        let bytes = batch.lines.len();
        let lines = batch.lines;
        let compressed = tokio::task::spawn_blocking(move || gzip(&lines)).await;
        let key = format!("{prefix}{}.jsonl.gz", uuid::Uuid::now_v7());
        let upload = match compressed {
            Ok(Ok(body)) => {
                let mut report = self
                    .bucket
                    .put(&key, body, "application/gzip", self.upload_timeout)
                    .await;
                if report.outcome == AttemptOutcome::Delivered {
                    report
                        .headers
                        .push(("x-switchboard-batch-events".into(), events.to_string()));
                }
                Upload::from_report(report)
            }
            Ok(Err(error)) => Upload::from_report(failure(
                AttemptOutcome::Retryable { retry_after: None },
                format!("could not compress the batch: {error}"),
                started,
            )),
            Err(error) => Upload::from_report(failure(
                AttemptOutcome::Retryable { retry_after: None },
                format!("could not compress the batch: {error}"),
                started,
            )),
        };
        let delivered = upload.outcome == AttemptOutcome::Delivered;
        metrics::counter!("switchboard_s3_batches_total", "destination" => self.destination.clone(), "outcome" => if delivered { "uploaded" } else { "failed" })
            .increment(1);
        metrics::histogram!("switchboard_s3_batch_events", "destination" => self.destination.clone())
            .record(events as f64);
        if delivered {
            tracing::debug!(destination = %self.destination, %key, events, bytes, "batch uploaded");
        } else {
            tracing::warn!(destination = %self.destination, %key, events, error = upload.error.as_deref().unwrap_or(""), "batch upload failed");
        }
        for waiter in batch.waiters {
            // A delivery that gave up waiting (timeout, shutdown) has dropped its receiver.
            let _ = waiter.send(upload.clone());
        }
    }
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// The body as one JSON Lines line: JSON allows raw line breaks only as whitespace (inside
/// strings they are escaped), so replacing them by spaces keeps the value byte for byte.
fn json_line(body: &[u8]) -> Vec<u8> {
    let mut line: Vec<u8> = body
        .iter()
        .map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b })
        .collect();
    while line.last().is_some_and(u8::is_ascii_whitespace) {
        line.pop();
    }
    line.push(b'\n');
    line
}

#[async_trait]
impl Connector for S3 {
    fn describe(&self) -> String {
        self.bucket.describe.clone()
    }

    fn templates(&self) -> TemplateSet {
        self.templates.clone()
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = Instant::now();
        let body = &attempt.message.body;
        if let Err(error) = serde_json::from_slice::<IgnoredAny>(body) {
            return failure(
                AttemptOutcome::Permanent,
                format!(
                    "the s3 destination stores JSON and the delivered body is not JSON ({error}); \
                     a route transform can wrap it, e.g. `{{raw: .body}}`"
                ),
                started,
            );
        }
        let rendered = attempt.message.rendered.get("key").unwrap_or_default();
        match &self.batcher {
            None => {
                let key = if rendered.is_empty() || rendered.ends_with('/') {
                    format!("{rendered}{}.json", attempt.delivery_id)
                } else {
                    rendered.to_owned()
                };
                self.bucket
                    .put(&key, body.clone(), "application/json", attempt.timeout)
                    .await
            }
            Some(batcher) => {
                // Refuse a bad prefix now rather than failing the whole batch later.
                if let Err(error) = check_key(&format!("{rendered}x.jsonl.gz")) {
                    return failure(AttemptOutcome::Permanent, error, started);
                }
                let receiver = batcher.submit(rendered, json_line(body));
                match tokio::time::timeout(attempt.timeout, receiver).await {
                    Ok(Ok(upload)) => upload.report(started),
                    Ok(Err(_)) => failure(
                        AttemptOutcome::Retryable { retry_after: None },
                        "the batch holding this event was dropped before its upload".into(),
                        started,
                    ),
                    Err(_) => failure(
                        AttemptOutcome::Retryable { retry_after: None },
                        format!(
                            "the batch holding this event was not uploaded within the attempt \
                             timeout ({})",
                            humantime::format_duration(attempt.timeout)
                        ),
                        started,
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_object_urls() {
        let endpoint = url::Url::parse("http://127.0.0.1:9000").expect("url");
        let base = base_url(endpoint.clone(), "logs", true).expect("base");
        assert_eq!(base.as_str(), "http://127.0.0.1:9000/logs/");
        let aws = url::Url::parse("https://s3.eu-west-1.amazonaws.com").expect("url");
        let base = base_url(aws, "logs", false).expect("base");
        assert_eq!(base.as_str(), "https://logs.s3.eu-west-1.amazonaws.com/");
        let prefixed = url::Url::parse("http://gw.internal/storage/").expect("url");
        assert_eq!(
            base_url(prefixed, "logs", true).expect("base").as_str(),
            "http://gw.internal/storage/logs/"
        );

        let config = S3Destination {
            id: "a".into(),
            bucket: "logs".into(),
            endpoint: Some(endpoint.to_string()),
            path_style: None,
            region: "us-east-1".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            session_token: None,
            key: None,
            format: S3Format::Json,
            batch_max_events: 10,
            batch_max_bytes: 1000,
            batch_max_wait: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            retry: Default::default(),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        };
        let s3 = S3::new(&config).expect("valid");
        let url = s3
            .bucket
            .object_url("src/2024-05-01/a b?#%.json")
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9000/logs/src/2024-05-01/a%20b%3F%23%25.json"
        );
        for bad in ["", "/abs", "a/../../b", "./a", "a\nb", &"k".repeat(1025)] {
            assert!(s3.bucket.object_url(bad).is_err(), "{bad:?}");
        }
        assert_eq!(s3.describe(), "s3 http://127.0.0.1:9000/logs/");
        assert!(!format!("{s3:?}").contains("\"s\""));
    }

    #[test]
    fn the_default_key_is_source_and_day() {
        let mut set = TemplateSet::new();
        set.add("key", switchboard_core::config::S3_DEFAULT_KEY)
            .expect("valid");
        let rendered = set
            .render(&serde_json::json!({
                "source": "github",
                "received_at": "2024-05-01T12:34:56.789Z",
                "body": {},
            }))
            .expect("rendered");
        assert_eq!(rendered.get("key"), Some("github/2024-05-01/"));
    }

    #[test]
    fn lines_keep_the_json_and_lose_the_line_breaks() {
        let body = b"{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1, 2]\n}\n";
        let line = json_line(body);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let back: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(back, serde_json::json!({"a": "x\ny", "b": [1, 2]}));
    }

    #[test]
    fn s3_error_documents_are_read() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(xml_field(body, "Code"), Some("NoSuchBucket"));
        assert_eq!(
            xml_field(body, "Message"),
            Some("The specified bucket does not exist")
        );
        assert_eq!(xml_field("nothing", "Code"), None);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        let compressed = gzip(&data).expect("gzip");
        assert!(compressed.len() < data.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, data);
    }
}
