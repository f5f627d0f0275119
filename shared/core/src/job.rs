//! Job identity, pipeline stages and the job state machine.
//!
//! The state machine is the one guard against out-of-order delivery: a stage may
//! only move a job forward, so a late or duplicated message can never undo work.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A job is one photo travelling through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// Time-ordered ids (UUIDv7) keep recent jobs together in indexes and listings.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(JobId(Uuid::parse_str(s)?))
    }
}

/// The four phases of the method, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Gate,
    Classify,
    Reconstruct,
    Refine,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Gate, Stage::Classify, Stage::Reconstruct, Stage::Refine];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Gate => "gate",
            Stage::Classify => "classify",
            Stage::Reconstruct => "reconstruct",
            Stage::Refine => "refine",
        }
    }

    /// The state a job reaches when this stage succeeds.
    pub fn success_state(self) -> JobState {
        match self {
            Stage::Gate => JobState::Gated,
            Stage::Classify => JobState::Classified,
            Stage::Reconstruct => JobState::Reconstructed,
            Stage::Refine => JobState::Done,
        }
    }

    /// The state a job is in while it waits for this stage (its message is queued or
    /// being handled): what the recovery sweeper looks for.
    pub fn waiting_state(self) -> JobState {
        match self {
            Stage::Gate => JobState::Submitted,
            Stage::Classify => JobState::Gated,
            Stage::Reconstruct => JobState::Classified,
            Stage::Refine => JobState::Reconstructed,
        }
    }

    pub fn next(self) -> Option<Stage> {
        match self {
            Stage::Gate => Some(Stage::Classify),
            Stage::Classify => Some(Stage::Reconstruct),
            Stage::Reconstruct => Some(Stage::Refine),
            Stage::Refine => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("unknown stage {s:?}"))
    }
}

