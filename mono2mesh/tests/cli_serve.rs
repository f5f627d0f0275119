//! The `mono2mesh serve` binary itself, as compose runs it: configured only through the
//! environment, against a real Postgres, RabbitMQ and S3 server
//! (`mono2mesh_testkit::rig`). A photo posted over HTTP is stored, recorded and published
//! on the broker's gate lane, the job reads back, the process serves its metrics, and
//! SIGTERM stops it cleanly. Fails, rather than skips, when RabbitMQ or Postgres is missing.

use mono2mesh_core::{JobId, JobState};
use mono2mesh_infra::blob::BlobStore;
use mono2mesh_infra::queue::Lane;
use mono2mesh_testkit::rig::{stop_gracefully, PipelineRig};
use serde_json::Value;
use std::io::Cursor;
use std::time::{Duration, Instant};

const TOKEN: &str = "serve-test-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn photo() -> Vec<u8> {
    let image = image::RgbImage::from_fn(96, 80, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8]));
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png
}

async fn wait_until_up(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_photos_into_the_real_services_and_stops_cleanly() {
    let rig = PipelineRig::start("serve").await;
    let (port, metrics_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    // All of it from [api] settings in the environment, no flags.
    let env = [
        ("MONO2MESH__API__LISTEN", listen.as_str()),
        ("MONO2MESH__API__TOKENS", TOKEN),
        ("MONO2MESH__WEBHOOK__SECRET", "serve-test-secret"),
        ("MONO2MESH__TELEMETRY__PROMETHEUS_LISTEN", metrics_listen.as_str()),
    ];
    let server = rig.spawn_worker_with_env(env!("CARGO_BIN_EXE_mono2mesh"), &["serve"], &env);
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    wait_until_up(&http, &format!("{base}/healthz")).await;

    let form = reqwest::multipart::Form::new()
        .part("photo", reqwest::multipart::Part::bytes(photo()).file_name("chair.png"))
        .text("batch", "serve-e2e")
        .text("external_id", "SKU-42");
    let response = http.post(format!("{base}/v1/jobs")).bearer_auth(TOKEN).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id: JobId = created["id"].as_str().unwrap().parse().unwrap();
    let unauthorised = http.post(format!("{base}/v1/jobs")).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401, "writes need the token from api.tokens");

    // Recorded in Postgres, the photo in S3, the gate message on RabbitMQ.
    let job = rig.jobs().get_job(id).await.unwrap();
    assert_eq!((job.state, job.external_id.as_deref()), (JobState::Submitted, Some("SKU-42")));
    assert_eq!(rig.s3.store.get(&job.input_key).await.unwrap().as_ref(), photo().as_slice());
    let on_gate_lane = rig.drain_lane(Lane::Gate).await;
    assert_eq!(on_gate_lane.get(&id), Some(&1), "{on_gate_lane:?}");

    let fetched: Value = http.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched["external_id"], "SKU-42");

    // The process's own metrics: the upload's S3 put and the job store's calls.
    let metrics = http.get(format!("http://{metrics_listen}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mono2mesh_blob_request_seconds_count{op="put",outcome="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"mono2mesh_db_query_seconds_count{op="submit"} 1"#), "{metrics}");

    let status = stop_gracefully(server);
    assert!(status.success(), "serve exit status after SIGTERM: {status}");
    rig.finish().await;
}
