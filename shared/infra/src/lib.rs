//! Runtime plumbing shared by the workers and the CLI. Stage logic never depends on it.

pub mod batcher;
pub mod blob;
pub mod config;
pub mod fault;
pub mod health;
pub mod jobs;
pub mod metrics_spec;
pub mod otel;
pub mod otel_metrics;
pub mod otlp;
pub mod outbox;
pub mod pipeline;
pub mod queue;
pub mod recovery;
pub mod repository;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod store;
pub mod telemetry;
