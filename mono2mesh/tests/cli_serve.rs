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

const TOKEN: &str = "5c1e9a7f3b2d8e4a6c0f1b9d7e3a5c2f";
const READ_TOKEN: &str = "a4f8c2e6b0d3f7a1c5e9b2d6f0a4c8e1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `serve` with the rig's environment plus `extra`, listening on port 0, and
/// returns it with the address it bound (the line it prints on stdout), so that no
/// other process can take the port between a probe and the bind.
fn spawn_serve(rig: &PipelineRig, extra: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
        .arg("serve")
        .env_clear()
        .envs(rig.worker_env())
        .env("MONO2MESH__API__LISTEN", "127.0.0.1:0")
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mono2mesh serve: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let (false, Some(addr)) = (sent, line.strip_prefix("listening on ")) {
                let _ = found.send(addr.to_string());
                sent = true;
            }
        }
    });
    let base = address.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("serve never said where it listens"));
    (child, base)
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
    // The metrics exporter cannot report a port-0 bind, so it gets a probed port.
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    // All of it from [api] settings in the environment, no flags.
    let env = [
        ("MONO2MESH__API__TOKENS", TOKEN),
        ("MONO2MESH__API__READ_TOKENS", READ_TOKEN),
        ("MONO2MESH__WEBHOOK__SECRET", "serve-test-secret"),
        ("MONO2MESH__TELEMETRY__PROMETHEUS_LISTEN", metrics_listen.as_str()),
    ];
    let (server, base) = spawn_serve(&rig, &env);
    let http = reqwest::Client::new();
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

    let fetched: Value = http.get(format!("{base}/v1/jobs/{id}")).bearer_auth(READ_TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched["external_id"], "SKU-42");
    // Reads need a token too; the read token (api.read_tokens) cannot write.
    assert_eq!(http.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().status(), 401);
    let read_only = http.post(format!("{base}/v1/jobs")).bearer_auth(READ_TOKEN).send().await.unwrap();
    assert_eq!(read_only.status(), 403);

    // The process's own metrics: the upload's S3 put and the job store's calls.
    let metrics = http.get(format!("http://{metrics_listen}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mono2mesh_blob_request_seconds_count{op="put",outcome="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"mono2mesh_db_query_seconds_count{op="submit"} 1"#), "{metrics}");

    let status = stop_gracefully(server);
    assert!(status.success(), "serve exit status after SIGTERM: {status}");
    rig.finish().await;
}

/// A guessable token is refused at start, saying how to make a good one, before any
/// service is contacted.
#[test]
fn serve_refuses_weak_tokens() {
    for (flag, token) in [("--token", "change-me"), ("--token", "changeme-changeme-changeme"), ("--read-token", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--unsigned-webhooks"];
        if flag == "--read-token" {
            args.extend(["--token", TOKEN]);
        }
        args.extend([flag, token]);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mono2mesh"))
            .args(&args)
            .env("MONO2MESH__DATABASE__URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {token}: started");
        assert!(stderr.contains("too weak") && stderr.contains("openssl rand -hex 32"), "{flag} {token}: {stderr}");
        assert!(!stderr.contains(token), "the token is not printed: {stderr}");
    }
}
