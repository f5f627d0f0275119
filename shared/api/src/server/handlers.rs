//! Request handlers. Each does input checking and shaping only; the work is in
//! `Ingest`, the job store and the blob store.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use mono2mesh_core::{Category, JobId, RealSize, SizeError, SizeFields};
use mono2mesh_infra::blob::{content_type_for, BlobKey};
use mono2mesh_infra::jobs::{Job, Page};
use mono2mesh_infra::store::KeyLookup;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, QueueProbe, OPENAPI_YAML};
use crate::idempotency;
use crate::ingest::{PhotoMeta, PhotoSpool, SpooledPhoto, Submitted};
use crate::stats::{job_stats, parse_window, OpsStats};
use crate::views::{job_path, mask_url, mask_url_in, outputs_of, output_keys, BatchView, JobView};

/// Header a client sets to make job creation safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Default and largest page of `GET /v1/batches/{name}/jobs`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;
/// Longest text field of a multipart upload (batch, external id, category).
const MAX_TEXT_FIELD: usize = 1024;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request("invalid_job_id", format!("{raw:?} is not a job id (a UUID)")))
}

/// The real size from its fields: none given is `None`; a partial or absurd size is refused.
fn parse_size(fields: Result<SizeFields, SizeError>) -> Result<Option<RealSize>, ApiError> {
    fields.and_then(RealSize::from_fields).map_err(|e| ApiError::bad_request("invalid_size", e.to_string()))
}

fn parse_category(raw: Option<&str>) -> Result<Option<Category>, ApiError> {
    raw.filter(|c| !c.trim().is_empty())
        .map(|c| c.parse::<Category>().map_err(|e| ApiError::bad_request("invalid_category", e.to_string())))
        .transpose()
}

/// A JSON body, with size and syntax errors as API errors.
async fn json_body<T: DeserializeOwned>(request: Request, state: &AppState) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state.config.max_body_bytes)
        } else {
            ApiError::bad_request("unreadable_body", rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

pub(super) fn too_large(max_body_bytes: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body larger than {max_body_bytes} bytes"))
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

/// `POST /v1/jobs` by object key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJobFromKey {
    key: String,
    batch: Option<String>,
    external_id: Option<String>,
    category: Option<String>,
    webhook_url: Option<String>,
    width_mm: Option<f64>,
    height_mm: Option<f64>,
    depth_mm: Option<f64>,
}

/// What a create-job request asks for, before it is carried out.
enum NewPhoto {
    Upload { photo: SpooledPhoto, meta: PhotoMeta },
    Object { key: BlobKey, meta: PhotoMeta },
}

/// Everything a job-creating request asks for: a retry must repeat all of it to be
/// answered with the first result (a changed SKU, category or webhook is a new request).
/// The size is a part only when given, so keys remembered before sizes existed still match.
fn request_fingerprint(kind: &str, photo: &str, meta: &PhotoMeta) -> String {
    let size = meta.size.map(|size| json!(size).to_string());
    let mut parts = vec![
        kind,
        photo,
        &meta.batch,
        meta.external_id.as_deref().unwrap_or(""),
        meta.category.map_or("", |c| c.name()),
        meta.webhook_url.as_deref().unwrap_or(""),
    ];
    parts.extend(size.as_deref());
    idempotency::fingerprint(&parts)
}

impl NewPhoto {
    fn fingerprint(&self) -> String {
        match self {
            NewPhoto::Upload { photo, meta } => request_fingerprint("upload", &photo.hash, meta),
            NewPhoto::Object { key, meta } => request_fingerprint("object", key.as_str(), meta),
        }
    }
}

async fn read_multipart(request: Request, state: &AppState) -> Result<NewPhoto, ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state.config.max_body_bytes)
        } else {
            ApiError::bad_request("invalid_multipart", e.body_text())
        }
    };
    let mut photo = None;
    let mut meta = PhotoMeta::default();
    let mut batch = None;
    let mut category = None;
    let mut size_text: [Option<String>; 3] = Default::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "photo" {
            meta.file_name = field.file_name().map(str::to_string);
            photo = Some(spool_photo_field(field, state, multipart_error).await?);
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        if text.len() > MAX_TEXT_FIELD {
            return Err(ApiError::bad_request("invalid_multipart", format!("field {name:?} is longer than {MAX_TEXT_FIELD} bytes")));
        }
        match name.as_str() {
            "batch" => batch = Some(text),
            "external_id" => meta.external_id = Some(text).filter(|t| !t.is_empty()),
            "category" => category = Some(text),
            "webhook_url" => meta.webhook_url = Some(text).filter(|t| !t.is_empty()),
            "width_mm" => size_text[0] = Some(text),
            "height_mm" => size_text[1] = Some(text),
            "depth_mm" => size_text[2] = Some(text),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_multipart",
                    format!(
                        "unknown field {other:?}; expected photo, batch, external_id, category, webhook_url, \
                         width_mm, height_mm, depth_mm"
                    ),
                ))
            }
        }
    }
    let [width, height, depth] = size_text.each_ref().map(Option::as_deref);
    meta.size = parse_size(SizeFields::parse(width, height, depth))?;
    let photo = photo.ok_or_else(|| ApiError::bad_request("missing_photo", "the multipart body has no `photo` file field"))?;
    meta.batch = batch.unwrap_or_else(|| state.config.default_batch.clone());
    meta.category = parse_category(category.as_deref())?;
    Ok(NewPhoto::Upload { photo, meta })
}

