//! Types every part of mono2mesh agrees on. No I/O lives here: stages, workers,
//! the job store and the queue all speak in these terms.

pub mod category;
pub mod job;
pub mod message;
pub mod outcome;

pub use category::{Category, UnknownCategory};
pub use job::{JobId, JobState, Stage, TransitionError};
pub use message::{StageMessage, MESSAGE_SCHEMA_VERSION};
pub use outcome::{ErrorClass, StageError};
