//! The stores beside the job store (idempotency keys, webhook outbox, operations
//! queries) against a real Postgres, a fresh database per test, and how their errors
//! are classed: constraint violations are the caller's, a lost database is transient.

use mono2mesh_core::{ErrorClass, JobId, JobState, Stage, StageError};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::config::DatabaseSettings;
use mono2mesh_infra::jobs::{JobStore, JobStoreError, JobUpdate, NewJob};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_infra::store::{DeliveryOutcome, KeyLookup};
use mono2mesh_testkit::proxy::{url_socket_addr, TcpProxy};
use mono2mesh_testkit::services::TestDatabase;
use serde_json::json;
use std::time::Duration;

async fn submit(store: &JobStore, batch: &str, hash: &str) -> JobId {
    let id = JobId::new();
    let new = NewJob {
        id,
        batch: batch.to_string(),
        input_key: keys::input(id, "photo.jpg").unwrap(),
        content_hash: hash.to_string(),
        external_id: None,
        category: None,
        size: None,
    };
    store.submit(&new).await.unwrap().job.id
}

fn is_constraint(err: &JobStoreError) -> bool {
    matches!(err, JobStoreError::Constraint { .. }) && err.class() == ErrorClass::Permanent
}

#[tokio::test]
async fn idempotency_keys_replay_the_same_request_and_refuse_another() {
    let db = TestDatabase::create().await;
    let keys = db.store.idempotency_keys();
    let job = submit(&db.store, "b", "h1").await;
    let other = submit(&db.store, "b", "h2").await;

    assert_eq!(keys.lookup("k1", "fp-a").await.unwrap(), KeyLookup::New);
    assert_eq!(keys.remember("k1", "fp-a", job).await.unwrap(), KeyLookup::Replay(job));
    assert_eq!(keys.lookup("k1", "fp-a").await.unwrap(), KeyLookup::Replay(job));
    assert_eq!(keys.lookup("k1", "fp-b").await.unwrap(), KeyLookup::Conflict);
    // A concurrent twin that stored the key first wins; a second writer learns of it.
    assert_eq!(keys.remember("k1", "fp-a", other).await.unwrap(), KeyLookup::Replay(job));
    assert_eq!(keys.remember("k1", "fp-b", other).await.unwrap(), KeyLookup::Conflict);

    // A key for a job that does not exist violates a foreign key: the caller's error.
    let err = keys.remember("k2", "fp", JobId::new()).await.unwrap_err();
    assert!(is_constraint(&err), "{err:?}");
    assert_eq!(keys.lookup("k2", "fp").await.unwrap(), KeyLookup::New);
    db.drop_database().await;
}

#[tokio::test]
async fn the_webhook_outbox_is_claimed_once_finished_and_records_each_call() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let hooks = store.webhooks();
    let job = submit(store, "b", "h1").await;
    let silent = submit(store, "b", "h2").await;

    hooks.register(job, "https://shop.example/first").await.unwrap();
    hooks.register(job, "https://shop.example/second").await.unwrap();
    let state = hooks.state(job).await.unwrap().unwrap();
    assert_eq!((state.url.as_str(), state.state.as_str(), state.attempts), ("https://shop.example/first", "pending", 0));
    assert!(hooks.state(silent).await.unwrap().is_none());
    let ghost = JobId::new();
    assert_eq!(hooks.register(ghost, "https://shop.example/").await.unwrap_err(), JobStoreError::NotFound(ghost));
    let err = hooks.register(silent, "").await.unwrap_err();
    assert!(is_constraint(&err), "an empty URL breaks the table's check: {err:?}");

    // Nothing is due while the job runs.
    let lease = Duration::from_secs(60);
    assert!(hooks.claim_due(16, lease).await.unwrap().is_empty());
    store.advance(job, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();
    let claimed = hooks.claim_due(16, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].job, claimed[0].url.as_str(), claimed[0].attempt), (job, "https://shop.example/first", 1));
    assert!(hooks.claim_due(16, lease).await.unwrap().is_empty(), "a claimed row is leased");

    // A failed call is rescheduled (here at once) and claimed again as attempt 2.
    let retry = DeliveryOutcome {
        state: "pending",
        status: Some(500),
        error: Some("receiver answered 500"),
        retry_in: Duration::ZERO,
        detail: json!({ "attempt": 1, "outcome": "pending" }),
    };
    hooks.record(job, &retry).await.unwrap();
    let again = hooks.claim_due(16, lease).await.unwrap();
    assert_eq!(again.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![2]);
    let done = DeliveryOutcome {
        state: "delivered",
        status: Some(204),
        error: None,
        retry_in: Duration::ZERO,
        detail: json!({ "attempt": 2, "outcome": "delivered" }),
    };
    hooks.record(job, &done).await.unwrap();
    let state = hooks.state(job).await.unwrap().unwrap();
    assert_eq!((state.state.as_str(), state.attempts, state.last_status), ("delivered", 2, Some(204)));
    assert_eq!(state.last_error, None);
    assert!(hooks.claim_due(16, Duration::ZERO).await.unwrap().is_empty(), "a delivered row is done");
    let calls: Vec<_> = store.events(job).await.unwrap().into_iter().filter(|e| e.event == "webhook").collect();
    assert_eq!(calls.iter().map(|e| e.detail["outcome"].clone()).collect::<Vec<_>>(), vec![json!("pending"), json!("delivered")]);
    db.drop_database().await;
}

