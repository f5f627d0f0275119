//! The server's limits, driven over raw TCP so that the client can stall mid-body:
//! a body declared too large is refused before it is read, a photo is refused as soon
//! as it passes the cap while streaming in, a request that takes too long gets 503,
//! and requests beyond the in-flight limit are shed with 503 and `Retry-After`.

mod support;

use mono2mesh_api::server::ApiConfig;
use mono2mesh_infra::secret::SecretString;
use std::time::{Duration, Instant};
use support::{Harness, MAX_BODY, MAX_PHOTO, TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends `head` (request line and headers, without the blank
/// line) and then `body`, and leaves the connection open for more.
async fn send_partial(h: &Harness, head: &str, body: &[u8]) -> TcpStream {
    let addr = h.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// The response's status line and headers and as much body as came, read until the
/// server stops sending or `within` passes (a response that never comes fails).
async fn read_response(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                // Enough once the JSON error body has closed.
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(!text.is_empty(), "no response within {within:?}");
    text
}

fn status_of(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line: {response:?}"))
}

const BOUNDARY: &str = "limitsboundary";

fn multipart_photo_head(filler: usize) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"\x89PNG\r\n\x1A\n");
    body.resize(body.len() + filler, 7);
    body
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_read() {
    let h = Harness::local().await;
    // A gigabyte declared, a kilobyte sent, then nothing: only a server that answers
    // without reading the body answers at all.
    let head = |auth: &str| {
        format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: 1000000000"
        )
    };
    let mut stream = send_partial(&h, &head(&format!("Authorization: Bearer {TOKEN}\r\n")), &multipart_photo_head(1024)).await;
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(response.contains("body_too_large"), "{response}");
    // Without a token the answer is 401, also before the body.
    let mut stream = send_partial(&h, &head(""), &multipart_photo_head(1024)).await;
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 401, "{response}");
    assert!(h.jobs().batches().await.unwrap().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_photo_is_refused_as_soon_as_it_passes_the_cap_while_streaming() {
    let h = Harness::local().await;
    assert!(MAX_PHOTO as usize + 32 * 1024 < MAX_BODY, "the photo cap must bite before the body limit");
    // Chunked, no length: the server learns the size only by reading. Past the photo cap
    // (but under the body limit) the client stalls without ending the body.
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked"
    );
    let part = multipart_photo_head(MAX_PHOTO as usize + 16 * 1024);
    let mut chunked = format!("{:x}\r\n", part.len()).into_bytes();
    chunked.extend_from_slice(&part);
    chunked.extend_from_slice(b"\r\n");
    let mut stream = send_partial(&h, &head, &chunked).await;
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(response.contains("photo_too_large"), "{response}");
    assert!(h.jobs().batches().await.unwrap().is_empty());
    h.finish().await;
}

fn config(timeout: Duration, max_in_flight: usize) -> ApiConfig {
    ApiConfig {
        tokens: vec![SecretString::new(TOKEN)],
        max_body_bytes: MAX_BODY,
        request_timeout: timeout,
        max_in_flight,
        ..ApiConfig::default()
    }
}

/// A write whose body never finishes: the slow client the time-out is for.
async fn stalled_upload(h: &Harness) -> TcpStream {
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 100000"
    );
    send_partial(h, &head, &multipart_photo_head(100)).await
}

/// The `upload-*` spool files in `dir`, with their sizes.
fn spool_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.metadata().unwrap().len()))
        .filter(|(name, _)| name.starts_with("upload-"))
        .collect()
}

/// Waits up to 5 s for the spool directory to satisfy `done`.
async fn wait_for_spool(dir: &std::path::Path, what: &str, done: impl Fn(&[(String, u64)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let files = spool_files(dir);
        if done(&files) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: spool holds {files:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn uploads_are_spooled_to_disk_as_they_arrive_and_the_spool_file_always_goes() {
    let spool = tempfile::tempdir().unwrap();
    let h = Harness::local_with(ApiConfig { spool_dir: spool.path().to_path_buf(), ..config(Duration::from_secs(30), 64) }).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 400000"
    );

    // Part of a photo sent, then the client stalls: what came is on disk, beyond one
    // write buffer (64 KiB), not held in memory until the body ends.
    let sent = 200 * 1024;
    let stalled = send_partial(&h, &head, &multipart_photo_head(sent)).await;
    wait_for_spool(spool.path(), "a stalled upload's bytes on disk", |files| {
        files.len() == 1 && files[0].1 >= (sent - 64 * 1024) as u64
    })
    .await;
    // The client goes away: the partial upload is removed, and nothing was recorded.
    drop(stalled);
    wait_for_spool(spool.path(), "after the client hung up", <[_]>::is_empty).await;

    // Past the photo cap: 413, and the spool file goes with the request.
    let mut over = send_partial(&h, &head, &multipart_photo_head(MAX_PHOTO as usize + 1024)).await;
    let response = read_response(&mut over, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 413, "{response}");
    wait_for_spool(spool.path(), "after a photo over the cap", <[_]>::is_empty).await;
    assert!(h.jobs().batches().await.unwrap().is_empty());

    // A whole upload: stored byte for byte from its spool file, which is then removed.
    let photo = support::png(5, 200);
    let response = h.post_photo(photo.clone(), &[("batch", "spooled")], Some(TOKEN)).await;
    assert_eq!(response.status(), 201);
    let job: serde_json::Value = response.json().await.unwrap();
    let stored = h.blobs.get(&mono2mesh_infra::blob::BlobKey::parse(job["input_key"].as_str().unwrap()).unwrap()).await.unwrap();
    assert_eq!(stored.as_ref(), photo.as_slice());
    assert_eq!(spool_files(spool.path()), vec![]);
    // The same photo again is the same job (the hash taken while spooling dedupes).
    let again: serde_json::Value =
        h.post_photo(photo, &[("batch", "spooled")], Some(TOKEN)).await.json().await.unwrap();
    assert_eq!(again["id"], job["id"]);
    assert_eq!(spool_files(spool.path()), vec![]);
    h.finish().await;
}

#[tokio::test]
async fn a_slow_client_gets_503_at_the_time_limit() {
    let h = Harness::local_with(config(Duration::from_millis(800), 64)).await;
    let started = Instant::now();
    let mut stream = stalled_upload(&h).await;
    let response = read_response(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(status_of(&response), 503, "{response}");
    assert!(response.contains("\"timeout\""), "{response}");
    assert!(response.to_ascii_lowercase().contains("retry-after:"), "{response}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(5), "answered after {took:?}");
    h.finish().await;
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed() {
    let h = Harness::local_with(config(Duration::from_secs(30), 1)).await;
    let busy = stalled_upload(&h).await;
    // The stalled upload holds the only slot once the server has its headers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        let response = h.http.get(h.url("/v1/stats")).send().await.unwrap();
        if response.status() == 503 {
            break response;
        }
        assert!(Instant::now() < deadline, "never shed; last status {}", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shed.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()), Some("5".into()));
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Liveness is not shed: an overloaded server is still alive.
    assert_eq!(h.http.get(h.url("/healthz")).send().await.unwrap().status(), 200);
    drop(busy);
    // The slot comes back when the stalled request ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = h.http.get(h.url("/v1/stats")).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}
