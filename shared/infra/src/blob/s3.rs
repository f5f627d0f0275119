//! Blob store on S3 or an S3-compatible server (MinIO, s3s-fs, Garage), with a
//! custom endpoint, path-style addressing and static credentials from the settings.

use super::{check_file, content_type_for, file_error, BlobError, BlobKey, BlobMeta, BlobStore};
use crate::config::S3Settings;
use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    endpoint: String,
}

impl S3BlobStore {
    /// Client configuration from the settings, without any network access. Tests
    /// can plug in another HTTP client (an in-process S3 server) before building.
    pub fn client_config(settings: &S3Settings) -> aws_sdk_s3::config::Builder {
        let credentials = Credentials::new(
            settings.access_key.clone(),
            settings.secret_key.expose().to_string(),
            None,
            None,
            "mono2mesh-settings",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = settings.endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder.endpoint_url(endpoint);
        }
        if settings.checksums_when_required {
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        builder
    }

    /// Connects with the settings' endpoint and credentials, checks the bucket and
    /// creates it when missing and `create_bucket` is set.
    pub async fn connect(settings: &S3Settings) -> Result<Self, BlobError> {
        let client = aws_sdk_s3::Client::from_conf(Self::client_config(settings).build());
        let store = Self::from_client(client, settings);
        store.ensure_bucket(settings.create_bucket, &settings.region).await?;
        Ok(store)
    }

    /// A store from the settings without checking the bucket (no I/O): for reading from
    /// another bucket through [`S3BlobStore::with_bucket`], e.g. a model registry.
    pub fn unchecked(settings: &S3Settings) -> Self {
        Self::from_client(aws_sdk_s3::Client::from_conf(Self::client_config(settings).build()), settings)
    }

    /// A store over an already configured client; does no I/O.
    pub fn from_client(client: aws_sdk_s3::Client, settings: &S3Settings) -> Self {
        let endpoint = settings.endpoint.clone().unwrap_or_else(|| "aws".to_string());
        S3BlobStore { client, bucket: settings.bucket.clone(), endpoint }
    }

    /// The same client and endpoint on another bucket (e.g. a model registry).
    pub fn with_bucket(&self, bucket: &str) -> S3BlobStore {
        S3BlobStore { client: self.client.clone(), bucket: bucket.to_string(), endpoint: self.endpoint.clone() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Fails unless the bucket exists, or creates it when `create` is set.
    pub async fn ensure_bucket(&self, create: bool, region: &str) -> Result<(), BlobError> {
        let head = self.client.head_bucket().bucket(&self.bucket).send().await;
        let err = match head {
            Ok(_) => return Ok(()),
            Err(err) => sdk_error("head_bucket", &self.bucket, err),
        };
        if !(err.is_not_found() && create) {
            return Err(err);
        }
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that must not be named as a location constraint.
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            // Another worker created it at the same moment.
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(sdk_error("create_bucket", &self.bucket, e)),
        }
    }
}

/// Maps an SDK failure to a blob error: 404s and `NoSuch*` codes are not-found,
/// throttling, 5xx, timeouts and connection failures are retryable, everything else
/// (credentials, permissions, malformed requests) is permanent.
fn sdk_error<E>(op: &'static str, key: &str, err: SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let key = key.to_string();
    let message = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("");
            if status == 404 || code.starts_with("NoSuch") || code == "NotFound" {
                BlobError::NotFound { key }
            } else if status >= 500 || status == 429 || matches!(code, "SlowDown" | "RequestTimeout") {
                BlobError::Unavailable { op, key, message }
            } else {
                BlobError::Refused { op, key, message }
            }
        }
        SdkError::ConstructionFailure(_) => BlobError::Refused { op, key, message },
        // Dispatch failures, timeouts and unparsable responses: the server or the
        // network is having a bad moment.
        _ => BlobError::Unavailable { op, key, message },
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, body: Bytes) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type_for(key))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error("put", key.as_str(), e))?;
        Ok(())
    }

    async fn put_file(&self, key: &BlobKey, path: &Path, size: u64) -> Result<(), BlobError> {
        // A body read from the file in chunks as it is sent, reopened on a retry.
        // `Length::Exact` would send a prefix of a longer file: check the size first.
        check_file(key, path, size).await?;
        let body = ByteStream::read_from()
            .path(path)
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|e| file_error(key, path, std::io::Error::other(DisplayErrorContext(&e).to_string())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type_for(key))
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error("put", key.as_str(), e))?;
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| sdk_error("get", key.as_str(), e))?;
        let body = output.body.collect().await.map_err(|e| BlobError::Unavailable {
            op: "get",
            key: key.to_string(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobMeta, BlobError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| sdk_error("head", key.as_str(), e))?;
        Ok(BlobMeta {
            key: key.clone(),
            size: output.content_length().unwrap_or(0).max(0) as u64,
            last_modified: output.last_modified().and_then(to_chrono),
        })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.client.delete_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("delete", key.as_str(), e) {
                BlobError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        let mut found = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|e| sdk_error("list", prefix, e))?;
            for object in page.contents() {
                // Objects written by other tools may have keys we would not create; skip them.
                let Some(key) = object.key().and_then(|k| BlobKey::parse(k).ok()) else { continue };
                found.push(BlobMeta {
                    key,
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object.last_modified().and_then(to_chrono),
                });
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated().unwrap_or(false) => continuation = Some(token.to_string()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn presigned_get(&self, key: &BlobKey, expires: Duration) -> Result<Option<String>, BlobError> {
        let config = PresigningConfig::expires_in(expires).map_err(|e| BlobError::Refused {
            op: "presign",
            key: key.to_string(),
            message: e.to_string(),
        })?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(config)
            .await
            .map_err(|e| sdk_error("presign", key.as_str(), e))?;
        Ok(Some(request.uri().to_string()))
    }

    fn location(&self) -> String {
        format!("s3://{} at {}", self.bucket, self.endpoint)
    }
}
