//! Webhooks end to end: jobs submitted over the real HTTP API with a `webhook_url`,
//! finished in the real job store (Postgres), and a real HTTP receiver in this test
//! that checks each call's HMAC signature. A failing receiver is retried with back-off
//! until it answers, or until the attempts run out; every call lands in the job's
//! history. Fails, rather than skips, when Postgres is missing.

mod support;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use mono2mesh_api::ingest::{Ingest, IngestError, PhotoMeta};
use mono2mesh_api::webhook::{self, Dispatcher, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use mono2mesh_core::{JobId, JobState, Stage};
use mono2mesh_infra::config::WebhookSettings;
use mono2mesh_infra::jobs::JobUpdate;
use mono2mesh_infra::secret::SecretString;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const SECRET: &str = "webhook-test-secret";

#[derive(Debug, Clone)]
struct Call {
    mode: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Receiver {
    fn calls(&self, mode: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.mode == mode).cloned().collect()
    }

    async fn wait_for(&self, mode: &str, count: usize, limit: Duration) -> Vec<Call> {
        let deadline = Instant::now() + limit;
        loop {
            let calls = self.calls(mode);
            if calls.len() >= count {
                return calls;
            }
            assert!(Instant::now() < deadline, "{mode}: {} of {count} calls after {limit:?}", calls.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `ok` answers 204; `flaky` answers 500 twice, then 200; `down` always 503.
async fn hook(State(receiver): State<Receiver>, Path(mode): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let earlier = receiver.calls(&mode).len();
    receiver.calls.lock().unwrap().push(Call { mode: mode.clone(), headers, body, at: Instant::now() });
    match mode.as_str() {
        "ok" => StatusCode::NO_CONTENT,
        "flaky" if earlier < 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "flaky" => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn start_receiver() -> (Receiver, String) {
    let receiver = Receiver::default();
    let app = Router::new().route("/hook/{mode}", post(hook)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, base)
}

fn settings() -> WebhookSettings {
    WebhookSettings {
        url: None,
        secret: SecretString::new(SECRET),
        public_url: Some("https://m2m.example/".into()),
        timeout_ms: 2000,
        max_attempts: 3,
        retry_delays_ms: vec![200, 400],
        poll_interval_ms: 50,
        // The receiver listens on 127.0.0.1; see the SSRF test for the default.
        allow_private_networks: true,
    }
}

/// Checks the call's signature as a receiver would, and returns its JSON body.
fn verified(call: &Call) -> Value {
    let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let timestamp: i64 = header(TIMESTAMP_HEADER).parse().expect("a unix timestamp header");
    let signature = header(SIGNATURE_HEADER);
    assert!(webhook::verify(SECRET.as_bytes(), timestamp, &call.body, &signature), "bad signature {signature:?}");
    assert!(!webhook::verify(b"not-the-secret", timestamp, &call.body, &signature));
    assert_eq!(header("content-type"), "application/json");
    serde_json::from_slice(&call.body).expect("a JSON body")
}

async fn submit(h: &Harness, seed: u8, fields: &[(&str, &str)]) -> JobId {
    let response = h.post_photo(png(seed, 32), fields, Some(TOKEN)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn webhook_events(h: &Harness, id: JobId) -> Vec<Value> {
    let events = h.jobs().events(id).await.unwrap();
    events.into_iter().filter(|e| e.event == webhook::WEBHOOK_EVENT).map(|e| e.detail).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_call_their_webhook_signed_and_failing_receivers_are_retried() {
    let h = Harness::local().await;
    let (receiver, base) = start_receiver().await;
    let ok_url = format!("{base}/hook/ok");
    let flaky_url = format!("{base}/hook/flaky");
    let down_url = format!("{base}/hook/down");

    let done = submit(&h, 1, &[("external_id", "SKU-1"), ("webhook_url", &ok_url)]).await;
    let rejected = submit(&h, 2, &[("webhook_url", &flaky_url)]).await;
    let failed = submit(&h, 3, &[("webhook_url", &down_url)]).await;
    let unfinished = submit(&h, 4, &[("webhook_url", &ok_url)]).await;
    let silent = submit(&h, 5, &[]).await; // no webhook asked for, none configured

    let dispatcher = Dispatcher::new(h.jobs().clone(), &settings()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dispatcher.run(async move {
        let _ = stopped.await;
    }));

    complete_job(h.jobs(), h.blobs.as_ref(), done, &[("mesh_glb", "mesh.glb", b"glTF")]).await;
    let reject = JobUpdate { error: Some("too blurry".into()), ..JobUpdate::default() };
    h.jobs().advance(rejected, Some(Stage::Gate), JobState::Rejected, reject).await.unwrap();
    let fail = JobUpdate { error: Some("voxel input unreadable".into()), ..JobUpdate::default() };
    h.jobs().advance(failed, Some(Stage::Gate), JobState::Failed, fail).await.unwrap();
    h.jobs().advance(silent, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();

    // The done job: one signed call with the job, its outputs and absolute links.
    let calls = receiver.wait_for("ok", 1, Duration::from_secs(10)).await;
    let body = verified(&calls[0]);
    assert_eq!(body["event"], "job.finished");
    assert_eq!(body["job_id"], done.to_string());
    assert_eq!(body["external_id"], "SKU-1");
    assert_eq!(body["state"], "done");
    assert_eq!(body["reason"], Value::Null);
    let mesh_key = body["outputs"]["mesh_glb"].as_str().expect("the mesh's key");
    assert!(mesh_key.starts_with("jobs/") && mesh_key.ends_with("mesh.glb"), "{mesh_key}");
    assert_eq!(body["links"]["self"], format!("https://m2m.example/v1/jobs/{done}"));
    assert_eq!(body["links"]["downloads"]["mesh_glb"], format!("https://m2m.example/v1/jobs/{done}/outputs/mesh_glb"));
    assert_eq!(calls[0].headers[DELIVERY_HEADER], format!("{done}:1").as_str());

    // The rejected job's receiver fails twice: retried after the back-off, then delivered.
    let flaky = receiver.wait_for("flaky", 3, Duration::from_secs(10)).await;
    for call in &flaky {
        let body = verified(call);
        assert_eq!((body["state"].as_str(), body["reason"].as_str()), (Some("rejected"), Some("too blurry")));
    }
    assert!(flaky[1].at - flaky[0].at >= Duration::from_millis(200), "first back-off respected");
    assert!(flaky[2].at - flaky[1].at >= Duration::from_millis(400), "second back-off respected");
    let deliveries: Vec<&str> = flaky.iter().map(|c| c.headers[DELIVERY_HEADER].to_str().unwrap()).collect();
    assert_eq!(deliveries, [format!("{rejected}:1"), format!("{rejected}:2"), format!("{rejected}:3")]);

    // The failed job's receiver is down: three attempts, then the notification gives up.
    let down = receiver.wait_for("down", 3, Duration::from_secs(10)).await;
    assert_eq!(verified(&down[0])["state"], "failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.jobs().webhooks().state(failed).await.unwrap().unwrap().state != "failed" {
        assert!(Instant::now() < deadline, "the down receiver's notification never gave up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The flaky one is recorded as delivered once its third call has been answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.jobs().webhooks().state(rejected).await.unwrap().unwrap().state != "delivered" {
        assert!(Instant::now() < deadline, "the flaky receiver's notification never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An unfinished job is not notified; finishing it is what triggers the call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.calls("ok").len(), 1, "only the done job called so far");
    h.jobs().advance(unfinished, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();
    let calls = receiver.wait_for("ok", 2, Duration::from_secs(10)).await;
    assert_eq!(verified(&calls[1])["job_id"], unfinished.to_string());

    let _ = stop.send(());
    running.await.unwrap();
    // Nothing more went out: no duplicate calls, and nothing for the job without a webhook.
    assert_eq!(receiver.calls("ok").len(), 2);
    assert_eq!(receiver.calls("flaky").len(), 3);
    assert_eq!(receiver.calls("down").len(), 3, "max_attempts = 3");
    assert!(h.jobs().webhooks().state(silent).await.unwrap().is_none());

    // Every call is in the job's history (and so in GET /v1/jobs/{id}/events).
    let state = h.jobs().webhooks().state(rejected).await.unwrap().unwrap();
    assert_eq!((state.attempts, state.last_status, state.last_error), (3, Some(200), None));
    let outcomes: Vec<(Value, Value)> =
        webhook_events(&h, rejected).await.iter().map(|d| (d["outcome"].clone(), d["status"].clone())).collect();
    let expected: Vec<(Value, Value)> =
        [("pending", 500), ("pending", 500), ("delivered", 200)].iter().map(|(o, s)| ((*o).into(), (*s).into())).collect();
    assert_eq!(outcomes, expected);
    let down_state = h.jobs().webhooks().state(failed).await.unwrap().unwrap();
    assert_eq!((down_state.state.as_str(), down_state.attempts, down_state.last_status), ("failed", 3, Some(503)));
    let down_events = webhook_events(&h, failed).await;
    assert_eq!(down_events.iter().map(|d| d["outcome"].as_str().unwrap()).collect::<Vec<_>>(), ["pending", "pending", "failed"]);
    let job: Value = h.http.get(h.url(&format!("/v1/jobs/{failed}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["webhook"]["state"], "failed", "the job view shows the notification: {job}");
    assert_eq!((job["webhook"]["attempts"].as_i64(), job["webhook"]["last_status"].as_i64()), (Some(3), Some(503)));
    // Shown masked: scheme, host and port only (the path may hold the receiver's secret).
    assert_eq!(job["webhook"]["url"], format!("{base}/…"), "{job}");
    let down_history = h.http.get(h.url(&format!("/v1/jobs/{failed}/events"))).send().await.unwrap().text().await.unwrap();
    assert!(!down_history.contains("/hook/down"), "{down_history}");
    let silent_view: Value = h.http.get(h.url(&format!("/v1/jobs/{silent}"))).send().await.unwrap().json().await.unwrap();
    assert!(silent_view.get("webhook").is_none(), "no webhook, no field: {silent_view}");
    let events: Value = h.http.get(h.url(&format!("/v1/jobs/{done}/events"))).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(listed.last(), Some(&"webhook"), "{events}");
    h.finish().await;
}

/// `webhook.url` applies to jobs submitted without one, also through `mono2mesh
/// submit`'s path (the ingest, no HTTP); a bad URL is a 400 before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_default_applies_and_bad_urls_are_refused() {
    let h = Harness::local().await;
    let (receiver, base) = start_receiver().await;
    let ingest = Ingest { default_webhook: Some(format!("{base}/hook/ok")), ..h.ingest.clone() };
    let meta = PhotoMeta { batch: "defaults".into(), ..PhotoMeta::default() };
    let by_default = ingest.submit_photo(png(9, 32).into(), &meta).await.unwrap().job.id;
    let own = PhotoMeta { webhook_url: Some(format!("{base}/hook/flaky")), ..meta.clone() };
    let with_own = ingest.submit_photo(png(10, 32).into(), &own).await.unwrap().job.id;
    assert_eq!(h.jobs().webhooks().state(by_default).await.unwrap().unwrap().url, format!("{base}/hook/ok"));
    assert_eq!(h.jobs().webhooks().state(with_own).await.unwrap().unwrap().url, format!("{base}/hook/flaky"));

    // Resubmitting a finished photo with a webhook notifies at once.
    complete_job(h.jobs(), h.blobs.as_ref(), by_default, &[]).await;
    let dispatcher = Dispatcher::new(h.jobs().clone(), &settings()).unwrap();
    let outcomes = dispatcher.dispatch_due().await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(verified(&receiver.calls("ok")[0])["job_id"], by_default.to_string());

    for bad in ["ftp://x.example/hook", "not a url"] {
        let before = h.jobs().recent_jobs(100).await.unwrap().len();
        let response = h.post_photo(png(11, 32), &[("webhook_url", bad)], Some(TOKEN)).await;
        expect_error(response, 400, "invalid_webhook_url").await;
        assert_eq!(h.jobs().recent_jobs(100).await.unwrap().len(), before, "nothing stored for {bad:?}");
    }
    let response = h
        .http
        .post(h.url("/v1/batches"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "b", "webhook_url": "gopher://x", "items": [{ "key": "jobs/nope.png" }] }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"][0]["error"]["code"], "invalid_webhook_url", "{body}");
    h.finish().await;
}

/// By default the dispatcher refuses to call into private networks (SSRF): a URL on a
/// loopback or link-local address, or a name resolving only to such addresses, is
/// recorded as refused at once, without a call and without retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_network_targets_are_refused_unless_allowed() {
    let h = Harness::local().await;
    let (receiver, base) = start_receiver().await;
    let port = base.rsplit(':').next().unwrap().to_string();

    // With the guard on, an IP literal that is not public is refused at submission,
    // before anything is stored; a name is resolved (and judged) only when called.
    let strict = Ingest { allow_private_webhooks: false, ..h.ingest.clone() };
    for url in ["http://10.0.0.5/hook", "http://[::1]:8080/hook", "http://169.254.169.254/latest/meta-data/"] {
        let meta = PhotoMeta { batch: "strict".into(), webhook_url: Some(url.into()), ..PhotoMeta::default() };
        let refused = strict.submit_photo(png(30, 32).into(), &meta).await.unwrap_err();
        assert!(matches!(refused, IngestError::WebhookNotPublic { .. }), "{url}: {refused}");
    }
    assert!(h.jobs().batch_summary("strict").await.unwrap().is_none(), "nothing stored");
    let by_ip = submit(&h, 21, &[("webhook_url", &format!("{base}/hook/ok"))]).await;
    let by_name = submit(&h, 22, &[("webhook_url", &format!("http://localhost:{port}/hook/ok"))]).await;
    let metadata = submit(&h, 23, &[("webhook_url", "http://169.254.169.254/latest/meta-data/")]).await;
    for id in [by_ip, by_name, metadata] {
        h.jobs().advance(id, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();
    }

    let guarded = WebhookSettings { allow_private_networks: false, ..settings() };
    let outcomes = Dispatcher::new(h.jobs().clone(), &guarded).unwrap().dispatch_due().await.unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for (id, outcome) in &outcomes {
        match outcome {
            webhook::CallOutcome::GaveUp { status: None, error } => {
                assert!(error.contains("not a public address"), "{id}: {error}")
            }
            other => panic!("{id}: expected a refusal, got {other:?}"),
        }
        let state = h.jobs().webhooks().state(*id).await.unwrap().unwrap();
        assert_eq!((state.state.as_str(), state.attempts), ("failed", 1), "refused once, not retried");
    }
    assert!(receiver.calls("ok").is_empty(), "nothing reached the private receiver");

    // With the guard off (receivers inside the deployment's network), the same URL is called.
    let allowed = submit(&h, 24, &[("webhook_url", &format!("http://localhost:{port}/hook/ok"))]).await;
    h.jobs().advance(allowed, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();
    let outcomes = Dispatcher::new(h.jobs().clone(), &settings()).unwrap().dispatch_due().await.unwrap();
    assert!(matches!(outcomes.as_slice(), [(id, webhook::CallOutcome::Delivered { .. })] if *id == allowed), "{outcomes:?}");
    assert_eq!(verified(&receiver.calls("ok")[0])["job_id"], allowed.to_string());
    h.finish().await;
}