/// The photo field, spooled to a temporary file chunk by chunk as it arrives (hashed
/// and sniffed on the way), and refused (413) as soon as it passes `max_photo_bytes`
/// rather than after the whole body is in. Memory per upload is a chunk and a write
/// buffer, whatever the photo's size.
async fn spool_photo_field(
    mut field: axum::extract::multipart::Field<'_>,
    state: &AppState,
    multipart_error: impl Fn(axum::extract::multipart::MultipartError) -> ApiError,
) -> Result<SpooledPhoto, ApiError> {
    let mut spool = PhotoSpool::create(&state.config.spool_dir, state.ingest.max_photo_bytes)?;
    while let Some(chunk) = field.chunk().await.map_err(&multipart_error)? {
        spool.write(&chunk).await?;
    }
    Ok(spool.finish().await?)
}

async fn read_new_photo(request: Request, state: &AppState) -> Result<NewPhoto, ApiError> {
    let kind = content_type(request.headers());
    if kind.starts_with("multipart/form-data") {
        read_multipart(request, state).await
    } else if kind.starts_with("application/json") {
        let body: CreateJobFromKey = json_body(request, state).await?;
        let key = BlobKey::parse(body.key).map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))?;
        let meta = PhotoMeta {
            batch: body.batch.unwrap_or_else(|| state.config.default_batch.clone()),
            external_id: body.external_id,
            category: parse_category(body.category.as_deref())?,
            size: parse_size(Ok(SizeFields { width_mm: body.width_mm, height_mm: body.height_mm, depth_mm: body.depth_mm }))?,
            file_name: None,
            webhook_url: body.webhook_url,
        };
        Ok(NewPhoto::Object { key, meta })
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            "send multipart/form-data with a `photo` file, or application/json with the `key` of an uploaded object",
        ))
    }
}

