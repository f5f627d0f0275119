//! Every error the API returns: a status code and `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mono2mesh_core::ErrorClass;
use mono2mesh_infra::blob::BlobError;
use mono2mesh_infra::jobs::JobStoreError;

use crate::ingest::IngestError;
use crate::stats::StatsError;
use crate::views::mask_url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable code (documented in docs/openapi.yaml).
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A service failed: 503 when retrying later may help, 500 otherwise. The detail
    /// is logged; the client gets a short message.
    fn service(class: ErrorClass, what: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(%detail, "{what} failed while serving a request");
        match class {
            ErrorClass::Retryable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", format!("{what} is unavailable; retry later"))
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{what} failed")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<JobStoreError> for ApiError {
    fn from(e: JobStoreError) -> Self {
        match e {
            JobStoreError::NotFound(id) => ApiError::not_found("job_not_found", format!("no job {id}")),
            // The request asked for something the stored data does not allow.
            JobStoreError::Constraint { context, .. } => {
                tracing::info!(detail = %e, "a request conflicted with stored data");
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("the request conflicts with stored data ({context})"))
            }
            other => ApiError::service(other.class(), "the job store", &other),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound { key } => ApiError::not_found("object_not_found", format!("object {key} does not exist")),
            BlobError::InvalidKey { .. } => ApiError::bad_request("invalid_key", e.to_string()),
            other => ApiError::service(other.class(), "the blob store", &other),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let message = e.to_string();
        match e {
            IngestError::InvalidBatch(_) => ApiError::bad_request("invalid_batch", message),
            IngestError::InvalidExternalId(_) => ApiError::bad_request("invalid_external_id", message),
            // The caller's own URL, but still masked: error bodies end up in logs.
            IngestError::InvalidWebhook(url) => ApiError::bad_request(
                "invalid_webhook_url",
                format!("invalid webhook_url ({}): an absolute http:// or https:// URL of at most 2000 characters", mask_url(&url)),
            ),
            IngestError::WebhookNotPublic { url, ip } => ApiError::bad_request(
                "invalid_webhook_url",
                format!("webhook_url ({}): {ip} is not a public address, and this deployment calls only public ones", mask_url(&url)),
            ),
            IngestError::EmptyPhoto => ApiError::bad_request("empty_photo", message),
            IngestError::PhotoTooLarge { .. } | IngestError::UploadTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "photo_too_large", message)
            }
            IngestError::NotAnImage => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image", message),
            IngestError::MissingObject(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "object_not_found", message),
            // Only the CLI reads local files; the server never does.
            IngestError::ReadPhoto { .. } => ApiError::bad_request("unreadable_photo", message),
            IngestError::Blob(e) => e.into(),
            IngestError::Jobs(e) => e.into(),
            IngestError::Queue(e) => ApiError::service(ErrorClass::Retryable, "the queue", &e),
            // A full or unwritable spool disk passes (space frees as uploads finish).
            spool @ IngestError::Spool { .. } => ApiError::service(ErrorClass::Retryable, "the upload spool", &spool),
        }
    }
}

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Jobs(e) => e.into(),
            StatsError::Queue(e) => ApiError::service(ErrorClass::Retryable, "the queue", &e),
        }
    }
}
