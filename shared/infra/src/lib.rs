//! Runtime plumbing shared by the workers and the CLI. Stage logic never depends on it.

pub mod blob;
pub mod config;
pub mod jobs;
pub mod otel;
pub mod otel_metrics;
pub mod pipeline;
pub mod queue;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod test_support;
#[cfg(feature = "test-support")]
pub mod test_otlp;
#[cfg(feature = "test-support")]
pub mod test_proxy;
#[cfg(feature = "test-support")]
pub mod test_rig;
