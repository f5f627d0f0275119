//! Recovery: nothing stays unfinished. Every worker runs a [`Janitor`] for its own lanes
//! beside its consumer, doing two things the runtime alone cannot:
//!
//! - **Dead letters.** A message lands in its stage's dead-letter queue when the runtime
//!   gave up on it (the job is normally marked `failed` already), when the broker's
//!   delivery limit ran out (the worker died on it too often) or when it could not be
//!   read. The janitor leases those letters, marks each one's job `failed` with the
//!   reason and the stage where nothing has, and only then removes them: a janitor that
//!   dies half-way leaves them for the next one.
//! - **Stuck jobs.** A job that waits for this worker's stage longer than the stage's
//!   deadline while the lane's queue is empty has lost its message (a publish the broker
//!   never confirmed, an operator purging a queue): the sweeper re-publishes the stage's
//!   message (the handlers are idempotent, a duplicate costs a lookup), and fails the job
//!   after `max_republish` sweeps that did not move it. With a backlog in the lane the
//!   sweep waits: the job's message may simply be in it. Every replica sweeps, and the
//!   claim (`FOR UPDATE SKIP LOCKED` plus the sweep time) keeps them from doubling up.

use mono2mesh_core::{Category, JobState, Stage, StageMessage};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

use crate::config::RecoverySettings;
use crate::jobs::{JobStoreError, Transition};
use crate::pipeline::end_early;
use crate::queue::{Lane, MessageQueue, QueueError};
use crate::repository::JobRepository;
use crate::telemetry::names;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("job store: {0}")]
    Jobs(#[from] JobStoreError),
}

/// What one pass over the dead letters did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterReport {
    /// Jobs this pass marked failed.
    pub failed: u64,
    /// Letters whose job had ended already (the runtime recorded it) or moved on.
    pub already_final: u64,
    /// Letters that were not stage messages, or named no known job.
    pub undecodable: u64,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub republished: u64,
    pub failed: u64,
    /// Lanes skipped because messages are waiting in them.
    pub busy_lanes: u64,
}

/// The recovery loop of one worker's lanes.
pub struct Janitor {
    queue: Arc<dyn MessageQueue>,
    jobs: Arc<dyn JobRepository>,
    lanes: Vec<Lane>,
    settings: RecoverySettings,
}

/// Dead letters leased per pass: a bound on the work between two acknowledgements.
const LETTERS_PER_PASS: usize = 64;

