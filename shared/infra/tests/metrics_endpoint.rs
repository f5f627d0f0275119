//! Every metric reaches both exporters a worker runs: the Prometheus `/metrics`
//! listener and the OTLP/HTTP push to a collector (a real HTTP receiver decoding the
//! protobuf). Its own test binary, because it installs the process-global recorder.

use mono2mesh_core::Stage;
use mono2mesh_infra::config::{LogFormat, TelemetrySettings};
use mono2mesh_infra::telemetry::{buckets_for, install_metrics, names, service_name, StageOutcome, StageTimer};
use mono2mesh_testkit::otlp::{OtlpReceiver, PointValue};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await?;
    let mut body = String::new();
    socket.read_to_string(&mut body).await?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_metrics_are_scraped_and_pushed_over_otlp() {
    let receiver = OtlpReceiver::start();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let settings = TelemetrySettings {
        log_filter: "warn".into(),
        log_format: LogFormat::Text,
        otlp_endpoint: Some(receiver.endpoint.clone()),
        prometheus_listen: Some(addr),
        health_listen: None,
        // Longer than the test: what arrives comes from the explicit flush below.
        metrics_interval_ms: 600_000,
    };
    install_metrics(&settings).unwrap();
    StageTimer::start(Stage::Classify).finish(StageOutcome::Retried);
    StageTimer::start(Stage::Classify).finish(StageOutcome::Retried);
    let still_running = StageTimer::start(Stage::Classify);
    metrics::histogram!(names::BATCH_SIZE, "stage" => "reconstruct").record(3.0);
    metrics::histogram!(names::BATCH_SIZE, "stage" => "reconstruct").record(8.0);

    tokio::task::spawn_blocking(mono2mesh_infra::telemetry::flush).await.unwrap();
    let service = service_name();
    let wait = Duration::from_secs(10);
    let finished = receiver
        .wait_for_point(&service, names::STAGE_FINISHED, &[("stage", "classify"), ("outcome", "retried")], wait, |_| true)
        .await;
    assert_eq!(finished.value, PointValue::Sum { value: 2.0, monotonic: true });

    let duration = receiver
        .wait_for_point(&service, names::STAGE_DURATION, &[("stage", "classify"), ("outcome", "retried")], wait, |_| true)
        .await;
    assert_eq!(duration.unit, "s", "described units travel");
    let PointValue::Histogram { count, bounds, bucket_counts, .. } = &duration.value else {
        panic!("duration is a histogram: {duration:?}")
    };
    assert_eq!(*count, 2);
    assert_eq!(bounds.as_slice(), buckets_for(names::STAGE_DURATION).unwrap(), "the Prometheus buckets");
    assert_eq!(bucket_counts.iter().sum::<u64>(), 2);

    let inflight = receiver.wait_for_point(&service, names::STAGE_INFLIGHT, &[("stage", "classify")], wait, |_| true).await;
    assert_eq!(inflight.value, PointValue::Gauge(1.0), "two finished, one still running");

    let batch = receiver.wait_for_point(&service, names::BATCH_SIZE, &[("stage", "reconstruct")], wait, |_| true).await;
    let PointValue::Histogram { count, sum, bounds, bucket_counts } = &batch.value else { panic!("{batch:?}") };
    assert_eq!((*count, *sum), (2, 11.0));
    assert_eq!(bounds.as_slice(), buckets_for(names::BATCH_SIZE).unwrap());
    // 3 falls in (2, 4], 8 in (4, 8]
    assert_eq!(&bucket_counts[..5], &[0, 0, 1, 1, 0]);
    assert!(receiver.bad_requests().is_empty(), "{:?}", receiver.bad_requests());

    // The same figures on the scrape endpoint.
    let mut last = Err(std::io::Error::other("never scraped"));
    for _ in 0..50 {
        last = scrape(addr).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = last.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("mono2mesh_stage_finished_total{stage=\"classify\",outcome=\"retried\"} 2"), "{body}");
    assert!(body.contains("mono2mesh_stage_inflight{stage=\"classify\"} 1"), "{body}");
    assert!(body.contains("# HELP mono2mesh_stage_duration_seconds"), "descriptions are registered: {body}");
    still_running.finish(StageOutcome::Ok);
}