fn created_response(job: &Job, created: bool, replayed: bool) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut response = (status, Json(JobView::of(job))).into_response();
    if let Ok(location) = HeaderValue::from_str(&job_path(job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `POST /v1/jobs`: a photo (multipart) or an uploaded object (JSON).
pub async fn create_job(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let idempotency_key = match request.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().filter(|k| idempotency::valid_key(k)).ok_or_else(|| {
                ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
            })?;
            Some(key.to_string())
        }
    };
    let new = read_new_photo(request, &state).await?;
    let fingerprint = new.fingerprint();
    if let Some(key) = &idempotency_key {
        match state.ingest.jobs.idempotency_keys().lookup(key, &fingerprint).await? {
            KeyLookup::Replay(id) => return Ok(created_response(&state.ingest.jobs.get_job(id).await?, false, true)),
            KeyLookup::Conflict => return Err(key_reused()),
            KeyLookup::New => {}
        }
    }
    let Submitted { job, created, .. } = match &new {
        NewPhoto::Upload { photo, meta } => state.ingest.submit_spooled(photo, meta).await?,
        NewPhoto::Object { key, meta } => state.ingest.submit_object(key, meta).await?,
    };
    if let Some(key) = &idempotency_key {
        if state.ingest.jobs.idempotency_keys().remember(key, &fingerprint, job.id).await? == KeyLookup::Conflict {
            return Err(key_reused());
        }
    }
    Ok(created_response(&job, created, false))
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBatch {
    name: String,
    items: Vec<BatchItem>,
    /// Webhook of every item that names none.
    webhook_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    key: String,
    external_id: Option<String>,
    category: Option<String>,
    webhook_url: Option<String>,
    width_mm: Option<f64>,
    height_mm: Option<f64>,
    depth_mm: Option<f64>,
}

/// `POST /v1/batches`: many uploaded objects at once. Items are independent: one bad
/// item is reported in its slot and does not stop the others.
pub async fn create_batch(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if !content_type(request.headers()).starts_with("application/json") {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_type", "send application/json"));
    }
    let body: CreateBatch = json_body(request, &state).await?;
    crate::ingest::validate_batch(&body.name)?;
    if body.items.is_empty() || body.items.len() > state.config.max_batch_items {
        return Err(ApiError::bad_request(
            "invalid_batch_items",
            format!("a batch needs 1 to {} items", state.config.max_batch_items),
        ));
    }
    let mut results = Vec::with_capacity(body.items.len());
    let (mut created, mut existing, mut refused) = (0, 0, 0);
    for (index, item) in body.items.into_iter().enumerate() {
        let outcome = async {
            let key = BlobKey::parse(item.key).map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))?;
            let meta = PhotoMeta {
                batch: body.name.clone(),
                external_id: item.external_id,
                category: parse_category(item.category.as_deref())?,
                size: parse_size(Ok(SizeFields { width_mm: item.width_mm, height_mm: item.height_mm, depth_mm: item.depth_mm }))?,
                file_name: None,
                webhook_url: item.webhook_url.or_else(|| body.webhook_url.clone()),
            };
            Ok::<_, ApiError>(state.ingest.submit_object(&key, &meta).await?)
        }
        .await;
        match outcome {
            Ok(submitted) => {
                if submitted.created {
                    created += 1;
                } else {
                    existing += 1;
                }
                results.push(json!({ "index": index, "created": submitted.created, "job": JobView::of(&submitted.job) }));
            }
            // Service failures abort the request: the client retries it as a whole
            // (already submitted items dedupe by content hash).
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => {
                refused += 1;
                results.push(json!({ "index": index, "error": { "code": e.code, "message": e.message } }));
            }
        }
    }
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    let body = json!({ "batch": body.name, "created": created, "existing": existing, "refused": refused, "items": results });
    Ok((status, Json(body)).into_response())
}

pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    let job = state.ingest.jobs.get_job(parse_job_id(&id)?).await?;
    let mut view = JobView::of(&job);
    view.webhook = state.ingest.jobs.webhooks().state(job.id).await?;
    Ok(Json(view))
}

/// The job's history. Webhook events carry the receiver's URL (and transport errors
/// quote it); URLs often hold a secret, so every `url` field is masked and the job's
/// webhook URL is masked wherever else it appears.
pub async fn job_events(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_job_id(&id)?;
    state.ingest.jobs.get_job(id).await?;
    let events = state.ingest.jobs.events(id).await?;
    let webhook = state.ingest.jobs.webhooks().state(id).await?.map(|w| w.url);
    let mut events = serde_json::to_value(events).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    mask_urls(&mut events, None, webhook.as_deref());
    Ok(Json(json!({ "events": events })))
}

