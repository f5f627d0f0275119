//! What a stage needs from the job store, as a trait: the Postgres [`JobStore`] of the
//! workers and the in-process [`MemoryJobStore`] of `mono2mesh run` implement it, so the
//! stage handlers and the runtime are the same code in both modes.
//!
//! Both keep the same rules: a job moves only along `JobState::can_move_to`, a repeat
//! of the step that already happened is a `Duplicate`, anything else is `Stale`, and
//! every applied move appends one history event.

use async_trait::async_trait;
use chrono::Utc;
use chrono::DateTime;
use mono2mesh_core::{Category, JobId, JobState, Stage, StageError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::jobs::{CategorySource, Job, JobEvent, JobStore, JobStoreError, JobUpdate, NewJob, Submission, Transition};
use crate::store::StuckJob;

type Result<T, E = JobStoreError> = std::result::Result<T, E>;

/// The job operations the pipeline uses (submit, read, guarded moves, history).
#[async_trait]
pub trait JobRepository: Send + Sync + 'static {
    /// Submits a job, or returns the batch's existing job for the same content.
    async fn submit(&self, new: &NewJob) -> Result<Submission>;
    async fn find_job(&self, id: JobId) -> Result<Option<Job>>;
    /// Moves `id` to `to` from one of `from` (only where that is a legal step), applying
    /// `update` and appending a history event, atomically.
    async fn advance_from(
        &self,
        id: JobId,
        stage: Option<Stage>,
        from: &[JobState],
        to: JobState,
        update: JobUpdate,
    ) -> Result<Transition>;
    /// Records a failed attempt (the job keeps its state); returns the attempt count.
    async fn record_failure(&self, id: JobId, stage: Stage, error: &StageError) -> Result<i32>;
    /// Records how far (0-100) `stage` got on `id` while the job waits for it; only grows
    /// within a stage, and is reset by the job's next move. Returns whether it was recorded.
    async fn report_progress(&self, id: JobId, stage: Stage, percent: u8) -> Result<bool>;
    async fn append_event(&self, id: JobId, stage: Option<Stage>, event: &str, detail: Value) -> Result<()>;
    /// A job's history, oldest first.
    async fn events(&self, id: JobId) -> Result<Vec<JobEvent>>;
    /// Records that `stage` starts on `id`; returns how many earlier starts of it were
    /// never settled (the worker died while handling the job).
    async fn start_run(&self, id: JobId, stage: Stage) -> Result<u32>;
    /// Records that a start of `stage` on `id` ended, whatever the outcome.
    async fn settle_run(&self, id: JobId, stage: Stage) -> Result<()>;
    /// Claims up to `limit` jobs waiting for `stage` (of `categories`, when given) that
    /// neither moved nor were swept for `older_than`; each claim counts as a sweep.
    async fn claim_stuck(
        &self,
        stage: Stage,
        categories: Option<&[Category]>,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<StuckJob>>;

    /// The job, or `NotFound` (permanent: a message for an unknown job).
    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.find_job(id).await?.ok_or(JobStoreError::NotFound(id))
    }

    /// Moves `id` to `to` from any state that may legally precede it.
    async fn advance(&self, id: JobId, stage: Option<Stage>, to: JobState, update: JobUpdate) -> Result<Transition> {
        self.advance_from(id, stage, &JobState::ALL, to, update).await
    }
}

