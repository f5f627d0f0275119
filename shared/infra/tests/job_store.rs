//! Job store against a real Postgres: a fresh, migrated database per test
//! (`DATABASE_URL` or postgres://postgres@127.0.0.1:5432). Fails, never skips,
//! when Postgres is unreachable.

use mono2mesh_core::{Category, ErrorClass, JobId, JobState, Stage, StageError};
use mono2mesh_infra::blob::keys;
use mono2mesh_infra::config::DatabaseSettings;
use mono2mesh_infra::jobs::{CategorySource, JobStore, JobStoreError, JobUpdate, NewJob, Page, Transition};
use mono2mesh_infra::secret::SecretUrl;
use mono2mesh_testkit::services::TestDatabase;
use serde_json::json;
use std::time::Duration;

fn new_job(batch: &str, content_hash: &str) -> NewJob {
    let id = JobId::new();
    NewJob {
        id,
        batch: batch.to_string(),
        input_key: keys::input(id, "photo.jpg").unwrap(),
        content_hash: content_hash.to_string(),
        external_id: Some(format!("sku-{content_hash}")),
        category: None,
        size: None,
    }
}

fn stage_events(events: &[mono2mesh_infra::jobs::JobEvent]) -> Vec<(Option<Stage>, String)> {
    events.iter().map(|e| (e.stage, e.event.clone())).collect()
}

#[tokio::test]
async fn submission_is_idempotent_per_batch_and_content() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let first = store.submit(&new_job("spring", "hash-a")).await.unwrap();
    assert!(first.created);
    assert_eq!(first.job.state, JobState::Submitted);
    assert_eq!(first.job.batch, "spring");
    assert_eq!(first.job.external_id.as_deref(), Some("sku-hash-a"));
    assert_eq!(first.job.attempts, 0);

    // Resubmitting the same photo (new candidate id) finds the existing job.
    let again = store.submit(&new_job("spring", "hash-a")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, first.job.id);
    assert_eq!(again.job.input_key, first.job.input_key, "use the existing job's key");

    // The same photo in another batch is another job.
    let other = store.submit(&new_job("autumn", "hash-a")).await.unwrap();
    assert!(other.created);
    assert_ne!(other.job.id, first.job.id);

    // A manifest category is stored with its source.
    let mut with_category = new_job("spring", "hash-b");
    with_category.category = Some(Category::Sofa);
    let job = store.submit(&with_category).await.unwrap().job;
    assert_eq!(job.category, Some(Category::Sofa));
    assert_eq!(job.category_source, Some(CategorySource::Manifest));

    let events = store.events(first.job.id).await.unwrap();
    assert_eq!(stage_events(&events), vec![(None, "submitted".to_string())], "one submission event only");
    assert_eq!(events[0].detail["content_hash"], "hash-a");

    // Concurrent submissions of one photo create exactly one job.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.submit(&new_job("race", "same")).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for r in racers {
        let s = r.await.unwrap().unwrap();
        created += usize::from(s.created);
        ids.push(s.job.id);
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1);
    db.drop_database().await;
}

