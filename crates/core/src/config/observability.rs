//! `[log]`, `[tracing]` and `[metrics]`: how Switchboard reports on itself.

use serde::{Deserialize, Serialize};

/// `[log]`: structured logs on stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` (human-readable lines) or `json` (one JSON object per line, for log
    /// shippers). `SWITCHBOARD_LOG_FORMAT` and `serve --log-format` override it.
    pub format: LogFormat,
    /// Which lines are written: a level (`info`) or a filter in `RUST_LOG` syntax
    /// (`info,switchboard_server::delivery=debug`). `SWITCHBOARD_LOG` (or `RUST_LOG`) overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info,sqlx=warn".into(),
        }
    }
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (`text` is accepted as a synonym).
    #[serde(alias = "text")]
    Pretty,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `pretty`, `text` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pretty" | "text" => Some(Self::Pretty),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// `[tracing]`: OpenTelemetry traces exported over OTLP. Off unless `endpoint` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP collector: `http://collector:4318` for HTTP/protobuf (`/v1/traces` is added
    /// when the URL has no path), `http://collector:4317` with `protocol = "grpc"`.
    /// Unset: no traces are exported (`SWITCHBOARD_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc` (`SWITCHBOARD_OTLP_PROTOCOL`).
    pub protocol: OtlpProtocol,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    /// Share of new traces sampled, 0.0 to 1.0. An inbound `traceparent`'s sampled flag is
    /// followed instead (parent-based sampling).
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            service_name: "switchboard".into(),
            sample_ratio: 1.0,
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP POST (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    /// Parses `http/protobuf` (or `http`) and `grpc`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "http/protobuf" | "http" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

/// `[metrics]`: Prometheus metrics are always served at `/metrics`; this adds a StatsD export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Also send every metric to this StatsD agent (`host:port`, UDP; DogStatsD tags for
    /// labels), e.g. `"127.0.0.1:8125"` for a Datadog agent (`SWITCHBOARD_STATSD`).
    pub statsd: Option<String>,
    /// Prefix of StatsD metric names.
    pub statsd_prefix: String,
    /// How often counters and gauges are flushed to StatsD.
    #[serde(with = "crate::duration::human")]
    pub statsd_interval: std::time::Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            statsd: None,
            statsd_prefix: String::new(),
            statsd_interval: std::time::Duration::from_secs(10),
        }
    }
}

impl TracingConfig {
    /// Checks the endpoint URL and the ratio.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "tracing.endpoint `{endpoint}` must be an http:// or https:// URL"
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("tracing.sample_ratio must be between 0.0 and 1.0".into());
        }
        Ok(())
    }
}

impl MetricsConfig {
    /// Checks the StatsD address has a port.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(addr) = &self.statsd {
            let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                return Err(format!(
                    "metrics.statsd `{addr}` must be host:port, e.g. \"127.0.0.1:8125\""
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::{LogFormat, OtlpProtocol};

    #[test]
    fn sections_parse_and_env_overrides_them() {
        let mut config = Config::from_toml(
            r#"
[log]
format = "json"
level = "debug"

[tracing]
endpoint = "http://collector:4318"
protocol = "grpc"
sample_ratio = 0.5

[metrics]
statsd = "127.0.0.1:8125"
statsd_interval = "2s"
"#,
        )
        .expect("parses");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.tracing.protocol, OtlpProtocol::Grpc);
        assert_eq!(config.metrics.statsd_interval.as_secs(), 2);
        config.validate().expect("valid");
        config
            .apply_env([
                ("SWITCHBOARD_LOG_FORMAT".to_owned(), "text".to_owned()),
                (
                    "SWITCHBOARD_OTLP_PROTOCOL".to_owned(),
                    "http/protobuf".to_owned(),
                ),
                ("SWITCHBOARD_STATSD".to_owned(), "agent:9125".to_owned()),
            ])
            .expect("env");
        assert_eq!(config.log.format, LogFormat::Pretty);
        assert_eq!(config.tracing.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(config.metrics.statsd.as_deref(), Some("agent:9125"));
        assert!(
            config
                .apply_env([("SWITCHBOARD_LOG_FORMAT".to_owned(), "xml".to_owned())])
                .is_err()
        );
        assert!(
            Config::default().tracing.endpoint.is_none(),
            "off by default"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (toml, key) in [
            (
                "[tracing]\nendpoint = \"collector:4318\"",
                "tracing.endpoint",
            ),
            ("[tracing]\nsample_ratio = 2.0", "tracing.sample_ratio"),
            ("[metrics]\nstatsd = \"localhost\"", "metrics.statsd"),
            ("[metrics]\nstatsd = \"localhost:0\"", "metrics.statsd"),
        ] {
            let error = Config::from_toml(toml)
                .expect("parses")
                .validate()
                .expect_err(toml)
                .to_string();
            assert!(error.contains(key), "{toml}: {error}");
        }
        let error = Config::from_toml("[log]\nformat = \"xml\"").expect_err("unknown format");
        assert!(error.to_string().contains("format"), "{error}");
        assert!(Config::from_toml("[tracing]\nendpont = \"x\"").is_err());
    }
}
