//! Job-store plumbing every stage handler shares: deciding whether a delivery still
//! has work to do, moving the job forward with a guarded transition, and recording
//! rejections and failures for the runtime.
//!
//! A stage writes its blobs first and moves the job second, so a job in the stage's
//! success state always has its outputs: a redelivery of such a job only re-publishes
//! the next message (the publish or ack may be what was lost), it does not recompute.

use async_trait::async_trait;
use mono2mesh_core::{JobId, JobState, Stage, StageError, StageMessage};
use std::sync::Arc;
use tracing::{info, warn};

use crate::blob::BlobStore;
use crate::jobs::{Job, JobStoreError, JobUpdate, Transition};
use crate::repository::JobRepository;
use crate::runtime::{JobOutcomes, Next};

/// What a stage handler reads and writes: the job store and the blob store. The
/// workers pass Postgres and S3 (or a directory); `mono2mesh run` passes an in-memory
/// job store and a directory. The handler cannot tell which.
#[derive(Clone)]
pub struct StageContext {
    pub jobs: Arc<dyn JobRepository>,
    pub blobs: Arc<dyn BlobStore>,
}

/// Where a job stands for the stage that just received it.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The stage has to run on this job.
    Run(Job),
    /// The stage already completed (its outputs are stored); only the hand-over to
    /// the next stage may be missing.
    AlreadyDone(Job),
    /// The job has moved past this stage or ended: nothing to do.
    Stale(String),
}

/// Loads the message's job and says whether `message.stage` still has to run.
/// An unknown job is a permanent error (the message refers to nothing).
pub async fn begin(jobs: &dyn JobRepository, message: &StageMessage) -> Result<Begin, StageError> {
    let job = jobs.get_job(message.job_id).await?;
    crate::fault::inject(message.stage, &job.content_hash);
    let done_state = message.stage.success_state();
    Ok(if job.state == done_state {
        Begin::AlreadyDone(job)
    } else if job.state.is_terminal() || !job.state.can_move_to(done_state) {
        Begin::Stale(format!("job is {} already; {} has nothing to do", job.state, message.stage))
    } else {
        Begin::Run(job)
    })
}

/// What follows a completed stage: the next stage's message (carrying the job's
/// category, which routes reconstruct work), or nothing after refine.
pub fn hand_over(job: &Job, stage: Stage) -> Next {
    match stage.next() {
        Some(next) => Next::Forward(StageMessage::new(job.id, next, job.category)),
        None => Next::Finished,
    }
}

/// Records that `stage` has done `percent` of its work on `id` (see
/// [`JobRepository::report_progress`]). Progress is for people watching: a store that
/// cannot record it is logged, never a reason to fail the stage.
pub async fn report_progress(jobs: &dyn JobRepository, id: JobId, stage: Stage, percent: u8) {
    if let Err(error) = jobs.report_progress(id, stage, percent).await {
        warn!(job = %id, stage = stage.name(), %error, "could not record progress");
    }
}

/// Moves the job to the stage's success state with `update` (outputs, scores,
/// category...) and returns the hand-over. A duplicate completion hands over again; a
/// job that meanwhile moved elsewhere (rejected by an operator, say) is stale.
pub async fn complete(jobs: &dyn JobRepository, message: &StageMessage, update: JobUpdate) -> Result<Next, StageError> {
    let stage = message.stage;
    match jobs.advance(message.job_id, Some(stage), stage.success_state(), update).await? {
        Transition::Applied { .. } | Transition::Duplicate => {
            let job = jobs.get_job(message.job_id).await?;
            Ok(hand_over(&job, stage))
        }
        Transition::Stale { current } => Ok(Next::Stale(format!("job became {current} while {stage} ran"))),
    }
}

/// Ends the job in `to` (rejected or failed). A job already in a terminal state keeps it.
///
/// Only a job still waiting for `message.stage` may end here. One that has completed the
/// stage (its completion was committed but the reply lost, e.g. in a database outage,
/// or a duplicate delivery finished it meanwhile) or moved past it belongs to the
/// following stages: ending it would fail a job whose work is done. The check is part
/// of the update itself, so a completion landing at the same moment cannot be undone.
/// The error is retryable, so the message comes back and `begin` hands the job over
/// again or drops the message as stale.
async fn end_job(jobs: &dyn JobRepository, message: &StageMessage, to: JobState, reason: &str) -> Result<(), StageError> {
    let done = message.stage.success_state();
    let waiting: Vec<JobState> =
        JobState::ALL.into_iter().filter(|s| !s.is_terminal() && *s != done && s.can_move_to(done)).collect();
    let detail = serde_json::json!({ "reason": reason, "attempt": message.attempt });
    match end_early(jobs, message.job_id, message.stage, &waiting, to, reason, detail).await? {
        Transition::Applied { .. } | Transition::Duplicate => Ok(()),
        Transition::Stale { current } if current.is_terminal() => {
            info!(job = %message.job_id, %current, wanted = %to, "job already ended; keeping its state");
            Ok(())
        }
        Transition::Stale { current } => Err(StageError::retryable(format!(
            "not marking the job {to}: it is {current}, past {}, so the retry hands it on",
            message.stage
        ))),
    }
}

/// Ends a job before its last stage, as `rejected` or `failed` with the reason (and the
/// detail for its event), moving it only from one of `from`: the one guarded write behind a
/// stage's own rejection or failure, a dead letter and a sweep that gives up.
pub async fn end_early(
    jobs: &dyn JobRepository,
    job_id: mono2mesh_core::JobId,
    stage: Stage,
    from: &[JobState],
    to: JobState,
    reason: &str,
    detail: serde_json::Value,
) -> Result<Transition, JobStoreError> {
    let update = JobUpdate { error: Some(reason.to_string()), detail: Some(detail), ..JobUpdate::default() };
    jobs.advance_from(job_id, Some(stage), from, to, update).await
}

/// The runtime's record of how jobs end, kept in a job store.
pub struct StoreOutcomes(pub Arc<dyn JobRepository>);

#[async_trait]
impl JobOutcomes for StoreOutcomes {
    async fn reject(&self, message: &StageMessage, reason: &str) -> Result<(), StageError> {
        end_job(self.0.as_ref(), message, JobState::Rejected, reason).await
    }

    async fn fail(&self, message: &StageMessage, reason: &str) -> Result<(), StageError> {
        end_job(self.0.as_ref(), message, JobState::Failed, reason).await
    }

    async fn attempt_failed(&self, message: &StageMessage, error: &StageError) {
        if let Err(e) = self.0.record_failure(message.job_id, message.stage, error).await {
            warn!(job = %message.job_id, %e, "could not record the failed attempt");
        }
    }

    async fn start(&self, message: &StageMessage) -> Result<u32, StageError> {
        Ok(self.0.start_run(message.job_id, message.stage).await?)
    }

    async fn settle(&self, message: &StageMessage) {
        if let Err(e) = self.0.settle_run(message.job_id, message.stage).await {
            warn!(job = %message.job_id, %e, "could not record the end of the stage's run");
        }
    }
}
