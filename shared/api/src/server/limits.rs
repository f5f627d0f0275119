//! Bounds on what one request, and all of them together, may take: a time limit per
//! request (a slow client or a hung database answers 503, never hangs a connection
//! forever) and a limit on requests in flight beyond which new ones are shed at once
//! with 503 and `Retry-After` (queueing them would only make every caller slower).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use super::ApiError;

#[derive(Clone)]
pub(super) struct Limits {
    pub timeout: Duration,
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
}

/// Sheds the request when `max_in_flight` are already being served, else runs it
/// under the time limit. Dropping the handler on time-out is safe for creates: the
/// client is told to retry, and a retry resumes a half-done submission (see
/// `Ingest::resume`).
pub(super) async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(max_in_flight = limits.max_in_flight, "request shed: too many in flight");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the server is serving {} requests already; retry later", limits.max_in_flight),
        )
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limits.timeout, "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request took longer than {} s; retry later", limits.timeout.as_secs_f32()),
            )
            .into_response()
        }
    }
}
