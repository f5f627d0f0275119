//! What the trace export ([`crate::otel`]) and the metric export ([`crate::otel_metrics`])
//! share: the collector's URL rules, the export time-out, the HTTP client that brings its
//! own runtime, and the error. A leaf: it uses neither exporter.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// Path the OTLP/HTTP trace receiver listens on, below the collector's base URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// Path the OTLP/HTTP metrics receiver listens on, below the collector's base URL.
pub const OTLP_METRICS_PATH: &str = "/v1/metrics";

/// How long one export request may take before the batch is dropped.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("telemetry.otlp_endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The full OTLP/HTTP traces URL for a configured endpoint (the collector's base URL,
/// `/v1/traces` is added; a full URL ending in `/v1/traces` is used as is).
pub fn traces_url(endpoint: &str) -> Result<String, OtelError> {
    let bad = |message: &str| OtelError::Endpoint { endpoint: endpoint.to_string(), message: message.to_string() };
    let uri: opentelemetry_http::Request<()> =
        Request::builder().uri(endpoint).body(()).map_err(|e| bad(&e.to_string()))?;
    match uri.uri().scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https is not supported; export to a collector over plain http")),
        _ => return Err(bad("expected an http:// URL")),
    }
    if uri.uri().host().is_none() {
        return Err(bad("no host"));
    }
    let trimmed = endpoint.trim_end_matches('/');
    Ok(if trimmed.ends_with(OTLP_TRACES_PATH) { trimmed.to_string() } else { format!("{trimmed}{OTLP_TRACES_PATH}") })
}

/// The full OTLP/HTTP metrics URL for a configured endpoint (the collector's base URL,
/// or a full URL ending in `/v1/metrics`; one ending in `/v1/traces` is rebased).
pub fn metrics_url(endpoint: &str) -> Result<String, OtelError> {
    let traces = traces_url(endpoint)?; // validates scheme and host
    let base = traces.strip_suffix(OTLP_TRACES_PATH).unwrap_or(&traces);
    let base = base.strip_suffix(OTLP_METRICS_PATH).unwrap_or(base);
    Ok(format!("{base}{OTLP_METRICS_PATH}"))
}

/// hyper's client needs a tokio runtime, but the SDK's batch processor exports from its
/// own plain thread; this client brings a small runtime of its own and drives each
/// request on it, so exporting never depends on (or blocks) the application's runtime.
pub(crate) struct OwnRuntimeClient {
    runtime: Option<tokio::runtime::Runtime>,
    client: opentelemetry_http::hyper::HyperClient,
}

impl std::fmt::Debug for OwnRuntimeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnRuntimeClient").finish_non_exhaustive()
    }
}

impl OwnRuntimeClient {
    pub(crate) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None);
        Ok(OwnRuntimeClient { runtime: Some(runtime), client })
    }
}

#[async_trait::async_trait]
impl HttpClient for OwnRuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.as_ref().ok_or("exporter runtime is gone")?;
        if tokio::runtime::Handle::try_current().is_ok() {
            // Called from async code (not the SDK's export thread): block_on would panic.
            return Err("the OTLP client must be driven from the exporter's own thread".into());
        }
        runtime.block_on(self.client.send_bytes(request))
    }
}

impl Drop for OwnRuntimeClient {
    fn drop(&mut self) {
        // Dropping a runtime inside async code panics; this never blocks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_becomes_the_traces_url() {
        assert_eq!(traces_url("http://otel-collector:4318").unwrap(), "http://otel-collector:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces").unwrap(), "http://c:4318/v1/traces");
        for bad in ["https://c:4318", "otel-collector:4318", "not a url", "grpc://c:4317"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_becomes_the_metrics_url() {
        assert_eq!(metrics_url("http://otel-collector:4318").unwrap(), "http://otel-collector:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/").unwrap(), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/v1/traces").unwrap(), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/v1/metrics").unwrap(), "http://c:4318/v1/metrics");
        assert!(metrics_url("https://c:4318").is_err());
    }
}
