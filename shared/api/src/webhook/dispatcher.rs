//! The dispatcher of `mono2mesh serve`: claims due notifications of finished jobs from
//! the outbox, calls them, and records each outcome (on the row and in the job's
//! history) with back-off for the failures.

use mono2mesh_core::JobId;
use mono2mesh_infra::config::WebhookSettings;
use mono2mesh_infra::jobs::JobStore;
use mono2mesh_infra::secret::SecretString;
use mono2mesh_infra::store::DeliveryOutcome;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::payload::payload;
use super::signing::sign;
use super::url_guard::{non_public_literal, refusal, validate_url, NotPublic, PublicOnlyResolver};
use super::{WebhookError, DELIVERY_HEADER, EVENT_HEADER, JOB_FINISHED, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Rows claimed per round.
const CLAIM_BATCH: i64 = 16;

/// Calls webhooks of finished jobs. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    jobs: JobStore,
    client: reqwest::Client,
    secret: SecretString,
    public_url: Option<String>,
    max_attempts: u32,
    retry_delays: Vec<Duration>,
    poll_interval: Duration,
    /// How long a claimed row stays invisible to other dispatchers: past the call's
    /// timeout, so only a dispatcher that died mid-call lets it be claimed again.
    lease: Duration,
    allow_private_networks: bool,
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Delivered { status: u16 },
    /// Will be retried after the back-off.
    Retrying { status: Option<u16>, error: String },
    /// Out of attempts: the notification is marked failed.
    GaveUp { status: Option<u16>, error: String },
}

impl Dispatcher {
    pub fn new(jobs: JobStore, settings: &WebhookSettings) -> Result<Dispatcher, WebhookError> {
        let mut client = reqwest::Client::builder()
            .timeout(settings.timeout())
            .user_agent(concat!("mono2mesh/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend a signed body to a place nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of reach of the resolver's check.
            .no_proxy();
        if !settings.allow_private_networks {
            client = client.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = client.build().map_err(|e| WebhookError::Client(e.to_string()))?;
        if let Some(url) = &settings.url {
            validate_url(url)?;
        }
        let mut retry_delays = settings.retry_delays();
        if retry_delays.is_empty() {
            retry_delays.push(Duration::from_secs(60));
        }
        Ok(Dispatcher {
            jobs,
            client,
            secret: settings.secret.clone(),
            public_url: settings.public_url.clone(),
            max_attempts: settings.max_attempts.max(1),
            retry_delays,
            poll_interval: settings.poll_interval().max(Duration::from_millis(10)),
            lease: settings.timeout() + Duration::from_secs(30),
            allow_private_networks: settings.allow_private_networks,
        })
    }

    /// Back-off after the `attempt`-th failed call (1-based); the last delay repeats.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.retry_delays.len() - 1);
        self.retry_delays[index]
    }

    /// Dispatches until `shutdown` completes. Store errors are logged and retried on
    /// the next round: the outbox keeps everything that is owed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if self.secret.expose().is_empty() {
            warn!("webhook.secret is empty: webhook calls go out unsigned");
        }
        info!(poll = ?self.poll_interval, max_attempts = self.max_attempts, "webhook dispatcher running");
        tokio::pin!(shutdown);
        loop {
            let busy = match self.dispatch_due().await {
                Ok(outcomes) => !outcomes.is_empty(),
                Err(e) => {
                    warn!(error = %e, "webhook round failed; trying again");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        info!("webhook dispatcher stopped");
    }

    /// One round: claims the due notifications of finished jobs and calls them all.
    pub async fn dispatch_due(&self) -> Result<Vec<(JobId, CallOutcome)>, WebhookError> {
        let claimed = self.jobs.webhooks().claim_due(CLAIM_BATCH, self.lease).await?;
        let calls = claimed.into_iter().map(|claim| async move {
            let outcome = self.deliver(claim.job, &claim.url, claim.attempt).await;
            (claim.job, outcome)
        });
        let mut outcomes = Vec::new();
        for (id, outcome) in futures::future::join_all(calls).await {
            outcomes.push((id, outcome?));
        }
        Ok(outcomes)
    }

    async fn deliver(&self, id: JobId, url: &str, attempt: i32) -> Result<CallOutcome, WebhookError> {
        // An IP literal never reaches the resolver that guards names.
        if let Some(ip) = non_public_literal(url).filter(|_| !self.allow_private_networks) {
            let outcome = CallOutcome::GaveUp { status: None, error: NotPublic { host: ip.to_string() }.to_string() };
            self.record(id, url, attempt, &outcome).await?;
            return Ok(outcome);
        }
        let job = self.jobs.get_job(id).await?;
        let body = serde_json::to_vec(&payload(&job, attempt, self.public_url.as_deref())).unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, JOB_FINISHED)
            .header(DELIVERY_HEADER, format!("{id}:{attempt}"))
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if !self.secret.expose().is_empty() {
            request = request.header(SIGNATURE_HEADER, sign(self.secret.expose().as_bytes(), timestamp, &body));
        }
        let outcome = match request.body(body).send().await {
            Ok(response) if response.status().is_success() => CallOutcome::Delivered { status: response.status().as_u16() },
            Ok(response) => {
                self.failed(attempt, Some(response.status().as_u16()), format!("receiver answered {}", response.status()))
            }
            Err(e) => match refusal(&e) {
                // Permanent: retrying would only knock on the same door again.
                Some(refused) => CallOutcome::GaveUp { status: None, error: refused.to_string() },
                None => self.failed(attempt, None, describe(&e)),
            },
        };
        self.record(id, url, attempt, &outcome).await?;
        Ok(outcome)
    }

    /// A failed call: retried after the back-off, or given up once out of attempts.
    fn failed(&self, attempt: i32, status: Option<u16>, error: String) -> CallOutcome {
        if attempt as u32 >= self.max_attempts {
            CallOutcome::GaveUp { status, error }
        } else {
            CallOutcome::Retrying { status, error }
        }
    }

    /// Stores the outcome on the row and in the job's history, in one statement.
    async fn record(&self, id: JobId, url: &str, attempt: i32, outcome: &CallOutcome) -> Result<(), WebhookError> {
        let (state, status, error, delay) = match outcome {
            CallOutcome::Delivered { status } => ("delivered", Some(*status), None, Duration::ZERO),
            CallOutcome::Retrying { status, error } => {
                ("pending", *status, Some(error.as_str()), self.retry_delay(attempt as u32))
            }
            CallOutcome::GaveUp { status, error } => ("failed", *status, Some(error.as_str()), Duration::ZERO),
        };
        match outcome {
            CallOutcome::Delivered { .. } => info!(job = %id, attempt, "webhook delivered"),
            CallOutcome::Retrying { error, .. } => warn!(job = %id, attempt, %error, retry_in = ?delay, "webhook call failed"),
            CallOutcome::GaveUp { error, .. } => warn!(job = %id, attempt, %error, "webhook call failed; giving up"),
        }
        let detail = json!({
            "url": url,
            "attempt": attempt,
            "outcome": state,
            "status": status,
            "error": error,
            "retry_in_ms": (state == "pending").then_some(delay.as_millis() as u64),
        });
        let stored = DeliveryOutcome { state, status, error, retry_in: delay, detail };
        self.jobs.webhooks().record(id, &stored).await?;
        Ok(())
    }
}

/// A transport error with its causes (reqwest's top-level text alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