impl Janitor {
    /// A janitor for `lanes`, which must all belong to one stage (a worker's lanes).
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        jobs: Arc<dyn JobRepository>,
        lanes: Vec<Lane>,
        settings: RecoverySettings,
    ) -> Result<Janitor, String> {
        settings.validate()?;
        let Some(first) = lanes.first() else { return Err("a janitor needs at least one lane".into()) };
        if lanes.iter().any(|l| l.stage() != first.stage()) {
            return Err("all lanes of a janitor must belong to one stage".into());
        }
        Ok(Janitor { queue, jobs, lanes, settings })
    }

    pub fn stage(&self) -> Stage {
        self.lanes[0].stage()
    }

    /// Fails the jobs of every dead letter of this stage that nothing has failed yet,
    /// then removes the letters. On a store outage the letters are put back.
    pub async fn drain_dead_letters(&self) -> Result<DeadLetterReport, RecoveryError> {
        let stage = self.stage();
        let mut report = DeadLetterReport::default();
        loop {
            let lease = self.queue.lease_dead_letters(stage, LETTERS_PER_PASS).await?;
            if lease.letters.is_empty() {
                lease.ack().await?;
                return Ok(report);
            }
            let taken = lease.letters.len();
            for letter in &lease.letters {
                match self.settle_letter(&letter.body, &letter.reason).await {
                    Ok(action) => {
                        match action {
                            LetterAction::Failed => report.failed += 1,
                            LetterAction::AlreadyFinal => report.already_final += 1,
                            LetterAction::Undecodable => report.undecodable += 1,
                        }
                        metrics::counter!(names::RECOVERY_ACTIONS, "stage" => stage.name(), "action" => action.metric())
                            .increment(1);
                    }
                    Err(e) => {
                        // Nothing was lost: the letters go back and the next pass retries.
                        lease.release().await?;
                        return Err(e);
                    }
                }
            }
            lease.ack().await?;
            if taken < LETTERS_PER_PASS {
                return Ok(report);
            }
        }
    }

    async fn settle_letter(&self, body: &[u8], broker_reason: &str) -> Result<LetterAction, RecoveryError> {
        let stage = self.stage();
        let message: StageMessage = match serde_json::from_slice(body) {
            Ok(message) => message,
            Err(e) => {
                // No job to finish; the body is logged (bounded) so it is not lost unseen.
                let shown = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                error!(%stage, reason = broker_reason, body = %shown, error = %e, "dead letter is not a stage message; dropped");
                return Ok(LetterAction::Undecodable);
            }
        };
        let Some(job) = self.jobs.find_job(message.job_id).await? else {
            warn!(job = %message.job_id, %stage, "dead letter for an unknown job; dropped");
            return Ok(LetterAction::Undecodable);
        };
        if job.state.is_terminal() || job.state != message.stage.waiting_state() {
            debug!(job = %job.id, state = %job.state, "dead letter of a job that ended or moved on");
            return Ok(LetterAction::AlreadyFinal);
        }
        let reason = dead_letter_reason(message.stage, broker_reason);
        let detail = serde_json::json!({ "reason": reason, "dead_letter": broker_reason, "attempt": message.attempt });
        match self.fail_waiting(job.id, message.stage, &reason, detail).await? {
            Transition::Applied { .. } => {
                warn!(job = %job.id, %stage, %reason, "job failed from its dead letter");
                Ok(LetterAction::Failed)
            }
            Transition::Duplicate | Transition::Stale { .. } => Ok(LetterAction::AlreadyFinal),
        }
    }

    /// Fails a job that still waits for `stage`; one that moved on or ended is left alone.
    async fn fail_waiting(
        &self,
        job_id: mono2mesh_core::JobId,
        stage: Stage,
        reason: &str,
        detail: serde_json::Value,
    ) -> Result<Transition, JobStoreError> {
        end_early(self.jobs.as_ref(), job_id, stage, &[stage.waiting_state()], JobState::Failed, reason, detail).await
    }

    /// Re-publishes (or, past `max_republish`, fails) jobs that waited for this stage
    /// past its deadline, on lanes whose queue is empty.
    pub async fn sweep(&self) -> Result<SweepReport, RecoveryError> {
        let stage = self.stage();
        let deadline = self.settings.stuck_after_secs.of(stage);
        let mut report = SweepReport::default();
        for lane in &self.lanes {
            if self.queue.ready_count(*lane).await? > 0 {
                report.busy_lanes += 1;
                continue;
            }
            let categories: Option<Vec<Category>> = match lane {
                Lane::Reconstruct(category) => Some(vec![*category]),
                _ => None,
            };
            let stuck =
                self.jobs.claim_stuck(stage, categories.as_deref(), deadline, self.settings.sweep_batch).await?;
            for job in stuck {
                if job.sweeps > self.settings.max_republish {
                    let reason = format!(
                        "stuck waiting for {stage}: {} re-publishes over {} s each did not move it",
                        self.settings.max_republish,
                        deadline.as_secs()
                    );
                    let detail = serde_json::json!({ "reason": reason, "sweeps": job.sweeps });
                    let moved = self.fail_waiting(job.id, stage, &reason, detail).await?;
                    if matches!(moved, Transition::Applied { .. }) {
                        warn!(job = %job.id, %stage, "stuck job failed");
                        report.failed += 1;
                        metrics::counter!(names::RECOVERY_ACTIONS, "stage" => stage.name(), "action" => "failed_stuck")
                            .increment(1);
                    }
                    continue;
                }
                let message = StageMessage::new(job.id, stage, job.category);
                self.queue.publish(&message).await?;
                self.jobs
                    .append_event(job.id, Some(stage), "swept", serde_json::json!({ "sweeps": job.sweeps, "republished": true }))
                    .await?;
                info!(job = %job.id, %stage, sweeps = job.sweeps, "stuck job re-published");
                report.republished += 1;
                metrics::counter!(names::RECOVERY_ACTIONS, "stage" => stage.name(), "action" => "republished").increment(1);
            }
        }
        Ok(report)
    }

    /// Drains dead letters and sweeps on their intervals until `shutdown` completes.
    /// Failures (broker or database away) are logged and retried on the next tick.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let stage = self.stage();
        let mut letters = tokio::time::interval(Duration::from_millis(self.settings.dead_letter_poll_ms));
        let mut sweeps = tokio::time::interval(Duration::from_secs(self.settings.sweep_interval_secs));
        letters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = letters.tick() => match self.drain_dead_letters().await {
                    Ok(report) if report != DeadLetterReport::default() => info!(%stage, ?report, "dead letters handled"),
                    Ok(_) => {}
                    Err(e) => warn!(%stage, %e, "dead-letter pass failed; retrying on the next tick"),
                },
                _ = sweeps.tick() => match self.sweep().await {
                    Ok(report) if report.republished + report.failed > 0 => info!(%stage, ?report, "sweep done"),
                    Ok(_) => {}
                    Err(e) => warn!(%stage, %e, "sweep failed; retrying on the next tick"),
                },
            }
        }
        debug!(%stage, "janitor stopped");
    }
}

enum LetterAction {
    Failed,
    AlreadyFinal,
    Undecodable,
}

impl LetterAction {
    fn metric(&self) -> &'static str {
        match self {
            LetterAction::Failed => "failed_dead_letter",
            LetterAction::AlreadyFinal => "already_final",
            LetterAction::Undecodable => "undecodable",
        }
    }
}

/// The job's failure reason for a dead letter: the broker's words made readable.
pub fn dead_letter_reason(stage: Stage, broker_reason: &str) -> String {
    match broker_reason {
        crate::queue::memory::DELIVERY_LIMIT_REASON => format!(
            "{stage}: the message was delivered more often than the delivery limit allows (the worker \
             died or lost its connection while handling it each time), so the broker gave up on it"
        ),
        other => format!("{stage}: dead-lettered: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_positive_intervals_and_deadlines() {
        assert!(RecoverySettings::default().validate().is_ok());
        let mut s = RecoverySettings::default();
        s.stuck_after_secs.refine = 0;
        assert!(s.validate().unwrap_err().contains("stuck_after_secs"));
        let s = RecoverySettings { sweep_batch: 0, ..RecoverySettings::default() };
        assert!(s.validate().is_err());
    }

    #[test]
    fn dead_letter_reasons_name_the_stage_and_the_cause() {
        let limit = dead_letter_reason(Stage::Gate, "delivery_limit");
        assert!(limit.starts_with("gate:") && limit.contains("delivery limit"), "{limit}");
        assert_eq!(dead_letter_reason(Stage::Refine, "expired"), "refine: dead-lettered: expired");
    }
}
