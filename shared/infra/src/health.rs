//! Liveness and readiness of a worker, for Kubernetes probes and compose health checks
//! (`telemetry.health_listen`):
//!
//! * `GET /livez`: 200 while the process's async runtime answers at all. A worker that is
//!   only waiting for its broker or database is alive: restarting it would not help.
//! * `GET /readyz`: 200 when the worker consumes and its broker, job store and blob store
//!   each answer a round trip within [`CHECK_TIMEOUT`]; 503 with the parts that did not,
//!   and 503 from the stop signal on (it is draining). The listener starts only once the
//!   worker has connected and loaded its model, so "ready" includes "model loaded".
//!
//! The body is JSON either way: `{"ready": bool, "checks": {"broker": "ok" | reason, ...}}`.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::blob::{BlobKey, BlobStore};
use crate::jobs::JobStore;
use crate::queue::{Lane, MessageQueue};

/// Longest wait for one dependency's answer before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency a worker needs to do its work.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    /// A round trip to the dependency; the error says what failed.
    async fn check(&self) -> Result<(), String>;
}

/// Whether the worker still takes work: cleared by the stop signal.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Probes {
    checks: Arc<Vec<Box<dyn ReadinessCheck>>>,
    draining: Arc<Draining>,
}

/// The probe routes over `checks`.
pub fn router(checks: Vec<Box<dyn ReadinessCheck>>, draining: Arc<Draining>) -> Router {
    Router::new()
        .route("/livez", get(|| async { Json(serde_json::json!({ "alive": true })) }))
        .route("/readyz", get(readyz))
        .with_state(Probes { checks: Arc::new(checks), draining })
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, Json<serde_json::Value>) {
    let mut results = BTreeMap::new();
    // Checked together, so one slow dependency costs one time-out, not several.
    let answers = futures::future::join_all(probes.checks.iter().map(|check| async move {
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        };
        (check.name(), answer)
    }))
    .await;
    let mut ready = true;
    for (name, answer) in answers {
        ready &= answer.is_ok();
        results.insert(name, answer.err().unwrap_or_else(|| "ok".to_string()));
    }
    if probes.draining.is_draining() {
        ready = false;
        results.insert("consuming", "stopping: draining in-flight work".to_string());
    } else {
        results.insert("consuming", "ok".to_string());
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "checks": results })))
}

/// Serves the probe routes on `listener` until `shutdown` completes.
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    checks: Vec<Box<dyn ReadinessCheck>>,
    draining: Arc<Draining>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(checks, draining)).with_graceful_shutdown(shutdown).await
}

/// The job store answers `SELECT 1`.
pub struct DatabaseCheck(pub JobStore);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// The broker answers a passive declare of one of the worker's lanes.
pub struct BrokerCheck {
    pub queue: Arc<dyn MessageQueue>,
    pub lane: Lane,
}

#[async_trait]
impl ReadinessCheck for BrokerCheck {
    fn name(&self) -> &'static str {
        "broker"
    }

    async fn check(&self) -> Result<(), String> {
        self.queue.ready_count(self.lane).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The blob store answers a HEAD (an absent object is an answer).
pub struct BlobCheck(pub Arc<dyn BlobStore>);

#[async_trait]
impl ReadinessCheck for BlobCheck {
    fn name(&self) -> &'static str {
        "blob_store"
    }

    async fn check(&self) -> Result<(), String> {
        let key = BlobKey::parse("health/probe").map_err(|e| e.to_string())?;
        self.0.exists(&key).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), String>);

    #[async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }

        async fn check(&self) -> Result<(), String> {
            self.1.clone()
        }
    }

    struct Hangs;

    #[async_trait]
    impl ReadinessCheck for Hangs {
        fn name(&self) -> &'static str {
            "broker"
        }

        async fn check(&self) -> Result<(), String> {
            std::future::pending().await
        }
    }

    fn probes(checks: Vec<Box<dyn ReadinessCheck>>) -> Probes {
        Probes { checks: Arc::new(checks), draining: Arc::new(Draining::default()) }
    }

    #[tokio::test]
    async fn ready_only_while_every_dependency_answers_and_not_draining() {
        let all_up = probes(vec![Box::new(Fixed("database", Ok(()))), Box::new(Fixed("blob_store", Ok(())))]);
        let (status, body) = readyz(State(all_up.clone())).await;
        assert_eq!(status, StatusCode::OK, "{:?}", body.0);
        assert_eq!(body.0["checks"]["database"], "ok");

        all_up.draining.start();
        let (status, body) = readyz(State(all_up)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.0["ready"], false);
        assert!(body.0["checks"]["consuming"].as_str().unwrap().contains("draining"));

        let db_down = probes(vec![
            Box::new(Fixed("database", Err("pool timed out".into()))),
            Box::new(Fixed("blob_store", Ok(()))),
        ]);
        let (status, body) = readyz(State(db_down)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.0["checks"]["database"], "pool timed out");
        assert_eq!(body.0["checks"]["blob_store"], "ok");
    }

    #[tokio::test]
    async fn a_dependency_that_never_answers_times_out() {
        let (status, body) = readyz(State(probes(vec![Box::new(Hangs)]))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.0["checks"]["broker"], "no answer within 2 s");
    }
}
