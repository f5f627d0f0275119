//! Ingestion and operations for mono2mesh: bulk submission (`mono2mesh submit`),
//! batch status and mesh download, per-stage stats, and the HTTP API with its status
//! page (`mono2mesh serve`). The CLI commands are thin shells over this crate.

pub mod bulk;
pub mod idempotency;
pub mod ingest;
pub mod manifest;
pub mod server;
pub mod stats;
pub mod views;
pub mod webhook;
