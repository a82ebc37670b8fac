//! The OTLP trace exporter (HTTP/protobuf or gRPC) and the `tracing` layer feeding it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use switchboard_core::config::{OtlpProtocol, TracingConfig};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use super::spans::EventIdGenerator;

/// Crates whose spans are exported (the level filter of the logs does not apply).
const TRACED: [&str; 2] = ["switchboard_server", "switchboard"];

/// The layer exporting spans to `endpoint`, and its provider (kept for the final flush).
pub(super) fn layer<S>(
    endpoint: &str,
    config: &TracingConfig,
) -> Result<(Box<dyn Layer<S> + Send + Sync>, SdkTracerProvider), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = match config.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(http_endpoint(endpoint))
            .build(),
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build(),
    }
    .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_id_generator(EventIdGenerator::default())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("switchboard");
    let targets = TRACED.iter().fold(Targets::new(), |t, target| {
        t.with_target(*target, tracing::Level::INFO)
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(targets)
        .boxed();
    Ok((layer, provider))
}

/// The traces URL of an HTTP collector: `/v1/traces` is added to a URL without a path, as
/// the OTLP specification does for the base endpoint.
fn http_endpoint(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(url) if url.path() == "/" || url.path().is_empty() => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::http_endpoint;

    #[test]
    fn http_endpoint_gets_the_traces_path_only_without_one() {
        assert_eq!(
            http_endpoint("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_endpoint("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_endpoint("https://collector/custom/traces"),
            "https://collector/custom/traces"
        );
    }
}