#[tokio::test]
async fn a_job_walks_the_happy_path_with_history_and_outputs() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let id = store.submit(&new_job("b", "h")).await.unwrap().job.id;

    let gated = store
        .advance(
            id,
            Some(Stage::Gate),
            JobState::Gated,
            JobUpdate {
                gate_scores: Some(json!({"blur_variance": 812.5, "mean_intensity": 121.0})),
                outputs: Some(json!({"gated_image": "jobs/x/gate/gated.png"})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(gated, Transition::Applied { from: JobState::Submitted });
    let t = store
        .advance(
            id,
            Some(Stage::Classify),
            JobState::Classified,
            JobUpdate {
                category: Some((Category::Chair, CategorySource::Classifier)),
                detail: Some(json!({"confidence": 0.93})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(t, Transition::Applied { from: JobState::Gated });
    store
        .advance(
            id,
            Some(Stage::Reconstruct),
            JobState::Reconstructed,
            JobUpdate {
                model: Some("chair-v1".into()),
                outputs: Some(json!({"voxels": "jobs/x/reconstruct/voxels.binvox"})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .advance(
            id,
            Some(Stage::Refine),
            JobState::Done,
            JobUpdate { outputs: Some(json!({"mesh": "jobs/x/refine/mesh.obj"})), ..Default::default() },
        )
        .await
        .unwrap();

    let job = store.get_job(id).await.unwrap();
    assert_eq!(job.state, JobState::Done);
    assert_eq!(job.category, Some(Category::Chair));
    assert_eq!(job.category_source, Some(CategorySource::Classifier));
    assert_eq!(job.model.as_deref(), Some("chair-v1"));
    assert_eq!(job.gate_scores.as_ref().unwrap()["blur_variance"], 812.5);
    assert_eq!(
        job.outputs,
        json!({
            "gated_image": "jobs/x/gate/gated.png",
            "voxels": "jobs/x/reconstruct/voxels.binvox",
            "mesh": "jobs/x/refine/mesh.obj"
        }),
        "each stage's outputs are merged, none lost"
    );
    let stamps = [job.gated_at, job.classified_at, job.reconstructed_at, job.done_at];
    assert!(stamps.iter().all(Option::is_some), "{stamps:?}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(job.rejected_at.is_none() && job.failed_at.is_none());

    let events = store.events(id).await.unwrap();
    assert_eq!(
        stage_events(&events),
        vec![
            (None, "submitted".into()),
            (Some(Stage::Gate), "gated".into()),
            (Some(Stage::Classify), "classified".into()),
            (Some(Stage::Reconstruct), "reconstructed".into()),
            (Some(Stage::Refine), "done".into()),
        ]
    );
    assert_eq!(events[2].detail["confidence"], 0.93);
    db.drop_database().await;
}

#[tokio::test]
async fn late_and_duplicate_messages_never_move_a_job_backwards() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let id = store.submit(&new_job("b", "h")).await.unwrap().job.id;
    store.advance(id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();
    store.advance(id, Some(Stage::Classify), JobState::Classified, JobUpdate::default()).await.unwrap();

    // A redelivered classify message: idempotent no-op.
    let dup = store.advance(id, Some(Stage::Classify), JobState::Classified, JobUpdate::default()).await.unwrap();
    assert_eq!(dup, Transition::Duplicate);
    // A late gate message: ignored, and it must not overwrite anything.
    let late = store
        .advance(
            id,
            Some(Stage::Gate),
            JobState::Gated,
            JobUpdate { gate_scores: Some(json!({"late": true})), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(late, Transition::Stale { current: JobState::Classified });
    let job = store.get_job(id).await.unwrap();
    assert_eq!(job.state, JobState::Classified);
    assert!(job.gate_scores.is_none(), "a refused transition writes nothing");
    assert_eq!(store.events(id).await.unwrap().len(), 3, "no events for refused or duplicate moves");

    // Terminal states are final, including for failure.
    store
        .advance(id, Some(Stage::Reconstruct), JobState::Rejected, JobUpdate { error: Some("unknown category".into()), ..Default::default() })
        .await
        .unwrap();
    for to in [JobState::Reconstructed, JobState::Done, JobState::Failed, JobState::Gated] {
        let t = store.advance(id, None, to, JobUpdate::default()).await.unwrap();
        assert_eq!(t, Transition::Stale { current: JobState::Rejected }, "{to}");
    }
    let job = store.get_job(id).await.unwrap();
    assert_eq!(job.state, JobState::Rejected);
    assert_eq!(job.last_error.as_deref(), Some("unknown category"));
    assert!(job.rejected_at.is_some());
    let last = store.events(id).await.unwrap().pop().unwrap();
    assert_eq!(last.event, "rejected");
    assert_eq!(last.detail["error"], "unknown category");

    // Racing redeliveries: exactly one wins, one event.
    let id = store.submit(&new_job("b", "h2")).await.unwrap().job.id;
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.advance(id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await })
        })
        .collect();
    let mut applied = 0;
    for r in racers {
        match r.await.unwrap().unwrap() {
            Transition::Applied { from } => {
                assert_eq!(from, JobState::Submitted);
                applied += 1;
            }
            Transition::Duplicate => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    let gated_events = store.events(id).await.unwrap().iter().filter(|e| e.event == "gated").count();
    assert_eq!(gated_events, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn failures_are_counted_and_unknown_jobs_are_permanent_errors() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let id = store.submit(&new_job("b", "h")).await.unwrap().job.id;
    let err = StageError::retryable("s3 timed out");
    assert_eq!(store.record_failure(id, Stage::Gate, &err).await.unwrap(), 1);
    assert_eq!(store.record_failure(id, Stage::Gate, &StageError::retryable("again")).await.unwrap(), 2);
    let job = store.get_job(id).await.unwrap();
    assert_eq!((job.attempts, job.last_error.as_deref(), job.state), (2, Some("again"), JobState::Submitted));
    let events = store.events(id).await.unwrap();
    assert_eq!(events[1].event, "attempt_failed");
    assert_eq!(events[1].detail["class"], "retryable");

    store.append_event(id, Some(Stage::Gate), "dead_lettered", json!({"reason": "delivery limit"})).await.unwrap();
    assert_eq!(store.events(id).await.unwrap().last().unwrap().event, "dead_lettered");

    let ghost = JobId::new();
    for err in [
        store.get_job(ghost).await.unwrap_err(),
        store.advance(ghost, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap_err(),
        store.record_failure(ghost, Stage::Gate, &err).await.unwrap_err(),
        store.append_event(ghost, None, "x", json!({})).await.unwrap_err(),
    ] {
        assert_eq!(err, JobStoreError::NotFound(ghost));
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    assert!(store.find_job(ghost).await.unwrap().is_none());

    // History is append-only at the database level too.
    // (A connection of its own: the store has no way to edit history, by design.)
    let raw = sqlx::PgPool::connect(db.settings.url.expose()).await.unwrap();
    let edit = sqlx::query("UPDATE job_events SET event = 'forged'").execute(&raw).await;
    raw.close().await;
    assert!(edit.is_err(), "job_events must refuse updates");
    // Migrations are idempotent.
    store.migrate().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn batches_paginate_count_and_report_stage_stats() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(store.submit(&new_job("catalog", &format!("h{i}"))).await.unwrap().job.id);
    }
    store.submit(&new_job("other", "x")).await.unwrap();

    let mut seen = Vec::new();
    let mut page = Page { after: None, limit: 10 };
    let mut sizes = Vec::new();
    loop {
        let jobs = store.list_batch_jobs("catalog", page).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        sizes.push(jobs.len());
        page.after = jobs.last().map(|j| j.id);
        seen.extend(jobs.into_iter().map(|j| j.id));
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "every job exactly once, in id order");

    // Move some jobs along: 10 gated, 4 of those done, 3 rejected at the gate.
    for id in &ids[..10] {
        store.advance(*id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();
    }
    for id in &ids[..4] {
        store.advance(*id, Some(Stage::Classify), JobState::Classified, JobUpdate::default()).await.unwrap();
        store.advance(*id, Some(Stage::Reconstruct), JobState::Reconstructed, JobUpdate::default()).await.unwrap();
        store.advance(*id, Some(Stage::Refine), JobState::Done, JobUpdate::default()).await.unwrap();
    }
    for id in &ids[10..13] {
        store.advance(*id, Some(Stage::Gate), JobState::Rejected, JobUpdate::default()).await.unwrap();
    }
    let summary = store.batch_summary("catalog").await.unwrap().unwrap();
    assert_eq!(summary.total, 25);
    assert_eq!(summary.count(JobState::Submitted), 12);
    assert_eq!(summary.count(JobState::Gated), 6);
    assert_eq!(summary.count(JobState::Done), 4);
    assert_eq!(summary.count(JobState::Rejected), 3);
    assert_eq!(summary.count(JobState::Failed), 0);
    assert!(store.batch_summary("nope").await.unwrap().is_none());
    let all = store.batches().await.unwrap();
    assert_eq!(all.iter().map(|b| (b.name.as_str(), b.total)).collect::<Vec<_>>(), vec![("other", 1), ("catalog", 25)]);

    let recent = store.recent_jobs(3).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].batch, "other", "newest first");

    let stats = store.stats(Duration::from_secs(3600)).await.unwrap();
    let completed: Vec<i64> = stats.stages.iter().map(|s| s.completed).collect();
    assert_eq!(completed, vec![10, 4, 4, 4]);
    assert_eq!((stats.rejected, stats.failed), (3, 0));
    for s in &stats.stages {
        let (p50, p95) = (s.latency_p50_ms.unwrap(), s.latency_p95_ms.unwrap());
        assert!(p50 >= 0.0 && p50 <= p95, "{s:?}");
        assert!((s.per_minute - s.completed as f64 / 60.0).abs() < 1e-9);
    }
    // An empty window sees nothing.
    let none = store.stats(Duration::ZERO).await.unwrap();
    assert!(none.stages.iter().all(|s| s.completed == 0 && s.latency_p50_ms.is_none()));
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = DatabaseSettings {
        url: SecretUrl::new(format!("postgres://postgres:pw@127.0.0.1:{port}/mono2mesh")),
        max_connections: 1,
        acquire_timeout_secs: 1,
    };
    let err = JobStore::connect(&settings).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert!(!err.to_string().contains(":pw@"), "{err}");

    // A lazily connected store starts without the database and fails per call, retryably.
    let lazy = JobStore::connect_lazy(&settings).unwrap();
    let err = lazy.get_job(JobId::new()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
}

#[tokio::test]
async fn a_guarded_move_applies_only_from_the_given_states() {
    let db = TestDatabase::create().await;
    let store = &db.store;
    let id = store.submit(&new_job("guarded", "hash-g")).await.unwrap().job.id;
    store.advance(id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();

    // A late gate failure may end only a job still waiting for the gate: this one is gated.
    let reject = || JobUpdate { error: Some("late gate failure".into()), ..JobUpdate::default() };
    let moved = store.advance_from(id, Some(Stage::Gate), &[JobState::Submitted], JobState::Rejected, reject()).await;
    assert_eq!(moved.unwrap(), Transition::Stale { current: JobState::Gated });
    let job = store.get_job(id).await.unwrap();
    assert_eq!((job.state, job.last_error), (JobState::Gated, None), "nothing written");
    assert_eq!(store.events(id).await.unwrap().len(), 2, "no history event either");

    // From a listed state it is an ordinary move.
    let moved = store.advance_from(id, Some(Stage::Classify), &[JobState::Gated], JobState::Rejected, reject()).await;
    assert_eq!(moved.unwrap(), Transition::Applied { from: JobState::Gated });
    let again = store.advance_from(id, Some(Stage::Classify), &[JobState::Gated], JobState::Rejected, reject()).await;
    assert_eq!(again.unwrap(), Transition::Duplicate);
}

/// The progress rules, on any store behind the stage handlers' trait.
async fn progress_within_a_stage(store: &dyn mono2mesh_infra::repository::JobRepository, id: JobId) {
    assert_eq!(store.get_job(id).await.unwrap().progress(), 0);
    assert!(store.report_progress(id, Stage::Gate, 50).await.unwrap());
    let job = store.get_job(id).await.unwrap();
    assert_eq!((job.stage_progress, job.progress()), (Some((Stage::Gate, 50)), 5));
    // Within a stage it only grows: a slow duplicate delivery cannot set it back.
    assert!(store.report_progress(id, Stage::Gate, 20).await.unwrap());
    assert_eq!(store.get_job(id).await.unwrap().stage_progress, Some((Stage::Gate, 50)));
    assert!(store.report_progress(id, Stage::Gate, 250).await.unwrap(), "clamped to 100");
    assert_eq!(store.get_job(id).await.unwrap().progress(), 9, "a stage's end is its state change");
    // The move resets it; a late report of the stage before is not recorded.
    store.advance(id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap();
    let job = store.get_job(id).await.unwrap();
    assert_eq!((job.stage_progress, job.progress()), (None, 10));
    assert!(!store.report_progress(id, Stage::Gate, 60).await.unwrap());
    // A named category goes from the gate to reconstruct: its share counts from there.
    assert!(store.report_progress(id, Stage::Reconstruct, 50).await.unwrap());
    assert_eq!(store.get_job(id).await.unwrap().progress(), 48);
    store.advance(id, Some(Stage::Refine), JobState::Rejected, JobUpdate::default()).await.unwrap();
    assert!(!store.report_progress(id, Stage::Refine, 10).await.unwrap(), "an ended job is left alone");
    assert_eq!(store.get_job(id).await.unwrap().progress(), 100);
    assert!(!store.report_progress(JobId::new(), Stage::Gate, 10).await.unwrap(), "an unknown job is not recorded");
}

#[tokio::test]
async fn progress_within_a_stage_is_recorded_alike_in_postgres_and_in_memory() {
    use mono2mesh_infra::repository::{JobRepository, MemoryJobStore};
    let db = TestDatabase::create().await;
    let id = JobRepository::submit(&db.store, &new_job("progress", "hash-p")).await.unwrap().job.id;
    progress_within_a_stage(&db.store, id).await;
    let memory = MemoryJobStore::new();
    let id = JobRepository::submit(&memory, &new_job("progress", "hash-p")).await.unwrap().job.id;
    progress_within_a_stage(&memory, id).await;
}
