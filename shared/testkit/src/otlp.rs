//! An OTLP/HTTP receiver for tests: a real HTTP server on `127.0.0.1:<random port>` that
//! decodes each `POST /v1/traces` and `POST /v1/metrics` protobuf body, as a collector
//! would, and keeps the spans and metric points for assertions.
//!
//! It runs on a thread with its own runtime, so it outlives any one `#[tokio::test]`
//! runtime and can serve every test of a binary (see [`traced_process`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One span as the collector received it. Ids are lower-case hex, as Jaeger shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The `service.name` of the process that exported it.
    pub service: String,
    /// Span attributes, rendered as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One metric data point as the collector received it (cumulative, so later exports
/// repeat a point with its newer total).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    pub name: String,
    pub unit: String,
    pub service: String,
    pub attributes: BTreeMap<String, String>,
    pub value: PointValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Sum { value: f64, monotonic: bool },
    Gauge(f64),
    Histogram { count: u64, sum: f64, bounds: Vec<f64>, bucket_counts: Vec<u64> },
    /// A kind we do not use (exponential histogram, summary).
    Other,
}

impl ReceivedPoint {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether every `(key, value)` of `labels` is among the point's attributes.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.attribute(k) == Some(*v))
    }
}

#[derive(Clone)]
pub struct OtlpReceiver {
    /// Base URL to configure as `telemetry.otlp_endpoint`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    points: Arc<Mutex<Vec<ReceivedPoint>>>,
    /// Export requests that were not valid OTLP protobuf.
    bad_requests: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    /// Starts the receiver on its own thread; it lives as long as the test process.
    pub fn start() -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("OTLP receiver: bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("OTLP receiver: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("OTLP receiver: {e}"));
        let receiver = OtlpReceiver {
            endpoint: format!("http://{addr}"),
            spans: Arc::default(),
            points: Arc::default(),
            bad_requests: Arc::default(),
        };
        let state = receiver.clone();
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("OTLP receiver runtime: {e}"));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .unwrap_or_else(|e| panic!("OTLP receiver: {e}"));
                    let app = Router::new()
                        .route("/v1/traces", post(receive))
                        .route("/v1/metrics", post(receive_metrics))
                        .with_state(state);
                    axum::serve(listener, app).await.unwrap_or_else(|e| panic!("OTLP receiver: {e}"));
                });
            })
            .unwrap_or_else(|e| panic!("OTLP receiver thread: {e}"));
        receiver
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every metric point received so far, oldest first.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.points.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The newest point of metric `name` from `service` with these labels, once one
    /// satisfies `done`; panics with what did arrive after `limit`.
    pub async fn wait_for_point(
        &self,
        service: &str,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
        done: impl Fn(&PointValue) -> bool,
    ) -> ReceivedPoint {
        let deadline = Instant::now() + limit;
        loop {
            let newest = self
                .points()
                .into_iter()
                .rev()
                .find(|p| p.service == service && p.name == name && p.has(labels));
            if let Some(point) = newest.filter(|p| done(&p.value)) {
                return point;
            }
            if Instant::now() >= deadline {
                let names: Vec<(String, String, BTreeMap<String, String>)> =
                    self.points().into_iter().map(|p| (p.service, p.name, p.attributes)).collect();
                panic!(
                    "no satisfying {name} {labels:?} from {service} after {limit:?}; received {names:#?}; bad requests: {:?}",
                    self.bad_requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn bad_requests(&self) -> Vec<String> {
        self.bad_requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans of `trace_id`, once `done` says they are complete; panics with what
    /// did arrive after `limit`.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + limit;
        loop {
            let spans: Vec<ReceivedSpan> = self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} incomplete after {limit:?}; got {spans:#?}; bad requests: {:?}",
                self.bad_requests()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The export request in `body`, or BAD_REQUEST with the reason kept for assertions.
fn decode<M: Message + Default>(receiver: &OtlpReceiver, body: Bytes) -> Result<M, StatusCode> {
    M::decode(body).map_err(|e| {
        receiver.bad_requests.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        StatusCode::BAD_REQUEST
    })
}

/// The `service.name` of an exporting process.
fn service_of(resource: &Option<Resource>) -> String {
    resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .map(|kv| render(&kv.value))
        .unwrap_or_default()
}

async fn receive(State(receiver): State<OtlpReceiver>, body: Bytes) -> StatusCode {
    let request: ExportTraceServiceRequest = match decode(&receiver, body) {
        Ok(request) => request,
        Err(status) => return status,
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = service_of(&resource_spans.resource);
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    service: service.clone(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    receiver.spans.lock().unwrap_or_else(|p| p.into_inner()).extend(received);
    // An empty ExportTraceServiceResponse encodes as an empty body.
    StatusCode::OK
}

async fn receive_metrics(State(receiver): State<OtlpReceiver>, body: Bytes) -> StatusCode {
    let request: ExportMetricsServiceRequest = match decode(&receiver, body) {
        Ok(request) => request,
        Err(status) => return status,
    };
    let mut received = Vec::new();
    for resource_metrics in request.resource_metrics {
        let service = service_of(&resource_metrics.resource);
        for scope in resource_metrics.scope_metrics {
            for metric in scope.metrics {
                let point = |attributes: BTreeMap<String, String>, value: PointValue| ReceivedPoint {
                    name: metric.name.clone(),
                    unit: metric.unit.clone(),
                    service: service.clone(),
                    attributes,
                    value,
                };
                match &metric.data {
                    Some(metric::Data::Sum(sum)) => {
                        for p in &sum.data_points {
                            let value = PointValue::Sum { value: number(p), monotonic: sum.is_monotonic };
                            received.push(point(attributes(&p.attributes), value));
                        }
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        for p in &gauge.data_points {
                            received.push(point(attributes(&p.attributes), PointValue::Gauge(number(p))));
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        for p in &histogram.data_points {
                            let value = PointValue::Histogram {
                                count: p.count,
                                sum: p.sum.unwrap_or_default(),
                                bounds: p.explicit_bounds.clone(),
                                bucket_counts: p.bucket_counts.clone(),
                            };
                            received.push(point(attributes(&p.attributes), value));
                        }
                    }
                    _ => received.push(point(BTreeMap::new(), PointValue::Other)),
                }
            }
        }
    }
    receiver.points.lock().unwrap_or_else(|p| p.into_inner()).extend(received);
    StatusCode::OK
}

fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs.iter().map(|kv| (kv.key.clone(), render(&kv.value))).collect()
}

fn render(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Ids of a trace's root span, as hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpan {
    pub trace_id: String,
    pub span_id: String,
}

/// Runs `work` inside a new root span named `submit` (as a submission would be), so
/// whatever it publishes starts a job trace; the span ends when `work` does. Needs
/// [`traced_process`] for the span to be recorded and exported.
pub async fn in_new_trace<F: std::future::Future>(work: F) -> (F::Output, RootSpan) {
    use opentelemetry::trace::TraceContextExt;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(target: "mono2mesh_test", parent: None, "submit", otel.name = "submit");
    let context = span.context();
    let ids = context.span().span_context().clone();
    let root = RootSpan { trace_id: ids.trace_id().to_string(), span_id: ids.span_id().to_string() };
    (work.instrument(span).await, root)
}

/// One receiver per test process, with this process's own `tracing` installed to
/// export to it exactly as a worker does (`telemetry::init_tracing` with
/// `otlp_endpoint` set), so a test's own spans can start a job's trace.
pub fn traced_process() -> &'static OtlpReceiver {
    static RECEIVER: OnceLock<OtlpReceiver> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let receiver = OtlpReceiver::start();
        let settings = mono2mesh_infra::config::TelemetrySettings {
            log_filter: "warn".into(),
            log_format: mono2mesh_infra::config::LogFormat::Text,
            otlp_endpoint: Some(receiver.endpoint.clone()),
            prometheus_listen: None,
            health_listen: None,
            metrics_interval_ms: 10_000,
        };
        mono2mesh_infra::telemetry::init_tracing(&settings).unwrap_or_else(|e| panic!("test tracing: {e}"));
        receiver
    })
}
