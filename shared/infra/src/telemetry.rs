//! Logs, metrics and (optionally) traces for every process.
//!
//! * `init_tracing`: `tracing` subscriber with an env filter (`RUST_LOG` wins over the
//!   configured filter) in text or JSON.
//! * Metrics ([`install_metrics`]): code records through the `metrics` facade, with the
//!   names in [`names`]; a Prometheus `/metrics` listener and the OTLP export
//!   ([`crate::otel_metrics`]) are the recorders behind it, either or both.
//!   [`StageTimer`] records a stage's duration and outcome even when the handler
//!   panics or is cancelled (it records on drop).
//! * Traces ([`crate::otel`]): every span of our own crates (`mono2mesh*` targets, info
//!   and up, whatever the log filter says) is also an OpenTelemetry span, exported over
//!   OTLP/HTTP when `otlp_endpoint` is set; the queue carries the trace context between
//!   stages.
//! * [`flush`] and [`shutdown`] drain both exports.
//!
//! This module is the entry: it uses [`crate::otel`] and [`crate::otel_metrics`], which
//! share only the leaves [`crate::otlp`] and [`crate::metrics_spec`], never this module
//! or each other.

use crate::config::{LogFormat, TelemetrySettings};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::layers::FanoutBuilder;
use mono2mesh_core::Stage;
use std::net::SocketAddr;
use std::time::Instant;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use crate::metrics_spec::{buckets_for, names};
use crate::metrics_spec::{BATCH_BUCKETS, SECONDS_BUCKETS};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("a global tracing subscriber is already installed")]
    TracingAlreadyInstalled,
    #[error("cannot start the Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("a global metrics recorder is already installed")]
    MetricsAlreadyInstalled,
    #[error(transparent)]
    Traces(#[from] crate::otlp::OtelError),
}

/// How a stage's handling of one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    /// Work done, next stage enqueued.
    Ok,
    /// The input was unusable; the job ended as rejected.
    Rejected,
    /// A duplicate or late delivery, acknowledged without work.
    Skipped,
    /// A retryable failure; the message goes to a retry queue.
    Retried,
    /// A permanent failure; the message went to the dead-letter queue.
    DeadLettered,
    /// The handler panicked or was cancelled before reporting (recorded on drop).
    Abandoned,
}

impl StageOutcome {
    pub fn name(self) -> &'static str {
        match self {
            StageOutcome::Ok => "ok",
            StageOutcome::Rejected => "rejected",
            StageOutcome::Skipped => "skipped",
            StageOutcome::Retried => "retried",
            StageOutcome::DeadLettered => "dead_lettered",
            StageOutcome::Abandoned => "abandoned",
        }
    }
}

/// Times one delivery through a stage. Create it when handling starts and call
/// `finish`; if it is dropped unfinished (panic, cancellation) it records
/// `abandoned`, so no handling ever goes unaccounted.
#[derive(Debug)]
pub struct StageTimer {
    stage: Stage,
    started: Instant,
    finished: bool,
}

impl StageTimer {
    pub fn start(stage: Stage) -> Self {
        counter!(names::STAGE_RECEIVED, "stage" => stage.name()).increment(1);
        gauge!(names::STAGE_INFLIGHT, "stage" => stage.name()).increment(1.0);
        StageTimer { stage, started: Instant::now(), finished: false }
    }

    pub fn finish(mut self, outcome: StageOutcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: StageOutcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let stage = self.stage.name();
        let outcome = outcome.name();
        gauge!(names::STAGE_INFLIGHT, "stage" => stage).decrement(1.0);
        counter!(names::STAGE_FINISHED, "stage" => stage, "outcome" => outcome).increment(1);
        histogram!(names::STAGE_DURATION, "stage" => stage, "outcome" => outcome)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        self.record(StageOutcome::Abandoned);
    }
}

