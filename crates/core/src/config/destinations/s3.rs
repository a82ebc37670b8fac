//! `kind = "s3"`: events archived as objects in an S3-compatible store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

/// The default object key: the source, the day the event arrived, and (added by the
/// destination because the key ends with `/`) the delivery id.
pub const S3_DEFAULT_KEY: &str = "{{ .source }}/{{ .received_at[0:10] }}/";

/// How events become objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Format {
    /// One object per event: the delivered JSON body, `application/json`.
    #[default]
    Json,
    /// Several events per object: gzip-compressed JSON Lines, one line per event.
    JsonlGzip,
}

/// An S3 destination (AWS S3, MinIO, Ceph, R2…). The delivered body (usually a route
/// transform's output) must be JSON.
///
/// `Debug` hides the secret access key and the session token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Destination {
    /// The destination's id.
    pub id: String,
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL of an S3-compatible store (`http://minio:9000`); default AWS,
    /// `https://s3.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted ones
    /// (`bucket.endpoint/key`); default: on with a custom `endpoint`, off for AWS.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Region of the signature (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (a secret).
    pub secret_access_key: String,
    /// Session token of temporary credentials (a secret).
    #[serde(default)]
    pub session_token: Option<String>,
    /// Object key, a `{{ jq }}` template. A key ending in `/` gets the delivery id and `.json`
    /// appended (`json`); with `jsonl_gzip` the key is the prefix of batch objects, which are
    /// named `<prefix><batch id>.jsonl.gz`. Default [`S3_DEFAULT_KEY`].
    #[serde(default)]
    pub key: Option<String>,
    /// `json` (default) or `jsonl_gzip`.
    #[serde(default)]
    pub format: S3Format,
    /// `jsonl_gzip`: events per object at most (default 100).
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// `jsonl_gzip`: uncompressed bytes per object at most (default 8 MiB); one larger event
    /// makes an object of its own.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// `jsonl_gzip`: how long the first event of a batch waits for others (default 5s).
    #[serde(with = "duration::human", default = "default_batch_max_wait")]
    pub batch_max_wait: Duration,
    /// Per-attempt timeout; with `jsonl_gzip` it covers the wait for the batch and its upload,
    /// so it must exceed `batch_max_wait` by at least 2s.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once (with `jsonl_gzip`, a batch holds at most this many events).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Deliveries per second at most.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Deliver in order.
    #[serde(default)]
    pub ordered: bool,
    /// `false` pauses the destination: its deliveries are kept pending and are sent once it is
    /// enabled again.
    #[serde(
        default = "crate::config::enabled_by_default",
        skip_serializing_if = "crate::config::is_enabled"
    )]
    pub enabled: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_batch_max_events() -> usize {
    100
}

fn default_batch_max_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_batch_max_wait() -> Duration {
    Duration::from_secs(5)
}

/// The margin `timeout` keeps beyond `batch_max_wait` for the upload itself.
pub const S3_UPLOAD_MARGIN: Duration = Duration::from_secs(2);

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("id", &self.id)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("key", &self.key)
            .field("format", &self.format)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("ordered", &self.ordered)
            .finish()
    }
}

impl S3Destination {
    /// The endpoint URL: `endpoint`, or AWS's for the region.
    pub fn endpoint_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }

    /// Whether URLs are path-style.
    pub fn uses_path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    /// The object key template.
    pub fn key_template(&self) -> &str {
        self.key.as_deref().unwrap_or(S3_DEFAULT_KEY)
    }
}

/// Whether `name` follows S3's bucket naming rules: 3–63 lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit.
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("..")
}

impl DestinationKind for S3Destination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        if !is_bucket_name(&self.bucket) {
            return Err(format!(
                "bucket `{}` is not a valid bucket name (3-63 lowercase letters, digits, `.` \
                 and `-`, starting and ending with a letter or digit)",
                self.bucket
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            http_url("endpoint", endpoint)?;
            if endpoint.contains('@') {
                return Err(
                    "endpoint must not contain credentials; use access_key_id and \
                     secret_access_key"
                        .into(),
                );
            }
            if endpoint.contains(['?', '#']) {
                return Err("endpoint must not have a query or a fragment".into());
            }
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "region `{}` is not valid (letters, digits and `-`)",
                self.region
            ));
        }
        if self.access_key_id.trim().is_empty() || self.secret_access_key.is_empty() {
            return Err("access_key_id and secret_access_key are required".into());
        }
        if self.key_template().trim().is_empty() && self.format == S3Format::Json {
            return Err("key must not be empty".into());
        }
        if self.format == S3Format::JsonlGzip {
            if !(1..=100_000).contains(&self.batch_max_events) {
                return Err("batch_max_events must be between 1 and 100000".into());
            }
            if !(1..=1024 * 1024 * 1024).contains(&self.batch_max_bytes) {
                return Err("batch_max_bytes must be between 1 and 1 GiB".into());
            }
            if self.batch_max_wait.is_zero() {
                return Err("batch_max_wait must be more than 0s".into());
            }
            if self.timeout < self.batch_max_wait + S3_UPLOAD_MARGIN {
                return Err(format!(
                    "timeout ({}) must exceed batch_max_wait ({}) by at least {}: a delivery \
                     waits for its batch to fill, then for the upload",
                    humantime::format_duration(self.timeout),
                    humantime::format_duration(self.batch_max_wait),
                    humantime::format_duration(S3_UPLOAD_MARGIN),
                ));
            }
            if let Some(max) = self.max_in_flight
                && max < self.batch_max_events
            {
                return Err(format!(
                    "max_in_flight ({max}) is below batch_max_events ({}): a batch holds only \
                     deliveries in flight, so it could never fill",
                    self.batch_max_events
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> S3Destination {
        S3Destination {
            id: "archive".into(),
            bucket: "events-archive".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: None,
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("token-secret".into()),
            key: None,
            format: S3Format::Json,
            batch_max_events: 100,
            batch_max_bytes: 1024,
            batch_max_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        }
    }

    #[test]
    fn defaults_and_validation() {
        let d = destination();
        assert_eq!(d.validate(), Ok(()));
        assert!(d.uses_path_style());
        assert_eq!(d.key_template(), S3_DEFAULT_KEY);
        let mut aws = destination();
        aws.endpoint = None;
        aws.region = "eu-west-1".into();
        assert!(!aws.uses_path_style());
        assert_eq!(aws.endpoint_url(), "https://s3.eu-west-1.amazonaws.com");

        let mut d = destination();
        d.bucket = "Bad_Bucket".into();
        assert!(d.validate().expect_err("bucket").contains("bucket"));
        let mut d = destination();
        d.endpoint = Some("ftp://x".into());
        assert!(d.validate().is_err());
        let mut d = destination();
        d.secret_access_key.clear();
        assert!(d.validate().is_err());
    }

    #[test]
    fn batches_must_fit_in_the_attempt_timeout() {
        let mut d = destination();
        d.format = S3Format::JsonlGzip;
        assert_eq!(d.validate(), Ok(()));
        d.batch_max_wait = Duration::from_secs(14);
        let error = d.validate().expect_err("too long a wait");
        assert!(error.contains("must exceed batch_max_wait"), "{error}");
        let mut d = destination();
        d.format = S3Format::JsonlGzip;
        d.max_in_flight = Some(10);
        let error = d.validate().expect_err("batch larger than in-flight cap");
        assert!(error.contains("max_in_flight"), "{error}");
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket.logs", "a1b"] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b_c",
            "a..b",
            &"a".repeat(64),
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", destination());
        assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
        assert!(!shown.contains("token-secret"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
    }
}
