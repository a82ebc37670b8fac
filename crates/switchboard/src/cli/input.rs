//! Command input: a body from `--file` (or stdin with `-`) or `--data`, `Name: value` headers,
//! and times given as unix seconds, RFC 3339 or an age.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::Value;
use switchboard_core::time::{now_millis, parse_time_or_age};

/// `--file F | --data D`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BodyArgs {
    /// Read the body from this file (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    pub file: Option<PathBuf>,
    /// The body, inline.
    #[arg(long, value_name = "DATA")]
    pub data: Option<String>,
}

impl BodyArgs {
    /// The raw bytes, when a body was given.
    pub fn bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(data) = &self.data {
            return Ok(Some(data.as_bytes().to_vec()));
        }
        let Some(path) = &self.file else {
            return Ok(None);
        };
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the body from stdin")?;
            return Ok(Some(bytes));
        }
        std::fs::read(path)
            .map(Some)
            .with_context(|| format!("cannot read {}", path.display()))
    }

    /// The body parsed as a JSON object, when one was given.
    pub fn json_object(&self) -> anyhow::Result<Option<serde_json::Map<String, Value>>> {
        let Some(bytes) = self.bytes()? else {
            return Ok(None);
        };
        let what = if self.data.is_some() {
            "--data".to_owned()
        } else {
            self.file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        match serde_json::from_slice::<Value>(&bytes)
            .with_context(|| format!("{what} is not valid JSON"))?
        {
            Value::Object(map) => Ok(Some(map)),
            _ => bail!("{what} must be a JSON object"),
        }
    }
}

/// Splits `Name: value` (or `Name:value`).
pub fn parse_header(raw: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = raw
        .split_once(':')
        .with_context(|| format!("header `{raw}` is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("header `{raw}` has no valid name");
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Unix milliseconds from an RFC 3339 time or an age such as `2h` ("two hours ago").
pub fn time_or_age(raw: &str) -> anyhow::Result<i64> {
    parse_time_or_age(raw, now_millis())
        .with_context(|| format!("`{raw}` is neither an RFC 3339 time nor an age like `2h`"))
}

/// Unix seconds from plain digits or an RFC 3339 time.
pub fn unix_seconds(raw: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = raw.parse::<i64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339_weak(raw)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .with_context(|| format!("`{raw}` is neither unix seconds nor an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_times() {
        assert_eq!(
            parse_header("X-Hub-Signature-256: sha256=ab:cd").expect("header"),
            ("X-Hub-Signature-256".into(), "sha256=ab:cd".into())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty").is_err());
        assert_eq!(unix_seconds("1700000000").expect("digits"), 1_700_000_000);
        assert_eq!(unix_seconds("1970-01-01T00:01:00Z").expect("rfc3339"), 60);
        assert!(unix_seconds("soon").is_err());
    }
}
