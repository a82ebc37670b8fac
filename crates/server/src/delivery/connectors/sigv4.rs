//! AWS Signature Version 4 in the `Authorization` header, for the S3 connector.
//!
//! Header signing covers the payload's SHA-256 (so a body altered in transit is refused) and is
//! what every S3-compatible store accepts, including the local test server, which does not
//! authenticate presigned URLs. Only what one request needs is here: the canonical request, the
//! string to sign and the derived key, as specified in the AWS documentation ("Signature
//! Version 4 signing process"). Checked against AWS's published example below and against
//! botocore's implementation by the end-to-end tests.

use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Access key, secret and optional session token. `Debug` shows only the key id.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Hex SHA-256 of `bytes` (the `x-amz-content-sha256` value).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|e| format!("cannot sign the request: {e}"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Percent-encodes `text` as SigV4 wants: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`, for paths).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `20130524T000000Z` for `at`.
pub fn amz_date(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// The `Host` header reqwest sends for `url` (the port only when it is not the default).
pub fn host_header(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// Signs a request to `url` and returns the headers to send with it: `x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` (with temporary credentials) and
/// `authorization`. `headers` are further headers to sign and send (lowercase names), e.g.
/// `content-type`. The path of `url` must already be encoded with [`uri_encode`].
#[allow(clippy::too_many_arguments)] // the inputs of the algorithm, each named as AWS names it
pub fn sign(
    method: &str,
    url: &url::Url,
    headers: &[(&str, &str)],
    payload_sha256: &str,
    region: &str,
    service: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let host = host_header(url).ok_or("the URL has no host")?;
    let mut to_sign: Vec<(String, String)> = vec![
        ("host".into(), host),
        ("x-amz-content-sha256".into(), payload_sha256.to_owned()),
        ("x-amz-date".into(), date_time.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        to_sign.push(("x-amz-security-token".into(), token.clone()));
    }
    for (name, value) in headers {
        to_sign.push((name.to_ascii_lowercase(), (*value).to_owned()));
    }
    to_sign.sort();
    let canonical_headers: String = to_sign
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{name}:{value}\n")
        })
        .collect();
    let signed_headers = to_sign
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}",
        path = url.path(),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    )?;
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes())?;
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes())?);
    let mut out: Vec<(String, String)> = to_sign
        .into_iter()
        .filter(|(name, _)| name != "host" && !headers.iter().any(|(h, _)| h == name))
        .collect();
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn may_24_2013() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600)
    }

    fn authorization(headers: &[(String, String)]) -> &str {
        headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str())
            .expect("authorization header")
    }

    /// AWS's "GET Object" example for header-based SigV4 (S3 API reference, "Examples of
    /// signature calculations").
    #[test]
    fn aws_get_object_example() {
        let url = url::Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").expect("url");
        let headers = sign(
            "GET",
            &url,
            &[("range", "bytes=0-9")],
            &sha256_hex(b""),
            "us-east-1",
            "s3",
            &example_credentials(),
            may_24_2013(),
        )
        .expect("signed");
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-amz-date" && v == "20130524T000000Z")
        );
        assert!(!headers.iter().any(|(n, _)| n == "range" || n == "host"));
    }

    /// AWS's "PUT Object" example: a signed payload and an encoded `$` in the key.
    #[test]
    fn aws_put_object_example() {
        let path = uri_encode("test$file.text", true);
        assert_eq!(path, "test%24file.text");
        let url = url::Url::parse(&format!("https://examplebucket.s3.amazonaws.com/{path}"))
            .expect("url");
        let headers = sign(
            "PUT",
            &url,
            &[
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            &sha256_hex(b"Welcome to Amazon S3."),
            "us-east-1",
            "s3",
            &example_credentials(),
            may_24_2013(),
        )
        .expect("signed");
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(amz_date(may_24_2013()), "20130524T000000Z");
        assert_eq!(uri_encode("a b/ü~", true), "a%20b/%C3%BC~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        let url = url::Url::parse("http://127.0.0.1:9000/b/k").expect("url");
        assert_eq!(host_header(&url).as_deref(), Some("127.0.0.1:9000"));
        let url = url::Url::parse("https://s3.amazonaws.com:443/b").expect("url");
        assert_eq!(host_header(&url).as_deref(), Some("s3.amazonaws.com"));
        let shown = format!(
            "{:?}",
            Credentials {
                session_token: Some("tok".into()),
                ..example_credentials()
            }
        );
        assert!(
            !shown.contains("EXAMPLEKEY") && !shown.contains("tok"),
            "{shown}"
        );
    }
}
