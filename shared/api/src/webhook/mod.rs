//! Webhooks: a JSON `POST` to a URL when a job finishes (done, rejected or failed),
//! signed with HMAC-SHA256, retried with back-off, never holding up the pipeline.
//!
//! Where it fires, and why there: the workers only move jobs; a Postgres outbox
//! (`webhook_deliveries`, one row per job that asked) is filled at submission, and a
//! dispatcher in `mono2mesh serve` claims rows whose job has reached a final state.
//! - A job ends in any of four stages and in the runtime's reject/fail paths; firing
//!   from the stage would put an HTTP client, the secret and minutes of retries into
//!   every (GPU) worker, and a retry would hold a queue delivery or die with the
//!   worker. The outbox row survives restarts, so no notification is lost.
//! - The job's state is the only trigger: whatever ends a job (a stage, the runtime,
//!   an operator) notifies, with no code path to forget.
//! - Claims use `FOR UPDATE SKIP LOCKED` and a lease, so several API replicas share
//!   the work and a dispatcher that dies mid-call only delays that call.
//!
//! The price: a notification waits up to one poll interval (1 s by default), and
//! needs a running `mono2mesh serve`. Delivery is at least once; receivers dedupe on
//! `X-Mono2mesh-Delivery`'s job id.
//!
//! Each call's outcome is kept on the row (shown as `webhook` in `GET /v1/jobs/{id}`)
//! and appended to the job's history as a `webhook` event, visible at
//! `GET /v1/jobs/{id}/events`.
//!
//! Callers choose webhook URLs, so the dispatcher must not become their way into the
//! private network it runs in (SSRF): unless `webhook.allow_private_networks` is set,
//! a URL whose host is, or resolves to, a loopback, private, link-local (cloud
//! metadata) or otherwise non-public address is never called. The check runs in the
//! HTTP client's own resolver, on the addresses it then connects to, so a name that
//! resolves to a public address when checked and a private one later gains nothing.
//!
//! The rooms: `payload` (what is sent), `signing` (HMAC), `url_guard` (which URLs may
//! be called), `dispatcher` (the claim-call-record loop); the outbox rows themselves
//! are `mono2mesh_infra::store::webhooks`, with the rest of the SQL.

pub mod dispatcher;
pub mod payload;
pub mod signing;
pub mod url_guard;

pub use dispatcher::{CallOutcome, Dispatcher};
pub use mono2mesh_infra::store::webhooks::{DeliveryState, WEBHOOK_EVENT};
pub use payload::payload;
pub use signing::{sign, verify};
pub use url_guard::{is_public, non_public_literal, validate_url, MAX_URL_LEN};

use mono2mesh_infra::jobs::JobStoreError;

/// `sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`, keyed with `webhook.secret`.
pub const SIGNATURE_HEADER: &str = "x-mono2mesh-signature";
/// Unix seconds when the call was signed; part of the signed text, so an old call
/// cannot be replayed with a fresh timestamp.
pub const TIMESTAMP_HEADER: &str = "x-mono2mesh-timestamp";
/// `{job id}:{attempt}`: the same job id on every retry of one notification.
pub const DELIVERY_HEADER: &str = "x-mono2mesh-delivery";
pub const EVENT_HEADER: &str = "x-mono2mesh-event";
/// The one event type so far.
pub const JOB_FINISHED: &str = "job.finished";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook URL {0:?}: an absolute http:// or https:// URL of at most 2000 characters")]
    InvalidUrl(String),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}