#[async_trait]
impl JobRepository for JobStore {
    async fn submit(&self, new: &NewJob) -> Result<Submission> {
        JobStore::submit(self, new).await
    }
    async fn find_job(&self, id: JobId) -> Result<Option<Job>> {
        JobStore::find_job(self, id).await
    }
    async fn advance_from(
        &self,
        id: JobId,
        stage: Option<Stage>,
        from: &[JobState],
        to: JobState,
        update: JobUpdate,
    ) -> Result<Transition> {
        JobStore::advance_from(self, id, stage, from, to, update).await
    }
    async fn record_failure(&self, id: JobId, stage: Stage, error: &StageError) -> Result<i32> {
        JobStore::record_failure(self, id, stage, error).await
    }
    async fn report_progress(&self, id: JobId, stage: Stage, percent: u8) -> Result<bool> {
        JobStore::report_progress(self, id, stage, percent).await
    }
    async fn append_event(&self, id: JobId, stage: Option<Stage>, event: &str, detail: Value) -> Result<()> {
        JobStore::append_event(self, id, stage, event, detail).await
    }
    async fn events(&self, id: JobId) -> Result<Vec<JobEvent>> {
        JobStore::events(self, id).await
    }
    async fn start_run(&self, id: JobId, stage: Stage) -> Result<u32> {
        self.recovery().start_run(id, stage).await
    }
    async fn settle_run(&self, id: JobId, stage: Stage) -> Result<()> {
        self.recovery().settle_run(id, stage).await
    }
    async fn claim_stuck(
        &self,
        stage: Stage,
        categories: Option<&[Category]>,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<StuckJob>> {
        self.recovery().claim_stuck(stage, categories, older_than, limit).await
    }
}

/// Jobs in this process's memory, for the embedded pipeline and tests. Lost on exit.
#[derive(Default)]
pub struct MemoryJobStore {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    jobs: HashMap<JobId, Job>,
    /// (batch, content hash) -> job, the Postgres store's unique key.
    by_content: HashMap<(String, String), JobId>,
    events: Vec<JobEvent>,
    /// (job, stage) -> (started, settled), as the `stage_runs` table.
    runs: HashMap<(JobId, Stage), (u32, u32)>,
    /// job -> (sweeps in its current state, last sweep), as `jobs.sweeps`/`swept_at`.
    sweeps: HashMap<JobId, (u32, DateTime<Utc>)>,
}

impl Memory {
    fn log(&mut self, job_id: JobId, stage: Option<Stage>, event: &str, detail: Value) {
        let id = self.events.len() as i64 + 1;
        self.events.push(JobEvent { id, job_id, stage, event: event.to_string(), detail, at: Utc::now() });
    }
}

impl MemoryJobStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every job, in no particular order.
    pub fn jobs(&self) -> Vec<Job> {
        self.lock().jobs.values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        // Each operation leaves the map consistent before it can panic, so a poisoned
        // lock still guards valid data.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl JobRepository for MemoryJobStore {
    async fn submit(&self, new: &NewJob) -> Result<Submission> {
        let mut memory = self.lock();
        let key = (new.batch.clone(), new.content_hash.clone());
        if let Some(existing) = memory.by_content.get(&key).and_then(|id| memory.jobs.get(id)) {
            return Ok(Submission { job: existing.clone(), created: false });
        }
        let now = Utc::now();
        let job = Job {
            id: new.id,
            batch: new.batch.clone(),
            input_key: new.input_key.clone(),
            content_hash: new.content_hash.clone(),
            external_id: new.external_id.clone(),
            category: new.category,
            category_source: new.category.map(|_| CategorySource::Manifest),
            size: new.size,
            model: None,
            outputs: Value::Object(Default::default()),
            quality: None,
            gate_scores: None,
            state: JobState::Submitted,
            attempts: 0,
            last_error: None,
            created_at: now,
            gated_at: None,
            classified_at: None,
            reconstructed_at: None,
            done_at: None,
            rejected_at: None,
            failed_at: None,
            updated_at: now,
            stage_progress: None,
        };
        let detail = serde_json::json!({
            "input_key": new.input_key.as_str(),
            "content_hash": new.content_hash,
            "external_id": new.external_id,
            "category": new.category,
            "size": new.size,
        });
        memory.log(new.id, None, "submitted", detail);
        memory.by_content.insert(key, new.id);
        memory.jobs.insert(new.id, job.clone());
        Ok(Submission { job, created: true })
    }

    async fn find_job(&self, id: JobId) -> Result<Option<Job>> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn advance_from(
        &self,
        id: JobId,
        stage: Option<Stage>,
        from: &[JobState],
        to: JobState,
        update: JobUpdate,
    ) -> Result<Transition> {
        let mut memory = self.lock();
        let job = memory.jobs.get_mut(&id).ok_or(JobStoreError::NotFound(id))?;
        let current = job.state;
        if !(from.contains(&current) && current.can_move_to(to)) {
            return Ok(if current == to { Transition::Duplicate } else { Transition::Stale { current } });
        }
        let now = Utc::now();
        job.state = to;
        if let Some((category, source)) = update.category {
            job.category = Some(category);
            job.category_source = Some(source);
        }
        if let Some(model) = update.model {
            job.model = Some(model);
        }
        if let (Some(Value::Object(add)), Value::Object(outputs)) = (update.outputs, &mut job.outputs) {
            outputs.extend(add);
        }
        if let Some(scores) = update.gate_scores {
            job.gate_scores = Some(scores);
        }
        if let Some(quality) = update.quality {
            job.quality = Some(quality);
        }
        if let Some(error) = &update.error {
            job.last_error = Some(error.clone());
        }
        let stamp = match to {
            JobState::Gated => Some(&mut job.gated_at),
            JobState::Classified => Some(&mut job.classified_at),
            JobState::Reconstructed => Some(&mut job.reconstructed_at),
            JobState::Done => Some(&mut job.done_at),
            JobState::Rejected => Some(&mut job.rejected_at),
            JobState::Failed => Some(&mut job.failed_at),
            JobState::Submitted => None,
        };
        if let Some(stamp) = stamp {
            *stamp = Some(now);
        }
        job.updated_at = now;
        job.stage_progress = None;
        memory.sweeps.remove(&id);
        // The same event detail the Postgres store writes.
        let mut detail = update.detail.unwrap_or_else(|| serde_json::json!({}));
        if let (Some(error), Value::Object(map)) = (&update.error, &mut detail) {
            map.entry("error").or_insert_with(|| Value::String(error.clone()));
        }
        memory.log(id, stage, to.name(), detail);
        Ok(Transition::Applied { from: current })
    }

    async fn report_progress(&self, id: JobId, stage: Stage, percent: u8) -> Result<bool> {
        let mut memory = self.lock();
        // As in Postgres: nothing to record on an unknown job, or one that moved past the stage.
        let Some(job) = memory.jobs.get_mut(&id) else { return Ok(false) };
        if !job.state.can_move_to(stage.success_state()) {
            return Ok(false);
        }
        let percent = percent.min(100);
        job.stage_progress = Some(match job.stage_progress {
            Some((same, before)) if same == stage => (stage, before.max(percent)),
            _ => (stage, percent),
        });
        Ok(true)
    }

    async fn record_failure(&self, id: JobId, stage: Stage, error: &StageError) -> Result<i32> {
        let mut memory = self.lock();
        let job = memory.jobs.get_mut(&id).ok_or(JobStoreError::NotFound(id))?;
        job.attempts += 1;
        job.last_error = Some(error.reason.clone());
        job.updated_at = Utc::now();
        let attempts = job.attempts;
        memory.log(id, Some(stage), "attempt_failed", serde_json::json!({ "class": error.class, "reason": error.reason }));
        Ok(attempts)
    }

    async fn append_event(&self, id: JobId, stage: Option<Stage>, event: &str, detail: Value) -> Result<()> {
        let mut memory = self.lock();
        if !memory.jobs.contains_key(&id) {
            return Err(JobStoreError::NotFound(id));
        }
        memory.log(id, stage, event, detail);
        Ok(())
    }

    async fn events(&self, id: JobId) -> Result<Vec<JobEvent>> {
        Ok(self.lock().events.iter().filter(|e| e.job_id == id).cloned().collect())
    }

    async fn start_run(&self, id: JobId, stage: Stage) -> Result<u32> {
        let mut memory = self.lock();
        if !memory.jobs.contains_key(&id) {
            return Err(JobStoreError::NotFound(id));
        }
        let (started, settled) = memory.runs.entry((id, stage)).or_insert((0, 0));
        *started += 1;
        Ok(*started - *settled - 1)
    }

    async fn settle_run(&self, id: JobId, stage: Stage) -> Result<()> {
        if let Some((started, settled)) = self.lock().runs.get_mut(&(id, stage)) {
            *settled = (*settled + 1).min(*started);
        }
        Ok(())
    }

    async fn claim_stuck(
        &self,
        stage: Stage,
        categories: Option<&[Category]>,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<StuckJob>> {
        let mut memory = self.lock();
        let now = Utc::now();
        let deadline = now - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let mut waiting: Vec<&Job> = memory
            .jobs
            .values()
            .filter(|job| job.state == stage.waiting_state())
            .filter(|job| categories.is_none_or(|cs| job.category.is_some_and(|c| cs.contains(&c))))
            .filter(|job| {
                let swept = memory.sweeps.get(&job.id).map(|(_, at)| *at).unwrap_or(job.updated_at);
                job.updated_at.max(swept) < deadline
            })
            .collect();
        waiting.sort_by_key(|job| job.updated_at);
        let claimed: Vec<(JobId, Option<Category>)> =
            waiting.into_iter().take(limit as usize).map(|job| (job.id, job.category)).collect();
        Ok(claimed
            .into_iter()
            .map(|(id, category)| {
                let entry = memory.sweeps.entry(id).or_insert((0, now));
                *entry = (entry.0 + 1, now);
                StuckJob { id, category, sweeps: entry.0 }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobKey;
    use mono2mesh_core::Category;

    fn new_job(batch: &str, hash: &str) -> NewJob {
        let id = JobId::new();
        NewJob {
            id,
            batch: batch.into(),
            input_key: BlobKey::parse(format!("jobs/{id}/input")).unwrap(),
            content_hash: hash.into(),
            external_id: None,
            category: None,
            size: None,
        }
    }

    #[tokio::test]
    async fn memory_store_follows_the_state_machine() {
        let store = MemoryJobStore::new();
        let first = store.submit(&new_job("b", "h1")).await.unwrap();
        assert!(first.created);
        let again = store.submit(&new_job("b", "h1")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.job.id, first.job.id, "same batch and content is the same job");
        let id = first.job.id;

        let update = JobUpdate { outputs: Some(serde_json::json!({"a": "x"})), ..JobUpdate::default() };
        let moved = store.advance(id, Some(Stage::Gate), JobState::Gated, update).await.unwrap();
        assert_eq!(moved, Transition::Applied { from: JobState::Submitted });
        assert_eq!(store.advance(id, Some(Stage::Gate), JobState::Gated, JobUpdate::default()).await.unwrap(), Transition::Duplicate);
        // Backwards is never allowed.
        let back = store.advance(id, None, JobState::Submitted, JobUpdate::default()).await.unwrap();
        assert_eq!(back, Transition::Stale { current: JobState::Gated });

        let update = JobUpdate {
            category: Some((Category::Chair, CategorySource::Classifier)),
            outputs: Some(serde_json::json!({"b": "y"})),
            ..JobUpdate::default()
        };
        store.advance(id, Some(Stage::Classify), JobState::Classified, update).await.unwrap();
        // A guarded move from a state the job is not in leaves it alone.
        let guarded = store
            .advance_from(id, Some(Stage::Gate), &[JobState::Submitted], JobState::Failed, JobUpdate::default())
            .await
            .unwrap();
        assert_eq!(guarded, Transition::Stale { current: JobState::Classified });

        let attempts = store.record_failure(id, Stage::Reconstruct, &StageError::retryable("busy")).await.unwrap();
        assert_eq!(attempts, 1);
        let job = store.get_job(id).await.unwrap();
        assert_eq!(job.category, Some(Category::Chair));
        assert_eq!(job.outputs, serde_json::json!({"a": "x", "b": "y"}), "outputs merge");
        assert_eq!(job.last_error.as_deref(), Some("busy"));
        assert!(job.gated_at.is_some() && job.classified_at.is_some() && job.done_at.is_none());
        let events: Vec<String> = store.events(id).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["submitted", "gated", "classified", "attempt_failed"]);
        assert!(matches!(store.get_job(JobId::new()).await, Err(JobStoreError::NotFound(_))));
    }
}
