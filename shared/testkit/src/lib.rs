//! The test harness: real services for integration tests and benches, never linked into
//! a shipped binary (crates take it as a dev-dependency only).
//!
//! * [`services`]: an in-process S3 server and a fresh, migrated Postgres database per test;
//! * [`rig`]: a whole pipeline environment (RabbitMQ, Postgres, S3) for worker binaries;
//! * [`proxy`]: a TCP proxy a test can cut, to simulate broker and database outages;
//! * [`otlp`]: an OTLP/HTTP receiver that decodes exported spans and metric points.

pub mod gltf_validator;
pub mod otlp;
pub mod proxy;
pub mod rig;
pub mod services;