/// Registers help texts for every metric in [`names`].
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::STAGE_RECEIVED, "Deliveries a stage started handling");
    describe_counter!(names::STAGE_FINISHED, "Deliveries a stage finished, by outcome");
    describe_histogram!(names::STAGE_DURATION, Unit::Seconds, "Stage handler wall time");
    describe_gauge!(names::STAGE_INFLIGHT, "Deliveries being handled now");
    describe_histogram!(names::QUEUE_WAIT, Unit::Seconds, "Time a message waited in its queue");
    describe_counter!(names::REDELIVERIES, "Deliveries the broker marked as redelivered");
    describe_counter!(names::FAILURES, "Failed deliveries by error class");
    describe_histogram!(names::PUBLISH_CONFIRM, Unit::Seconds, "Publish to broker confirm");
    describe_counter!(names::QUEUE_RECONNECTS, "Broker connections replaced after a loss");
    describe_histogram!(names::BATCH_SIZE, Unit::Count, "Items per model batch");
    describe_histogram!(names::DEVICE_TIME, Unit::Seconds, "Network time per model batch on its device");
    describe_histogram!(names::BLOB_REQUEST, Unit::Seconds, "Blob store request time");
    describe_histogram!(names::DB_QUERY, Unit::Seconds, "Job store query time");
    describe_counter!(names::OUTBOX_PUBLISHED, "Outbox messages confirmed by the broker, by publisher");
    describe_counter!(names::OUTBOX_PUBLISH_FAILURES, "Outbox publishes that failed (the message stays queued)");
    describe_gauge!(names::OUTBOX_PENDING, "Messages waiting in the outbox");
    describe_counter!(names::RECOVERY_ACTIONS, "What recovery did to jobs nothing else would finish, by stage and action");
}

/// The exporter configuration shared by the listener and by tests.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    let err = |e: metrics_exporter_prometheus::BuildError| TelemetryError::Prometheus(e.to_string());
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &SECONDS_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.to_string()), &BATCH_BUCKETS)
        .map_err(err)
}

/// A Prometheus recorder whose `/metrics` listener on `listen` already runs.
fn prometheus_listener(listen: SocketAddr) -> Result<(PrometheusRecorder, PrometheusHandle), TelemetryError> {
    let (recorder, exporter) = prometheus_builder()?
        .with_http_listener(listen)
        .build()
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
    let handle = recorder.handle();
    tokio::spawn(exporter);
    Ok((recorder, handle))
}

fn set_global_recorder(recorder: impl metrics::Recorder + Sync + 'static) -> Result<(), TelemetryError> {
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::MetricsAlreadyInstalled)?;
    describe_metrics();
    Ok(())
}

/// Installs the global metrics recorder: the Prometheus listener when
/// `prometheus_listen` is set, the OTLP export when `otlp_endpoint` is, both when
/// both are (every metric goes to each). Nothing is installed when neither is set.
/// Must be called from within a tokio runtime.
pub fn install_metrics(settings: &TelemetrySettings) -> Result<Option<PrometheusHandle>, TelemetryError> {
    let prometheus = settings.prometheus_listen.map(prometheus_listener).transpose()?;
    let otlp = match &settings.otlp_endpoint {
        Some(endpoint) => Some(crate::otel_metrics::install(&service_name(), endpoint, settings.metrics_interval())?),
        None => None,
    };
    let handle = prometheus.as_ref().map(|(_, handle)| handle.clone());
    match (prometheus, otlp) {
        (None, None) => return Ok(None),
        (Some((prometheus, _)), None) => set_global_recorder(prometheus)?,
        (None, Some(otlp)) => set_global_recorder(otlp)?,
        (Some((prometheus, _)), Some(otlp)) => {
            set_global_recorder(FanoutBuilder::default().add_recorder(prometheus).add_recorder(otlp).build())?
        }
    }
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(%endpoint, interval_ms = settings.metrics_interval_ms, "exporting metrics over OTLP/HTTP");
    }
    Ok(handle)
}

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else the configured
/// filter; text or JSON lines on stderr. Spans of our crates also become OpenTelemetry
/// spans (exported when `otlp_endpoint` is set), filtered on their own so a quiet log
/// level (`warn`) does not cut the traces.
pub fn init_tracing(settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    let directive = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()).unwrap_or(settings.log_filter.clone());
    let filter = EnvFilter::try_new(&directive)
        .map_err(|e| TelemetryError::Filter { filter: directive.clone(), message: e.to_string() })?;
    let provider = crate::otel::install(&service_name(), settings.otlp_endpoint.as_deref())?;
    let traces = tracing_opentelemetry::layer()
        .with_tracer(crate::otel::tracer(&provider))
        .with_filter(Targets::new().with_target(TRACED_TARGETS, LevelFilter::INFO));
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .map_err(|_| TelemetryError::TracingAlreadyInstalled)?;
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(%endpoint, service = %service_name(), "exporting traces over OTLP/HTTP");
    }
    Ok(())
}

