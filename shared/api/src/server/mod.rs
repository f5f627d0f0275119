//! `mono2mesh serve`: the JSON API (documented in docs/openapi.yaml) and the status page.
//!
//! Every route is an [`Op`]; the router is built from `Op::ALL` and nothing else, so
//! the OpenAPI test that compares `Op::ALL` with the spec covers every route served.

mod error;
mod handlers;
pub mod page;

pub use error::ApiError;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use mono2mesh_infra::queue::Topology;
use mono2mesh_infra::secret::{SecretString, SecretUrl};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::Ingest;

/// The OpenAPI document, served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../../../docs/openapi.yaml");

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer tokens accepted on write endpoints. Empty means writes are open, which
    /// `mono2mesh serve` only allows with an explicit flag.
    pub tokens: Vec<SecretString>,
    /// Largest request body (a photo upload), in bytes.
    pub max_body_bytes: usize,
    /// Lifetime of presigned output links.
    pub presign_expiry: Duration,
    /// Most items in one `POST /v1/batches`.
    pub max_batch_items: usize,
    /// Batch of a photo posted without one.
    pub default_batch: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens: Vec::new(),
            max_body_bytes: 50 * 1024 * 1024,
            presign_expiry: Duration::from_secs(900),
            max_batch_items: 1000,
            default_batch: "api".to_string(),
        }
    }
}

/// Where queue depths for `/v1/stats` come from.
#[derive(Debug, Clone)]
pub enum QueueProbe {
    Amqp { url: SecretUrl, topology: Topology },
    /// In-process queue (embedded mode, tests): no broker to ask.
    None,
}

#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub config: Arc<ApiConfig>,
    pub probe: Arc<QueueProbe>,
}

/// Every route the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    StatusPage,
    Health,
    OpenApi,
    CreateJob,
    GetJob,
    JobEvents,
    JobInput,
    ListOutputs,
    GetOutput,
    CreateBatch,
    GetBatch,
    ListBatchJobs,
    Stats,
}

impl Op {
    pub const ALL: [Op; 13] = [
        Op::StatusPage,
        Op::Health,
        Op::OpenApi,
        Op::CreateJob,
        Op::GetJob,
        Op::JobEvents,
        Op::JobInput,
        Op::ListOutputs,
        Op::GetOutput,
        Op::CreateBatch,
        Op::GetBatch,
        Op::ListBatchJobs,
        Op::Stats,
    ];

    /// Route path in axum's syntax, which is also OpenAPI's.
    pub fn path(self) -> &'static str {
        match self {
            Op::StatusPage => "/",
            Op::Health => "/healthz",
            Op::OpenApi => "/openapi.yaml",
            Op::CreateJob => "/v1/jobs",
            Op::GetJob => "/v1/jobs/{id}",
            Op::JobEvents => "/v1/jobs/{id}/events",
            Op::JobInput => "/v1/jobs/{id}/input",
            Op::ListOutputs => "/v1/jobs/{id}/outputs",
            Op::GetOutput => "/v1/jobs/{id}/outputs/{name}",
            Op::CreateBatch => "/v1/batches",
            Op::GetBatch => "/v1/batches/{name}",
            Op::ListBatchJobs => "/v1/batches/{name}/jobs",
            Op::Stats => "/v1/stats",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Op::CreateJob | Op::CreateBatch => Method::POST,
            _ => Method::GET,
        }
    }

    /// The OpenAPI `operationId`.
    pub fn operation_id(self) -> &'static str {
        match self {
            Op::StatusPage => "statusPage",
            Op::Health => "health",
            Op::OpenApi => "openApi",
            Op::CreateJob => "createJob",
            Op::GetJob => "getJob",
            Op::JobEvents => "listJobEvents",
            Op::JobInput => "getJobInput",
            Op::ListOutputs => "listJobOutputs",
            Op::GetOutput => "getJobOutput",
            Op::CreateBatch => "createBatch",
            Op::GetBatch => "getBatch",
            Op::ListBatchJobs => "listBatchJobs",
            Op::Stats => "getStats",
        }
    }

    /// Write endpoints need a bearer token.
    pub fn needs_token(self) -> bool {
        matches!(self, Op::CreateJob | Op::CreateBatch)
    }

    fn handler(self) -> MethodRouter<AppState> {
        match self {
            Op::StatusPage => get(page::status_page),
            Op::Health => get(handlers::health),
            Op::OpenApi => get(handlers::openapi),
            Op::CreateJob => post(handlers::create_job),
            Op::GetJob => get(handlers::get_job),
            Op::JobEvents => get(handlers::job_events),
            Op::JobInput => get(handlers::job_input),
            Op::ListOutputs => get(handlers::list_outputs),
            Op::GetOutput => get(handlers::get_output),
            Op::CreateBatch => post(handlers::create_batch),
            Op::GetBatch => get(handlers::get_batch),
            Op::ListBatchJobs => get(handlers::list_batch_jobs),
            Op::Stats => get(handlers::stats),
        }
    }
}

/// Proof that the request carried an accepted bearer token; write handlers take it.
pub struct WriteAccess;

/// Compares in time independent of where the strings differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.config.tokens.is_empty() {
            return Ok(WriteAccess);
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("this endpoint needs an `Authorization: Bearer <token>` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let accepted = state.config.tokens.iter().any(|t| constant_time_eq(t.expose().as_bytes(), token.as_bytes()));
        if accepted {
            Ok(WriteAccess)
        } else {
            Err(ApiError::unauthorized("the bearer token is not accepted"))
        }
    }
}

/// The whole application: every `Op`, JSON 404/405 fallbacks and the body limit.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for op in Op::ALL {
        router = router.route(op.path(), op.handler());
    }
    router
        .fallback(|| async { ApiError::not_found("no_route", "no such endpoint; see /openapi.yaml") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
        })
        .route_layer(axum::middleware::from_fn(traced))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Runs each routed request in a server span named after its route. A caller that
/// sends W3C `traceparent`/`tracestate` headers makes that span (and so the job's
/// `submit` span and every stage after it) part of the caller's own trace.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let caller = mono2mesh_infra::otel::TraceHeaders::from_pairs(
        request.headers().iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    );
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    mono2mesh_infra::otel::continue_trace(&span, &caller);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Binds `addr` and serves in a background task; returns the bound address (for
/// `127.0.0.1:0` in tests) and the task.
pub async fn spawn(addr: SocketAddr, state: AppState) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, state, std::future::pending()));
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_unique_and_tokens_compare_exactly() {
        let mut seen = std::collections::HashSet::new();
        for op in Op::ALL {
            assert!(seen.insert((op.method(), op.path())), "{op:?} duplicates a route");
        }
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
