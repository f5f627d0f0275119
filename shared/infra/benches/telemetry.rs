//! What the metrics cost one delivery: the recordings a stage makes while handling one
//! message (stage timer, time queued, two blob requests, one job-store call), into no
//! recorder, the Prometheus recorder, the OTLP recorder, and both behind the fan-out
//! the workers install when both are configured. Exports are not part of it (the OTLP
//! reader runs on its own thread every few seconds).

use criterion::{criterion_group, criterion_main, Criterion};
use metrics::Recorder;
use metrics_util::layers::FanoutBuilder;
use mono2mesh_core::Stage;
use mono2mesh_infra::otel_metrics::{meter_provider, OtelRecorder, METER_NAME};
use mono2mesh_infra::telemetry::{describe_metrics, names, prometheus_builder, StageOutcome, StageTimer};
use opentelemetry::metrics::MeterProvider;
use std::time::Duration;

fn one_delivery() {
    let timer = StageTimer::start(Stage::Gate);
    metrics::histogram!(names::QUEUE_WAIT, "stage" => "gate").record(0.012);
    metrics::histogram!(names::BLOB_REQUEST, "op" => "get", "outcome" => "ok").record(0.002);
    metrics::histogram!(names::BLOB_REQUEST, "op" => "put", "outcome" => "ok").record(0.003);
    metrics::histogram!(names::DB_QUERY, "op" => "advance").record(0.004);
    timer.finish(StageOutcome::Ok);
}

fn otel_recorder() -> (OtelRecorder, opentelemetry_sdk::metrics::SdkMeterProvider) {
    // Nothing listens there, and the interval outlasts the run: no export happens.
    let provider = meter_provider("bench", "http://127.0.0.1:9", Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("meter provider: {e}"));
    (OtelRecorder::new(provider.meter(METER_NAME)), provider)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_per_delivery");
    group.bench_function("no_recorder", |b| b.iter(one_delivery));

    let prometheus = prometheus_builder().unwrap_or_else(|e| panic!("{e}")).build_recorder();
    metrics::with_local_recorder(&prometheus, || {
        describe_metrics();
        group.bench_function("prometheus", |b| b.iter(one_delivery));
    });

    let (otel, _otel_provider) = otel_recorder();
    metrics::with_local_recorder(&otel, || {
        describe_metrics();
        group.bench_function("otlp", |b| b.iter(one_delivery));
    });

    let (otel, _both_provider) = otel_recorder();
    let prometheus = prometheus_builder().unwrap_or_else(|e| panic!("{e}")).build_recorder();
    let both = FanoutBuilder::default().add_recorder(prometheus).add_recorder(otel).build();
    metrics::with_local_recorder(&both as &dyn Recorder, || {
        describe_metrics();
        group.bench_function("prometheus_and_otlp", |b| b.iter(one_delivery));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