/// Sends every finished span and the metrics now (tests, and before a short-lived
/// command exits). Blocks until the exporters answered; call it off the async threads.
pub fn flush() {
    crate::otel_metrics::flush();
    crate::otel::flush_traces();
}

/// Flushes and stops the trace and metric exporters, at process end. Later spans and
/// metrics are dropped.
pub fn shutdown() {
    crate::otel_metrics::shutdown();
    crate::otel::shutdown_traces();
}

/// Target prefix of the spans exported as traces: our own crates (`mono2mesh_infra`,
/// `mono2mesh_api`, the workers...), not the libraries under them.
pub const TRACED_TARGETS: &str = "mono2mesh";

/// `OTEL_SERVICE_NAME`, else the program's file name (`mono2mesh-gate`).
pub fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            let arg0 = std::env::args_os().next()?;
            Some(std::path::Path::new(&arg0).file_stem()?.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mono2mesh".to_string())
}

/// Everything a worker needs at start-up: logs and traces, then the metrics
/// recorder (Prometheus listener, OTLP export) as configured. Returns the metrics handle when a listener was started.
pub fn init(settings: &TelemetrySettings) -> Result<Option<PrometheusHandle>, TelemetryError> {
    init_tracing(settings)?;
    install_metrics(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders what `f` recorded into a private recorder (no global state).
    fn record_locally(f: impl FnOnce()) -> String {
        let recorder = prometheus_builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    fn sample(rendered: &str, prefix: &str) -> Option<f64> {
        rendered
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn finished_timer_records_outcome_duration_and_inflight() {
        let out = record_locally(|| {
            let t = StageTimer::start(Stage::Gate);
            let u = StageTimer::start(Stage::Gate);
            t.finish(StageOutcome::Ok);
            u.finish(StageOutcome::Rejected);
        });
        assert_eq!(sample(&out, "mono2mesh_stage_received_total{stage=\"gate\"}"), Some(2.0), "{out}");
        assert_eq!(sample(&out, "mono2mesh_stage_finished_total{stage=\"gate\",outcome=\"ok\"}"), Some(1.0), "{out}");
        assert_eq!(sample(&out, "mono2mesh_stage_finished_total{stage=\"gate\",outcome=\"rejected\"}"), Some(1.0));
        assert_eq!(sample(&out, "mono2mesh_stage_inflight{stage=\"gate\"}"), Some(0.0));
        // a real histogram (buckets), not a summary
        assert_eq!(
            sample(&out, "mono2mesh_stage_duration_seconds_bucket{stage=\"gate\",outcome=\"ok\",le=\"+Inf\"}"),
            Some(1.0),
            "{out}"
        );
    }

    #[test]
    fn dropped_or_panicking_handler_is_recorded_as_abandoned() {
        let out = record_locally(|| {
            let _ = std::panic::catch_unwind(|| {
                let _timer = StageTimer::start(Stage::Refine);
                panic!("handler bug");
            });
            drop(StageTimer::start(Stage::Refine));
        });
        assert_eq!(
            sample(&out, "mono2mesh_stage_finished_total{stage=\"refine\",outcome=\"abandoned\"}"),
            Some(2.0),
            "{out}"
        );
        assert_eq!(sample(&out, "mono2mesh_stage_inflight{stage=\"refine\"}"), Some(0.0));
    }
}