#[tokio::test]
async fn ops_queries_group_reject_reasons_and_count_failed_attempts() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let reasons = ["blurry: Laplacian variance 12.5 is below 100", "blurry: Laplacian variance 3 is below 100", "too dark"];
    for (i, reason) in reasons.iter().enumerate() {
        let id = submit(store, "b", &format!("r{i}")).await;
        let update = JobUpdate { error: Some(reason.to_string()), ..JobUpdate::default() };
        store.advance(id, Some(Stage::Gate), JobState::Rejected, update).await.unwrap();
    }
    let flaky = submit(store, "b", "f").await;
    for _ in 0..2 {
        store.record_failure(flaky, Stage::Reconstruct, &StageError::retryable("gpu busy")).await.unwrap();
    }
    store.record_failure(flaky, Stage::Gate, &StageError::retryable("s3 down")).await.unwrap();

    let hour = Duration::from_secs(3600);
    let top = store.ops().reject_reasons(hour, 10).await.unwrap();
    let got: Vec<(&str, i64)> = top.iter().map(|r| (r.reason.as_str(), r.jobs)).collect();
    assert_eq!(got, vec![("blurry: Laplacian variance N is below N", 2), ("too dark", 1)]);
    assert!(top[0].example.starts_with("blurry: Laplacian variance "), "{:?}", top[0]);
    assert_eq!(store.ops().reject_reasons(hour, 1).await.unwrap().len(), 1);

    let failures = store.ops().failed_attempts(hour).await.unwrap();
    let counts: Vec<(Stage, i64)> = failures.iter().map(|f| (f.stage, f.failed_attempts)).collect();
    assert_eq!(counts, Stage::ALL.iter().map(|s| (*s, match s { Stage::Gate => 1, Stage::Reconstruct => 2, _ => 0 })).collect::<Vec<_>>());
    assert!(store.ops().failed_attempts(Duration::ZERO).await.unwrap().iter().all(|f| f.failed_attempts == 0));

    // Lookup by content, per batch.
    let found = store.find_by_content("b", "f").await.unwrap().unwrap();
    assert_eq!((found.id, found.attempts), (flaky, 3));
    assert!(store.find_by_content("other", "f").await.unwrap().is_none());
    db.drop_database().await;
}

/// With the database gone, every one of these calls fails as `Unavailable`
/// (retryable: a worker retries, the API answers 503), and works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_transient_for_every_store() {
    let db = TestDatabase::create().await;
    let job = submit(&db.store, "b", "h").await;
    let url = db.settings.url.expose().to_string();
    let proxy = TcpProxy::start(url_socket_addr(&url, 5432)).await;
    let settings = DatabaseSettings { url: SecretUrl::new(proxy.rewrite_url(&url)), max_connections: 2, acquire_timeout_secs: 1 };
    let store = JobStore::connect(&settings).await.unwrap();
    assert_eq!(store.idempotency_keys().lookup("k", "fp").await.unwrap(), KeyLookup::New);

    proxy.cut().await;
    let hour = Duration::from_secs(3600);
    let errors: Vec<(&str, JobStoreError)> = vec![
        ("idempotency lookup", store.idempotency_keys().lookup("k", "fp").await.unwrap_err()),
        ("idempotency remember", store.idempotency_keys().remember("k", "fp", job).await.unwrap_err()),
        ("webhook register", store.webhooks().register(job, "https://shop.example/").await.unwrap_err()),
        ("webhook state", store.webhooks().state(job).await.unwrap_err()),
        ("webhook claim", store.webhooks().claim_due(16, hour).await.unwrap_err()),
        ("reject reasons", store.ops().reject_reasons(hour, 10).await.unwrap_err()),
        ("failed attempts", store.ops().failed_attempts(hour).await.unwrap_err()),
        ("find by content", store.find_by_content("b", "h").await.unwrap_err()),
    ];
    for (call, err) in &errors {
        assert!(matches!(err, JobStoreError::Unavailable { .. }), "{call}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Retryable, "{call}");
    }

    proxy.restore().await;
    assert_eq!(store.idempotency_keys().remember("k", "fp", job).await.unwrap(), KeyLookup::Replay(job));
    assert_eq!(store.find_by_content("b", "h").await.unwrap().map(|j| j.id), Some(job));
    store.close().await;
    db.drop_database().await;
}
