//! A database outage is a 503 with `Retry-After` on every route that needs the
//! database (the client retries later), not a permanent 500, and the API recovers
//! by itself once Postgres is back. The outage is a cut [`TcpProxy`] between the
//! API's job store and a real Postgres.

mod support;

use reqwest::Response;
use serde_json::Value;
use support::{expect_error, png, Harness, TOKEN};

async fn expect_unavailable(response: Response, what: &str) {
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_string());
    let seconds = retry_after.as_deref().and_then(|v| v.parse::<u64>().ok());
    assert!(seconds.is_some_and(|s| s > 0), "{what}: Retry-After {retry_after:?}");
    let message = expect_error(response, 503, "service_unavailable").await;
    assert!(message.contains("retry later"), "{what}: {message}");
}

/// `POST /v1/jobs` of one fixed photo with an `Idempotency-Key`.
async fn post_keyed(h: &Harness, key: &str) -> Response {
    let form = reqwest::multipart::Form::new()
        .part("photo", reqwest::multipart::Part::bytes(png(3, 32)).file_name("photo.png"))
        .text("batch", "outage");
    let request = h.http.post(h.url("/v1/jobs")).bearer_auth(TOKEN).header("idempotency-key", key).multipart(form);
    request.send().await.unwrap_or_else(|e| panic!("POST /v1/jobs: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_with_retry_after_and_heals() {
    let (h, proxy) = Harness::local_behind_proxy().await;
    let created = h.post_photo(png(1, 32), &[("batch", "outage")], Some(TOKEN)).await;
    assert_eq!(created.status(), 201);
    let job: Value = created.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(h.take_gate_messages().await.len(), 1);

    proxy.cut().await;
    // Creation: the content lookup and the Idempotency-Key lookup both need the database.
    expect_unavailable(h.post_photo(png(2, 32), &[("batch", "outage")], Some(TOKEN)).await, "POST /v1/jobs").await;
    expect_unavailable(post_keyed(&h, "outage-1").await, "POST /v1/jobs with Idempotency-Key").await;
    for path in [
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/events"),
        "/v1/batches/outage".to_string(),
        "/v1/batches/outage/jobs".to_string(),
        "/v1/stats".to_string(),
        "/v1/status".to_string(),
    ] {
        expect_unavailable(h.http.get(h.url(&path)).send().await.unwrap(), &path).await;
    }
    assert!(h.take_gate_messages().await.is_empty(), "nothing was submitted during the outage");

    proxy.restore().await;
    let job = h.http.get(h.url(&format!("/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(job.status(), 200);
    let retried = post_keyed(&h, "outage-1").await;
    assert_eq!(retried.status(), 201, "the client's retry after the outage goes through");
    assert_eq!(h.take_gate_messages().await.len(), 1);
    let stats = h.http.get(h.url("/v1/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 200);
    h.finish().await;
}
