//! `mono2mesh serve`: the JSON API (documented in docs/openapi.yaml) and the status page.
//!
//! Every route is an [`Op`]; the router is built from `Op::ALL` and nothing else, so
//! the OpenAPI test that compares `Op::ALL` with the spec covers every route served,
//! and each route gets its access check (`Op::access`) and limits from there.

pub mod auth;
mod error;
mod handlers;
mod limits;
pub mod page;

pub use auth::{check_token_strength, Access, WeakToken, MAKE_A_TOKEN, MIN_TOKEN_LEN};
pub use error::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use mono2mesh_infra::secret::SecretString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::Ingest;
pub use crate::stats::AmqpProbe;

/// The OpenAPI document, served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../../../docs/openapi.yaml");

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer tokens with write scope (they read too). With no token at all, write or
    /// read, every route is open, which `mono2mesh serve` only allows with `--no-auth`.
    pub tokens: Vec<SecretString>,
    /// Bearer tokens with read scope: every GET, no POST.
    pub read_tokens: Vec<SecretString>,
    /// Largest request body (a photo upload), in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take, reading its body included.
    pub request_timeout: Duration,
    /// Requests served at once; more are shed with 503.
    pub max_in_flight: usize,
    /// Lifetime of presigned output links.
    pub presign_expiry: Duration,
    /// Most items in one `POST /v1/batches`.
    pub max_batch_items: usize,
    /// Batch of a photo posted without one.
    pub default_batch: String,
    /// Directory uploads are spooled to while they arrive (removed when handled).
    pub spool_dir: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            max_body_bytes: 50 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_in_flight: 256,
            presign_expiry: Duration::from_secs(900),
            max_batch_items: 1000,
            default_batch: "api".to_string(),
            spool_dir: std::env::temp_dir(),
        }
    }
}

/// Where queue depths for `/v1/stats` come from.
#[derive(Debug, Clone)]
pub enum QueueProbe {
    /// One kept connection, depths cached for a few seconds (see [`AmqpProbe`]).
    Amqp(Arc<AmqpProbe>),
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
    StatusPanel,
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
    pub const ALL: [Op; 14] = [
        Op::StatusPage,
        Op::StatusPanel,
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
            Op::StatusPanel => "/v1/status",
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
            Op::StatusPanel => "statusPanel",
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

    /// Who may call it: the probes and the page shell (no data in it) are open, every
    /// GET of data needs read scope, every POST write scope.
    pub fn access(self) -> Access {
        match self {
            Op::StatusPage | Op::Health | Op::OpenApi => Access::Open,
            Op::CreateJob | Op::CreateBatch => Access::Write,
            _ => Access::Read,
        }
    }

    /// Whether the time-out and the in-flight limit apply. Not to the liveness probe
    /// and the static documents: an overloaded server is still alive, and restarting
    /// it for shedding load would make things worse.
    fn limited(self) -> bool {
        !matches!(self, Op::Health | Op::OpenApi)
    }

    fn handler(self) -> MethodRouter<AppState> {
        match self {
            Op::StatusPage => get(page::status_page),
            Op::StatusPanel => get(page::status_panel),
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

/// The whole application: every `Op` behind its access check and limits, JSON
/// 404/405 fallbacks and the body limit.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let limit = config.max_body_bytes;
    let max_in_flight = config.max_in_flight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let limits = limits::Limits {
        timeout: config.request_timeout,
        in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
        max_in_flight,
    };
    let mut router = Router::new();
    for op in Op::ALL {
        let guard = auth::Guard { config: config.clone(), needed: op.access() };
        // Layers wrap outwards: the limits run first, then the access check.
        let mut handler = op.handler().route_layer(from_fn_with_state(guard, auth::guard));
        if op.limited() {
            handler = handler.route_layer(from_fn_with_state(limits.clone(), limits::limit));
        }
        router = router.route(op.path(), handler);
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
    fn ops_are_unique_and_every_data_route_needs_a_token() {
        let mut seen = std::collections::HashSet::new();
        for op in Op::ALL {
            assert!(seen.insert((op.method(), op.path())), "{op:?} duplicates a route");
            if op.path().starts_with("/v1/") {
                let needed = if op.method() == Method::GET { Access::Read } else { Access::Write };
                assert_eq!(op.access(), needed, "{op:?}");
            }
        }
        let open: Vec<Op> = Op::ALL.into_iter().filter(|op| op.access() == Access::Open).collect();
        assert_eq!(open, [Op::StatusPage, Op::Health, Op::OpenApi]);
    }
}
