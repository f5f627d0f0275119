//! Real services for tests: an S3 server (s3s-fs) running in-process over a temporary
//! directory, and a fresh Postgres database per test. Both fail loudly when they cannot be set up; a test must never pass because its
//! service was missing.

use mono2mesh_infra::blob::S3BlobStore;
use mono2mesh_infra::config::{DatabaseSettings, S3Settings};
use mono2mesh_infra::jobs::JobStore;
use mono2mesh_infra::secret::{SecretString, SecretUrl};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;

/// Server used when `DATABASE_URL` is not set: CI's local Postgres with trust auth.
pub const DEFAULT_ADMIN_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub const TEST_ACCESS_KEY: &str = "mono2mesh-test";
pub const TEST_SECRET_KEY: &str = "mono2mesh-test-secret";

/// An S3 server (s3s-fs over a temporary directory) running inside the test
/// process, with SigV4 authentication on. Two ways to reach it:
/// [`TestS3::in_process`] plugs the server into the SDK as its HTTP client (no TCP);
/// [`TestS3::on_port`] serves it on `127.0.0.1:<random port>` and connects with the
/// ordinary HTTP stack, exactly as a worker would reach MinIO.
pub struct TestS3 {
    pub store: S3BlobStore,
    pub settings: S3Settings,
    pub dir: tempfile::TempDir,
    /// The listening address in `on_port` mode.
    pub addr: Option<std::net::SocketAddr>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn s3_service(root: &std::path::Path) -> s3s::service::S3Service {
    let fs = s3s_fs::FileSystem::new(root).unwrap_or_else(|e| panic!("test S3: s3s-fs over {}: {e:?}", root.display()));
    let mut service = s3s::service::S3ServiceBuilder::new(fs);
    service.set_auth(s3s::auth::SimpleAuth::from_single(TEST_ACCESS_KEY, TEST_SECRET_KEY));
    service.build()
}

fn test_s3_settings(endpoint: String, bucket: &str, secret: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint),
        region: "us-east-1".to_string(),
        bucket: bucket.to_string(),
        access_key: TEST_ACCESS_KEY.to_string(),
        secret_key: SecretString::new(secret),
        path_style: true,
        create_bucket: true,
        checksums_when_required: false,
    }
}

/// Serves s3s-fs over `root` on `listener` with the test credentials, until dropped:
/// the test S3 of [`TestS3::on_port`], and of `scripts/chaos.sh` through the
/// `s3_server` example.
pub async fn serve_s3_dir(listener: tokio::net::TcpListener, root: &std::path::Path) {
    serve_s3(listener, s3_service(root)).await
}

async fn serve_s3(listener: tokio::net::TcpListener, service: s3s::service::S3Service) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    while let Ok((socket, _)) = listener.accept().await {
        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

impl TestS3 {
    /// A fresh in-process server with `bucket` created through the S3 API.
    pub async fn in_process(bucket: &str) -> TestS3 {
        let test = Self::in_process_signing_with(bucket, TEST_SECRET_KEY);
        test.store
            .ensure_bucket(true, &test.settings.region)
            .await
            .unwrap_or_else(|e| panic!("test S3: cannot create bucket {bucket}: {e}"));
        test
    }

    /// An in-process server whose client signs with `client_secret`; no bucket is
    /// created. For testing how refusals are classified.
    pub fn in_process_signing_with(bucket: &str, client_secret: &str) -> TestS3 {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("test S3: cannot create temp dir: {e}"));
        let http_client = s3s_aws::Client::from(s3_service(dir.path()));
        let settings = test_s3_settings("http://s3.in-process.test".to_string(), bucket, client_secret);
        let config = S3BlobStore::client_config(&settings).http_client(http_client).build();
        let store = S3BlobStore::from_client(aws_sdk_s3::Client::from_conf(config), &settings);
        TestS3 { store, settings, dir, addr: None, server: None }
    }

    /// A fresh server on a real local port; the store is opened with
    /// `S3BlobStore::connect`, which creates the bucket.
    pub async fn on_port(bucket: &str) -> TestS3 {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("test S3: cannot create temp dir: {e}"));
        let service = s3_service(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("test S3: cannot bind a local port: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("test S3: local address: {e}"));
        let server = tokio::spawn(serve_s3(listener, service));
        let settings = test_s3_settings(format!("http://{addr}"), bucket, TEST_SECRET_KEY);
        let store = S3BlobStore::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("test S3: connecting to the server on {addr}: {e}"));
        TestS3 { store, settings, dir, addr: Some(addr), server: Some(server) }
    }
}

/// A database created for one test (random name), migrated, on the server named by
/// `DATABASE_URL` or [`DEFAULT_ADMIN_DATABASE_URL`]. Call `drop_database` at the
/// end of a passing test; a failing test leaves its database for inspection.
pub struct TestDatabase {
    pub store: JobStore,
    pub name: String,
    pub settings: DatabaseSettings,
    admin: PgConnectOptions,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_DATABASE_URL.to_string());
        let shown = mono2mesh_infra::secret::redact_url_password(&admin_url);
        let admin = PgConnectOptions::from_str(&admin_url)
            .unwrap_or_else(|e| panic!("DATABASE_URL {shown} is not a Postgres URL: {e}"));
        let name = format!("mono2mesh_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin.connect().await.unwrap_or_else(|e| {
            panic!(
                "Postgres is required for this test but {shown} is unreachable: {e}. \
                 Start it (scripts/services.sh) or point DATABASE_URL at a server whose role may CREATE DATABASE."
            )
        });
        // The name is generated above (hex only), so formatting it into SQL is safe.
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} on {shown}: {e}"));
        let _ = conn.close().await;

        let options = admin.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
        let store = JobStore::from_pool(pool);
        store.migrate().await.unwrap_or_else(|e| panic!("migrating test database {name}: {e}"));
        let settings = DatabaseSettings {
            url: SecretUrl::new(with_database(&admin_url, &name)),
            max_connections: 5,
            acquire_timeout_secs: 5,
        };
        TestDatabase { store, name, settings, admin }
    }

    /// Closes the pool and drops the database.
    pub async fn drop_database(self) {
        self.store.close().await;
        if let Ok(mut conn) = self.admin.connect().await {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)))
                .await;
            let _ = conn.close().await;
        }
    }
}

/// `url` with its database name replaced by `database` (query string kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_swapped_in_urls() {
        use super::with_database;
        assert_eq!(with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u:p@h/postgres?sslmode=disable", "t1"), "postgres://u:p@h/t1?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "t1"), "postgres://h:5432/t1");
    }
}
