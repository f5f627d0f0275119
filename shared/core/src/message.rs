//! What travels on the queue between stages: only keys and small metadata, never
//! image or voxel bytes (those live in the blob store).

use crate::{Category, JobId, Stage};
use serde::{Deserialize, Serialize};

/// Bumped on incompatible changes so a worker can dead-letter what it cannot read.
pub const MESSAGE_SCHEMA_VERSION: u32 = 1;

/// A request for `stage` to process job `job_id`. The blob keys are derived from the
/// job id and stage, so the message only names the job and its routing facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageMessage {
    pub schema: u32,
    pub job_id: JobId,
    pub stage: Stage,
    /// Set once known (from a manifest or the classifier); routes reconstruct work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// 1 on first delivery; incremented when the runtime re-publishes for a retry.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

impl StageMessage {
    pub fn new(job_id: JobId, stage: Stage, category: Option<Category>) -> Self {
        StageMessage { schema: MESSAGE_SCHEMA_VERSION, job_id, stage, category, attempt: 1 }
    }

    /// The message that hands this job to the following stage, if any.
    pub fn next_stage(&self, category: Option<Category>) -> Option<StageMessage> {
        self.stage
            .next()
            .map(|s| StageMessage::new(self.job_id, s, category.or(self.category)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let m = StageMessage::new(JobId::new(), Stage::Classify, None);
        let back: StageMessage = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let next = m.next_stage(Some(Category::Sofa)).unwrap();
        assert_eq!(next.stage, Stage::Reconstruct);
        assert_eq!(next.category, Some(Category::Sofa));
        let raw = format!(r#"{{"schema":1,"job_id":"{}","stage":"gate"}}"#, m.job_id);
        let parsed: StageMessage = serde_json::from_str(&raw).unwrap();
        assert_eq!(parsed.attempt, 1);
        assert!(serde_json::from_str::<StageMessage>("{\"schema\":1}").is_err());
    }
}
