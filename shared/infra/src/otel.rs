//! OpenTelemetry traces: one job is one trace, from its submission to its mesh.
//!
//! * Propagation: the W3C trace context (`traceparent`, `tracestate`) of the span that
//!   publishes a stage message travels with the message, as AMQP headers on RabbitMQ
//!   and beside the body in the in-memory queue. Publishing picks up the current
//!   `tracing` span by itself ([`TraceHeaders::current`]), so callers change nothing;
//!   the worker runtime makes each delivery's span a child of the context it carries.
//! * Export: [`install`] builds the tracer provider behind the `tracing` bridge, with a
//!   batch exporter speaking OTLP/HTTP protobuf when `telemetry.otlp_endpoint` is set.
//!   Without an endpoint spans are still created, so a worker that exports nothing
//!   still hands the trace on to the next stage.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::otlp::{OwnRuntimeClient, EXPORT_TIMEOUT};
pub use crate::otlp::{traces_url, OtelError, OTLP_TRACES_PATH};

/// The W3C trace-context header names.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The tracer name (instrumentation scope) of every mono2mesh span.
pub const TRACER_NAME: &str = "mono2mesh";

/// W3C trace context as it travels with a message: header name to value. Empty when
/// the publisher had no span (a plain CLI call without telemetry, a test).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders(BTreeMap<String, String>);

impl TraceHeaders {
    /// The context of the current `tracing` span, ready to travel.
    pub fn current() -> TraceHeaders {
        TraceHeaders::from_context(&tracing::Span::current().context())
    }

    /// The trace context of `cx`; empty when `cx` holds no valid span.
    pub fn from_context(cx: &Context) -> TraceHeaders {
        let mut headers = TraceHeaders::default();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(cx, &mut headers);
        }
        headers
    }

    /// The remote parent these headers describe (an empty context when they hold none
    /// or hold garbage: a bad header starts a new trace rather than failing the job).
    pub fn context(&self) -> Context {
        TraceContextPropagator::new().extract(self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The trace-context entries of any header list (HTTP request headers, say); names
    /// compare case-insensitively and other headers are ignored.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> TraceHeaders {
        let mut headers = TraceHeaders::default();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            if name == TRACEPARENT || name == TRACESTATE {
                headers.0.insert(name, value.to_string());
            }
        }
        headers
    }

    /// Adds the headers to an AMQP header table (as long strings).
    pub fn write_amqp(&self, table: &mut FieldTable) {
        for (key, value) in &self.0 {
            table.insert(ShortString::from(key.as_str()), AMQPValue::LongString(value.as_str().into()));
        }
    }

    /// The trace-context headers of an AMQP header table; other headers are ignored,
    /// and so are values that are not strings.
    pub fn read_amqp(table: Option<&FieldTable>) -> TraceHeaders {
        let mut headers = TraceHeaders::default();
        let Some(table) = table else { return headers };
        for key in [TRACEPARENT, TRACESTATE] {
            let value = match table.inner().get(key) {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                Some(AMQPValue::ShortString(s)) => s.to_string(),
                _ => continue,
            };
            headers.0.insert(key.to_string(), value);
        }
        headers
    }
}

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

impl Extractor for TraceHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Makes `span` a child of the trace `headers` carry. Call it before the span is first
/// entered. Without usable headers (or without the OpenTelemetry layer) the span stays
/// as it is, a root of its own trace.
pub fn continue_trace(span: &tracing::Span, headers: &TraceHeaders) {
    let parent = headers.context();
    if parent.span().span_context().is_valid() {
        // Fails only when the layer is absent or the span is filtered out: nothing to link.
        let _ = span.set_parent(parent);
    }
}

/// The provider behind the global `tracing` bridge, kept to flush and shut it down.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Builds the tracer provider for this process: named `service_name`, exporting over
/// OTLP/HTTP to `endpoint` (the collector's base URL, `/v1/traces` is added; a full
/// URL ending in `/v1/traces` is used as is) when there is one. Registers it as the
/// global provider and W3C trace context as the global propagator, and returns it for
/// the `tracing` layer.
pub fn install(service_name: &str, endpoint: Option<&str>) -> Result<SdkTracerProvider, OtelError> {
    let resource = Resource::builder().with_service_name(service_name.to_string()).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint {
        builder = builder.with_batch_exporter(otlp_exporter(endpoint)?);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    *PROVIDER.lock().unwrap_or_else(|p| p.into_inner()) = Some(provider.clone());
    Ok(provider)
}

/// A tracer of `provider` for the `tracing` bridge.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer(TRACER_NAME)
}

/// Sends every finished span now. Blocks until the exporter answered; call it off the
/// async threads. [`crate::telemetry::flush`] flushes the metrics too.
pub fn flush_traces() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(provider) = provider {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

/// Flushes and stops the trace exporter, at process end. Later spans are dropped.
/// [`crate::telemetry::shutdown`] stops the metric exporter too.
pub fn shutdown_traces() {
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(provider) = provider {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "shutting the trace exporter down failed");
        }
    }
}

fn otlp_exporter(endpoint: &str) -> Result<SpanExporter, OtelError> {
    let url = traces_url(endpoint)?;
    let client = OwnRuntimeClient::new().map_err(|e| OtelError::Exporter(e.to_string()))?;
    SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn remote(trace: &str, span: &str, state: &[(&str, &str)]) -> Context {
        let state = TraceState::from_key_value(state.iter().copied()).unwrap();
        let sc = SpanContext::new(
            TraceId::from_hex(trace).unwrap(),
            SpanId::from_hex(span).unwrap(),
            TraceFlags::SAMPLED,
            true,
            state,
        );
        Context::new().with_remote_span_context(sc)
    }

    #[test]
    fn trace_context_survives_a_trip_through_amqp_headers() {
        let cx = remote("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", &[("vendor", "v1")]);
        let headers = TraceHeaders::from_context(&cx);
        assert_eq!(headers.get(TRACEPARENT), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(headers.get(TRACESTATE), Some("vendor=v1"));

        // Other headers on the same message are neither disturbed nor picked up.
        let mut table = FieldTable::default();
        table.insert("x-enqueued-at".into(), AMQPValue::LongLongInt(17));
        headers.write_amqp(&mut table);
        assert_eq!(table.inner().get("x-enqueued-at"), Some(&AMQPValue::LongLongInt(17)));
        assert!(matches!(table.inner().get(TRACEPARENT), Some(AMQPValue::LongString(_))));

        let read = TraceHeaders::read_amqp(Some(&table));
        assert_eq!(read, headers);
        let parent = read.context();
        let sc = parent.span().span_context().clone();
        assert_eq!(sc, cx.span().span_context().clone());
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "vendor=v1");
    }

    #[test]
    fn missing_or_malformed_headers_give_no_parent() {
        assert!(TraceHeaders::read_amqp(None).is_empty());
        assert!(TraceHeaders::from_context(&Context::new()).is_empty(), "no span, nothing to carry");

        let mut table = FieldTable::default();
        table.insert(TRACEPARENT.into(), AMQPValue::LongLongInt(1)); // not a string
        assert!(TraceHeaders::read_amqp(Some(&table)).is_empty());

        for garbage in ["", "00-zz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            let mut table = FieldTable::default();
            table.insert(TRACEPARENT.into(), AMQPValue::LongString(garbage.into()));
            let parent = TraceHeaders::read_amqp(Some(&table)).context();
            assert!(!parent.span().span_context().is_valid(), "{garbage:?} must not become a parent");
        }
    }
}
