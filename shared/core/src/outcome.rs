//! How a stage failure should be handled by whoever runs the stage.

use serde::{Deserialize, Serialize};

/// The three ways a stage can fail, which decide what the runtime does with the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// A passing fault (store or database unreachable, broker hiccup): try again later.
    Retryable,
    /// The work itself is broken (malformed message, missing object, bug): retrying
    /// cannot help, so it goes to the dead-letter queue with its reason.
    Permanent,
    /// The input is unusable for the method (blurry, too dark, not an image): the job
    /// ends as `rejected` with reasons the user can act on. Not an operational error.
    Rejection,
}

/// A stage failure with its class and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{class:?}: {reason}")]
pub struct StageError {
    pub class: ErrorClass,
    pub reason: String,
}

impl StageError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Retryable, reason: reason.into() }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Permanent, reason: reason.into() }
    }
    pub fn rejection(reason: impl Into<String>) -> Self {
        StageError { class: ErrorClass::Rejection, reason: reason.into() }
    }
}
