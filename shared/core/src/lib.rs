//! Types every part of mono2mesh agrees on. No I/O lives here: stages, workers,
//! the job store and the queue all speak in these terms.

pub mod budget;
pub mod category;
pub mod job;
pub mod message;
pub mod outcome;
pub mod size;

pub use budget::{BudgetPermit, ByteBudget, OverBudget};
pub use category::{Category, UnknownCategory};
pub use job::{JobId, JobState, Stage, TransitionError};
pub use message::{StageMessage, MESSAGE_SCHEMA_VERSION};
pub use outcome::{ErrorClass, StageError};
pub use size::{RealSize, SizeError, SizeFields};

/// The user's cache directory for mono2mesh (`$XDG_CACHE_HOME/mono2mesh`, else
/// `~/.cache/mono2mesh`, else the temp dir): model mirrors and feature caches live there,
/// outside any work tree.
pub fn user_cache_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mono2mesh")
}
