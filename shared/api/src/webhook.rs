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

use hmac::{Hmac, Mac};
use mono2mesh_core::JobId;
use mono2mesh_infra::config::WebhookSettings;
use mono2mesh_infra::jobs::{Job, JobStore, JobStoreError};
use mono2mesh_infra::secret::SecretString;
use mono2mesh_infra::store::DeliveryOutcome;
use serde_json::{json, Value};
use sha2::Sha256;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::views::JobView;

pub use mono2mesh_infra::store::webhooks::{DeliveryState, WEBHOOK_EVENT};

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
/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2000;

/// Rows claimed per round.
const CLAIM_BATCH: i64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook URL {0:?}: an absolute http:// or https:// URL of at most 2000 characters")]
    InvalidUrl(String),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Checks a webhook URL given at submission or in the config.
pub fn validate_url(url: &str) -> Result<(), WebhookError> {
    let bad = || WebhookError::InvalidUrl(url.to_string());
    if url.len() > MAX_URL_LEN || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let parsed: reqwest::Url = url.parse().map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(())
}

/// The signature header value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver does: recompute and compare in constant time.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else { return false };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The notification body: who, how it ended, what it produced and where to get it.
pub fn payload(job: &Job, attempt: i32, public_url: Option<&str>) -> Value {
    let view = JobView::of(job);
    let base = public_url.unwrap_or("").trim_end_matches('/');
    let link = |path: &str| format!("{base}{path}");
    let downloads: serde_json::Map<String, Value> =
        view.links.downloads.iter().map(|(name, path)| (name.clone(), Value::String(link(path)))).collect();
    let finished_at = view.timings.done_at.or(view.timings.rejected_at).or(view.timings.failed_at);
    json!({
        "event": JOB_FINISHED,
        "job_id": view.id,
        "external_id": view.external_id,
        "batch": view.batch,
        "state": view.state,
        // Why a rejected or failed job ended so; null for a done one.
        "reason": if job.state == mono2mesh_core::JobState::Done { None } else { view.last_error.clone() },
        "category": view.category,
        "outputs": view.outputs,
        "links": {
            "self": link(&view.links.self_),
            "events": link(&view.links.events),
            "outputs": link(&view.links.outputs),
            "downloads": downloads,
        },
        "finished_at": finished_at,
        "attempt": attempt,
    })
}

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

/// The address of a URL host that is an IP literal (IPv6 hosts come bracketed).
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The host of `url` when it is an IP literal that is not public (a name is not
/// resolved here: the dispatcher checks names when it calls).
pub fn non_public_literal(url: &str) -> Option<IpAddr> {
    let parsed: reqwest::Url = url.parse().ok()?;
    host_ip(parsed.host_str()?).filter(|ip| !is_public(*ip))
}

/// Whether `ip` is an address on the public internet: not loopback, private (RFC 1918,
/// unique local), link-local (169.254/16 holds cloud metadata services), shared
/// (100.64/10), unspecified, broadcast, multicast or documentation; IPv4 inside IPv6
/// is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// A webhook host that is, or resolves only to, a non-public address.
#[derive(Debug, thiserror::Error)]
#[error("refused: {host} is not a public address (set webhook.allow_private_networks to call private networks)")]
struct NotPublic {
    /// The address, or the name with the address it resolved to.
    host: String,
}

/// The refusal behind a failed call, if the resolver refused its host.
fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a NotPublic> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<NotPublic>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

/// The webhook client's resolver: the system's answers, minus non-public addresses;
/// an error when none is left, so the client never connects to one.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first = resolved.first().map(SocketAddr::ip);
            let public: Vec<SocketAddr> = resolved.into_iter().filter(|a| is_public(a.ip())).collect();
            if let (true, Some(ip)) = (public.is_empty(), first) {
                let refused = NotPublic { host: format!("{host} ({ip})") };
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Expected value from Python's hmac module, an independent implementation:
        // hmac.new(b"Jefe", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = sign(b"Jefe", 1_700_000_000, b"{}");
        assert_eq!(sig, "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207");
    }

    #[test]
    fn verify_accepts_only_the_exact_body_timestamp_and_key() {
        let sig = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(b"secret", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", 1_700_000_001, b"{\"a\":1}", &sig), "timestamp is signed");
        assert!(!verify(b"secret", 1_700_000_000, b"{\"a\":2}", &sig), "body is signed");
        assert!(!verify(b"other", 1_700_000_000, b"{\"a\":1}", &sig), "key matters");
        assert!(!verify(b"secret", 1_700_000_000, b"{\"a\":1}", "sha256=zz"));
        assert!(!verify(b"secret", 1_700_000_000, b"{\"a\":1}", sig.trim_start_matches("sha256=")));
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
            "255.255.255.255", "224.0.0.1", "192.0.2.1", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1",
            "::ffff:169.254.169.254", "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} must not count as public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn webhook_urls_are_checked() {
        for good in ["https://shop.example/hooks/m2m", "http://127.0.0.1:9000/x?y=1"] {
            assert!(validate_url(good).is_ok(), "{good}");
        }
        for bad in ["", "shop.example/hook", "ftp://shop.example/", "https://", "http://a b/", "javascript:alert(1)"] {
            assert!(validate_url(bad).is_err(), "{bad:?}");
        }
        assert!(validate_url(&format!("https://a.example/{}", "x".repeat(MAX_URL_LEN))).is_err());
    }
}