/// Masks `url` fields and occurrences of `webhook` in every string of `value`.
fn mask_urls(value: &mut serde_json::Value, key: Option<&str>, webhook: Option<&str>) {
    match value {
        serde_json::Value::String(text) if matches!(key, Some("url" | "webhook_url")) => *text = mask_url(text),
        serde_json::Value::String(text) => {
            if let Some(webhook) = webhook {
                *text = mask_url_in(text, webhook);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_urls(v, key, webhook)),
        serde_json::Value::Object(map) => map.iter_mut().for_each(|(k, v)| mask_urls(v, Some(k), webhook)),
        _ => {}
    }
}

/// A stored object: a redirect to a presigned URL where the store has them, else the
/// bytes streamed from the store.
/// `stream` forces the second form, for same-origin `fetch` from the status page
/// (a cross-origin redirect to the bucket would need CORS on the bucket).
async fn object_response(state: &AppState, key: &BlobKey, download_name: &str, stream: bool) -> Result<Response, ApiError> {
    if !stream {
        if let Some(url) = state.ingest.blobs.presigned_get(key, state.config.presign_expiry).await? {
            return Ok(Redirect::temporary(&url).into_response());
        }
    }
    let bytes = state.ingest.blobs.get(key).await?;
    let disposition = format!("inline; filename=\"{}\"", download_name.replace(['"', '\\'], "_"));
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type_for(key)));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectQuery {
    /// Send the bytes through the API instead of redirecting to the store.
    stream: Option<bool>,
}

fn object_query(query: Result<Query<ObjectQuery>, QueryRejection>) -> Result<bool, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    Ok(query.stream.unwrap_or(false))
}

pub async fn job_input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ObjectQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = object_query(query)?;
    let job = state.ingest.jobs.get_job(parse_job_id(&id)?).await?;
    let name = job.input_key.file_name().to_string();
    object_response(&state, &job.input_key, &name, stream).await
}

pub async fn list_outputs(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let job = state.ingest.jobs.get_job(parse_job_id(&id)?).await?;
    Ok(Json(json!({ "job": job.id.to_string(), "state": job.state, "outputs": outputs_of(&job) })))
}

pub async fn get_output(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    query: Result<Query<ObjectQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = object_query(query)?;
    let job = state.ingest.jobs.get_job(parse_job_id(&id)?).await?;
    let outputs = output_keys(&job);
    let key = outputs.get(&name).ok_or_else(|| {
        let known: Vec<&str> = outputs.keys().map(String::as_str).collect();
        ApiError::not_found(
            "output_not_found",
            format!("job {} (state {}) has no output {name:?}; it has: [{}]", job.id, job.state, known.join(", ")),
        )
    })?;
    let stem = job.external_id.clone().unwrap_or_else(|| job.id.to_string());
    object_response(&state, key, &format!("{stem}-{}", key.file_name()), stream).await
}

pub async fn get_batch(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<BatchView>, ApiError> {
    let summary = state
        .ingest
        .jobs
        .batch_summary(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("batch_not_found", format!("no batch {name:?}")))?;
    Ok(Json(BatchView::of(&summary)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    after: Option<String>,
    limit: Option<u32>,
}

pub async fn list_batch_jobs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to {MAX_PAGE}")));
    }
    let after = query.after.as_deref().map(parse_job_id).transpose()?;
    if state.ingest.jobs.batch_summary(&name).await?.is_none() {
        return Err(ApiError::not_found("batch_not_found", format!("no batch {name:?}")));
    }
    let jobs = state.ingest.jobs.list_batch_jobs(&name, Page { after, limit }).await?;
    // A full page may have a successor; the client asks with `after` = this cursor.
    let next_after = (jobs.len() == limit as usize).then(|| jobs.last().map(|j| j.id.to_string())).flatten();
    let views: Vec<JobView> = jobs.iter().map(JobView::of).collect();
    Ok(Json(json!({ "batch": name, "jobs": views, "next_after": next_after })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    since: Option<String>,
}

pub async fn stats(
    State(state): State<AppState>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<OpsStats>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let window = parse_window(query.since.as_deref().unwrap_or("1h"))
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    Ok(Json(ops_stats(&state, window).await?))
}

/// Job-store stats plus the queue depths the probe can see.
pub(super) async fn ops_stats(state: &AppState, window: std::time::Duration) -> Result<OpsStats, ApiError> {
    let mut stats = job_stats(&state.ingest.jobs, window).await?;
    match state.probe.as_ref() {
        QueueProbe::Amqp(probe) => match probe.depths().await {
            Ok(depths) => stats.queues = depths,
            // The page stays useful without the broker; say why the depths are missing.
            Err(e) => stats.queues_note = Some(format!("broker unreachable: {e}")),
        },
        QueueProbe::None => stats.queues_note = Some("in-process queue: no broker to ask".to_string()),
    }
    Ok(stats)
}