/// Where a job stands. `Rejected` (the input is unusable, with reasons), `Done` and
/// `Failed` (gave up after retries) are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Submitted,
    Gated,
    Classified,
    Reconstructed,
    Done,
    Rejected,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Submitted,
        JobState::Gated,
        JobState::Classified,
        JobState::Reconstructed,
        JobState::Done,
        JobState::Rejected,
        JobState::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Gated => "gated",
            JobState::Classified => "classified",
            JobState::Reconstructed => "reconstructed",
            JobState::Done => "done",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Rejected | JobState::Failed)
    }

    /// Percent of the pipeline's work behind a job in this state, 0-100, for progress bars.
    /// Each stage counts with its share of a job's time on the reference CPU (stop 12's
    /// `mono2mesh run` timings: gate 44 ms, classify 97 ms, reconstruct 155 ms, refine
    /// with its preview 158 ms), so the bar moves at about an even pace. Rejected and
    /// failed jobs are finished: 100.
    pub fn progress(self) -> u8 {
        match self {
            JobState::Submitted => 0,
            JobState::Gated => 10,
            JobState::Classified => 31,
            JobState::Reconstructed => 65,
            JobState::Done | JobState::Rejected | JobState::Failed => 100,
        }
    }

    /// [`JobState::progress`] of a job in this state that `stage` has done `percent` of its
    /// work on: between the stage's waiting and success states' progress (or this state's,
    /// when higher: a job whose category was named skips classify). Terminal states: 100.
    pub fn progress_in(self, stage: Stage, percent: u8) -> u8 {
        if self.is_terminal() {
            return 100;
        }
        let low = self.progress().max(stage.waiting_state().progress());
        let high = stage.success_state().progress().max(low);
        // At most one below the next state: a stage's 100% is its success, which moves the job.
        let within = u32::from(high - low) * u32::from(percent.min(100)) / 100;
        (low + within as u8).min(high.saturating_sub(1).max(low))
    }

    /// Progress along the happy path; terminal failure states rank above everything
    /// so nothing moves a job out of them.
    fn rank(self) -> u8 {
        match self {
            JobState::Submitted => 0,
            JobState::Gated => 1,
            JobState::Classified => 2,
            JobState::Reconstructed => 3,
            JobState::Done | JobState::Rejected | JobState::Failed => 4,
        }
    }

    /// Whether `self -> to` is a legal forward step. Rejection and failure are
    /// reachable from every non-terminal state; the happy path may skip a step
    /// (a manifest that names the category goes gated -> classified at the gate).
    pub fn can_move_to(self, to: JobState) -> bool {
        if self.is_terminal() {
            return false;
        }
        match to {
            JobState::Rejected | JobState::Failed => true,
            JobState::Submitted => false,
            _ => to.rank() > self.rank(),
        }
    }

    /// Checks a transition. `Ok(false)` means the job is already in `to`: a
    /// duplicate delivery, harmless and idempotent.
    pub fn transition(self, to: JobState) -> Result<bool, TransitionError> {
        if self == to {
            Ok(false)
        } else if self.can_move_to(to) {
            Ok(true)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_moves_forward_only() {
        use JobState::*;
        let path = [Submitted, Gated, Classified, Reconstructed, Done];
        for w in path.windows(2) {
            assert_eq!(w[0].transition(w[1]), Ok(true));
            assert!(w[1].transition(w[0]).is_err(), "{} -> {} must be refused", w[1], w[0]);
        }
        assert_eq!(Gated.transition(Gated), Ok(false), "duplicates are idempotent");
        assert_eq!(Gated.transition(Reconstructed), Ok(true));
    }

    #[test]
    fn progress_only_grows_along_legal_moves() {
        for from in JobState::ALL {
            for to in JobState::ALL {
                if from.can_move_to(to) && to != JobState::Rejected && to != JobState::Failed {
                    assert!(to.progress() > from.progress(), "{from} -> {to}");
                }
            }
        }
        assert_eq!(JobState::Submitted.progress(), 0);
        assert!(JobState::ALL.iter().filter(|s| s.is_terminal()).all(|s| s.progress() == 100));
    }

    #[test]
    fn progress_within_a_stage_lies_between_its_states() {
        use JobState::*;
        assert_eq!(Reconstructed.progress_in(Stage::Refine, 0), 65);
        assert_eq!(Reconstructed.progress_in(Stage::Refine, 50), 82);
        assert_eq!(Reconstructed.progress_in(Stage::Refine, 100), 99, "done is what makes 100");
        assert_eq!(Classified.progress_in(Stage::Reconstruct, 50), 48);
        // A named category skips classify: a gated job in reconstruct counts from there.
        assert_eq!(Gated.progress_in(Stage::Reconstruct, 0), 31);
        assert_eq!(Done.progress_in(Stage::Refine, 10), 100);
        assert_eq!(Failed.progress_in(Stage::Gate, 0), 100);
        for state in JobState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for stage in [Stage::Gate, Stage::Classify, Stage::Reconstruct, Stage::Refine] {
                let mut last = 0;
                for percent in 0..=100 {
                    let p = state.progress_in(stage, percent);
                    assert!(p >= last && p < 100, "{state} {stage} {percent}: {p}");
                    last = p;
                }
            }
        }
    }

    #[test]
    fn terminal_states_are_final() {
        for t in [JobState::Done, JobState::Rejected, JobState::Failed] {
            for to in JobState::ALL {
                if to != t {
                    assert!(t.transition(to).is_err(), "{t} -> {to}");
                }
            }
        }
        assert_eq!(JobState::Classified.transition(JobState::Rejected), Ok(true));
        assert_eq!(JobState::Submitted.transition(JobState::Failed), Ok(true));
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.name().parse::<JobState>().unwrap(), s);
        }
        for s in Stage::ALL {
            assert_eq!(s.name().parse::<Stage>().unwrap(), s);
            assert!(s.success_state().can_move_to(JobState::Done) || s == Stage::Refine);
        }
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
    }
}
