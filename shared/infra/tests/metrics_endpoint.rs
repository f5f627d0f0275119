//! The Prometheus listener serves what the stage timer records. Its own test binary,
//! because it installs the process-global metrics recorder.

use mono2mesh_core::Stage;
use mono2mesh_infra::telemetry::{install_prometheus, StageOutcome, StageTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await?;
    let mut body = String::new();
    socket.read_to_string(&mut body).await?;
    Ok(body)
}

#[tokio::test]
async fn metrics_listener_serves_stage_metrics() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    install_prometheus(addr).unwrap();
    StageTimer::start(Stage::Classify).finish(StageOutcome::Retried);

    let mut last = Err(std::io::Error::other("never scraped"));
    for _ in 0..50 {
        last = scrape(addr).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = last.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("mono2mesh_stage_finished_total{stage=\"classify\",outcome=\"retried\"} 1"), "{body}");
    assert!(body.contains("# HELP mono2mesh_stage_duration_seconds"), "descriptions are registered: {body}");
}
