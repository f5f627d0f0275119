//! The worker loop the four stage binaries share: consume, decode, run the stage
//! handler, then settle the delivery according to the outcome.
//!
//! | handler outcome              | what the runtime does                                      |
//! |------------------------------|------------------------------------------------------------|
//! | `Ok(Next::Forward(m))`       | publish `m` (confirmed), then ack                          |
//! | `Ok(Next::Finished/Rejected/Stale)` | ack (counted as ok, rejected, skipped)              |
//! | `Err(Retryable)`             | back-off tier with attempt + 1; past `max_attempts`: give up |
//! | `Err(Permanent)`, panic      | give up: job marked failed, message dead-lettered with reason |
//! | `Err(Rejection)`             | job marked rejected with reason, then ack                  |
//! | undecodable message          | dead-lettered with reason (no job to mark)                 |
//!
//! **Worker deaths.** Before the handler runs, the runtime records the start of the
//! stage on the job, and after it returns (panics and time-outs included) the end. A
//! redelivered message whose job has starts that never ended killed its worker (abort,
//! `kill -9`, out of memory), or was in flight beside the message that did: it is a
//! suspect and runs alone, with no other delivery of this worker beside it, so an
//! innocent one completes and a poison one can only kill itself. After `max_crashes`
//! such deaths, or on the last delivery the broker allows, the job is failed with
//! that reason instead of being run again. What still slips through (the record
//! itself lost) reaches the dead-letter queue, whose consumer fails the job
//! (`crate::recovery`).
//!
//! The ack always comes last, after the handler's writes and the next stage's publish
//! are durable, so a crash anywhere before it means redelivery, never loss. Handlers
//! must therefore be idempotent: a redelivered message redoes the stage, overwriting
//! the same blob keys, and re-publishes the next message.

use async_trait::async_trait;
use mono2mesh_core::{ErrorClass, Stage, StageError, StageMessage, MESSAGE_SCHEMA_VERSION};
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

use crate::queue::{encode, Delivery, Lane, MessageQueue, QueueError};
use crate::telemetry::{names, StageOutcome, StageTimer};

/// What a stage handler asks the runtime to do after success.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Hand the job to the following stage with this message.
    Forward(StageMessage),
    /// The job reached its final state here; nothing to publish.
    Finished,
    /// The stage rejected the job itself (recording more than a reason, such as the
    /// gate's scores); nothing to publish. Counted as a rejection, not a success.
    Rejected,
    /// A duplicate or late message for a job that has already moved past this stage:
    /// nothing was done, and the message is acknowledged. The string says why.
    Stale(String),
}

/// One stage's work on one message: read inputs, compute, write outputs, move the job.
#[async_trait]
pub trait StageHandler: Send + Sync + 'static {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError>;
}

/// Any `Fn(StageMessage) -> impl Future<Output = Result<Next, StageError>>` is a handler.
#[async_trait]
impl<F, Fut> StageHandler for F
where
    F: Fn(StageMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Next, StageError>> + Send + 'static,
{
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        self(message).await
    }
}

/// Where the runtime records how a job ended when the handler could not finish it.
#[async_trait]
pub trait JobOutcomes: Send + Sync + 'static {
    /// The input is unusable for the method: the job ends as `rejected` with `reason`.
    async fn reject(&self, message: &StageMessage, reason: &str) -> Result<(), StageError>;
    /// The stage gave up: the job ends as `failed` with `reason`.
    async fn fail(&self, message: &StageMessage, reason: &str) -> Result<(), StageError>;
    /// A retryable attempt failed and will be retried; for the job's history only, so
    /// failing to record it changes nothing.
    async fn attempt_failed(&self, _message: &StageMessage, _error: &StageError) {}
    /// The stage starts on the message's job; returns how many earlier starts never
    /// ended (the worker died handling them).
    async fn start(&self, _message: &StageMessage) -> Result<u32, StageError> {
        Ok(0)
    }
    /// A start recorded by [`Self::start`] ended, whatever the outcome.
    async fn settle(&self, _message: &StageMessage) {}
}

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Deliveries processed at the same time.
    pub concurrency: usize,
    /// Unsettled deliveries per lane the broker may push ahead.
    pub prefetch: u16,
    /// Attempts of a retryable failure, the first included, before giving up.
    pub max_attempts: u32,
    /// A handler running longer than this is abandoned and its message retried.
    pub handler_timeout: Duration,
    /// On shutdown, how long in-flight deliveries may take to finish.
    pub shutdown_grace: Duration,
    /// Deaths of the worker while handling one job's stage before that job is failed
    /// instead of run again (`queue.max_crashes`).
    pub max_crashes: u32,
    /// The broker's delivery limit (`queue.delivery_limit`): a message delivered this
    /// often already is on its last delivery.
    pub delivery_limit: u32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            concurrency: 4,
            prefetch: 4,
            max_attempts: 5,
            handler_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            max_crashes: 2,
            delivery_limit: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime settings: {0}")]
    Settings(String),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("the broker cancelled the consumer (queue deleted?); restart the worker")]
    ConsumerCancelled,
}

/// Counts of how deliveries were settled, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Handler succeeded (forwarded, finished or stale) and the delivery was acked.
    pub succeeded: u64,
    /// Jobs marked rejected and acked.
    pub rejected: u64,
    /// Sent to a back-off tier.
    pub retried: u64,
    /// Moved to a dead-letter queue.
    pub dead_lettered: u64,
    /// Handlers that panicked (also counted in `dead_lettered`).
    pub panicked: u64,
    /// Redelivered suspects of a worker death that were run alone.
    pub isolated: u64,
    /// Jobs failed because their worker died on them `max_crashes` times.
    pub crash_failed: u64,
    /// Settling failed (connection lost); the broker will redeliver those.
    pub settle_errors: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    panicked: AtomicU64,
    isolated: AtomicU64,
    crash_failed: AtomicU64,
    settle_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RunReport {
        RunReport {
            succeeded: self.succeeded.load(Ordering::SeqCst),
            rejected: self.rejected.load(Ordering::SeqCst),
            retried: self.retried.load(Ordering::SeqCst),
            dead_lettered: self.dead_lettered.load(Ordering::SeqCst),
            panicked: self.panicked.load(Ordering::SeqCst),
            isolated: self.isolated.load(Ordering::SeqCst),
            crash_failed: self.crash_failed.load(Ordering::SeqCst),
            settle_errors: self.settle_errors.load(Ordering::SeqCst),
        }
    }
}

/// A worker: one stage handler fed from some lanes of a queue.
pub struct Worker {
    queue: Arc<dyn MessageQueue>,
    lanes: Vec<Lane>,
    settings: RuntimeSettings,
    context: Arc<Context>,
}

struct Context {
    queue: Arc<dyn MessageQueue>,
    handler: Arc<dyn StageHandler>,
    outcomes: Arc<dyn JobOutcomes>,
    max_attempts: u32,
    handler_timeout: Duration,
    max_crashes: u32,
    delivery_limit: u32,
    /// Every handler runs under the read side; a suspect of a worker death takes the
    /// write side, so it runs with nothing beside it. (A lock rather than taking every
    /// concurrency slot: two suspects each holding one slot and waiting for the rest
    /// would deadlock.)
    isolation: tokio::sync::RwLock<()>,
    /// Deliveries whose start is recorded and not yet settled, so a shutdown that cuts
    /// them off can settle them: being stopped is not dying on a job.
    in_flight: std::sync::Mutex<std::collections::HashMap<u64, StageMessage>>,
    next_ticket: AtomicU64,
    counters: Counters,
}

impl Context {
    fn track(&self, message: &StageMessage) -> u64 {
        let ticket = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(ticket, message.clone());
        ticket
    }

    async fn settle(&self, ticket: u64, message: &StageMessage) {
        self.outcomes.settle(message).await;
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&ticket);
    }
}

impl Worker {
    /// A worker for `lanes`, which must all belong to one stage.
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        lanes: Vec<Lane>,
        handler: Arc<dyn StageHandler>,
        outcomes: Arc<dyn JobOutcomes>,
        settings: RuntimeSettings,
    ) -> Result<Self, RuntimeError> {
        let Some(first) = lanes.first() else {
            return Err(RuntimeError::Settings("a worker needs at least one lane".into()));
        };
        if lanes.iter().any(|l| l.stage() != first.stage()) {
            return Err(RuntimeError::Settings("all lanes of a worker must belong to one stage".into()));
        }
        if settings.concurrency == 0 || settings.max_attempts == 0 || settings.max_crashes == 0 {
            return Err(RuntimeError::Settings("concurrency, max_attempts and max_crashes must be at least 1".into()));
        }
        let context = Arc::new(Context {
            queue: queue.clone(),
            handler,
            outcomes,
            max_attempts: settings.max_attempts,
            handler_timeout: settings.handler_timeout,
            max_crashes: settings.max_crashes,
            delivery_limit: settings.delivery_limit,
            isolation: tokio::sync::RwLock::new(()),
            in_flight: std::sync::Mutex::new(std::collections::HashMap::new()),
            next_ticket: AtomicU64::new(0),
            counters: Counters::default(),
        });
        Ok(Worker { queue, lanes, settings, context })
    }

    pub fn stage(&self) -> Stage {
        self.lanes[0].stage()
    }

    /// Consumes until `shutdown` completes, then stops taking deliveries, lets in-flight
    /// ones finish (up to the grace period) and returns. It does not close the queue,
    /// which may be shared: the caller closes it, which returns anything still unsettled.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<RunReport, RuntimeError> {
        let stage = self.stage();
        let mut stream = self.queue.consume(&self.lanes, self.settings.prefetch).await?;
        info!(%stage, lanes = ?self.lanes.iter().map(|l| l.routing_key()).collect::<Vec<_>>(),
              concurrency = self.settings.concurrency, prefetch = self.settings.prefetch, "worker consuming");
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);

        let stop: Result<(), RuntimeError> = loop {
            // Take a slot first, so no delivery is pulled that cannot start at once.
            let slot = tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break Ok(()), // never closed; nothing sensible to do but stop
                },
            };
            let next = tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                next = stream.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let context = self.context.clone();
                    let span = delivery_span(stage, &delivery);
                    tasks.spawn(
                        async move {
                            process(delivery, &context).await;
                            drop(slot);
                        }
                        .instrument(span),
                    );
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(RuntimeError::ConsumerCancelled),
            }
            while let Some(finished) = tasks.try_join_next() {
                if let Err(e) = finished {
                    error!(%e, "delivery task failed outside the handler");
                }
            }
        };

        if let Err(e) = stream.cancel().await {
            warn!(%e, "cancelling the consumer failed; closing the connection will stop it");
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            info!(%stage, in_flight, "stopping: letting in-flight deliveries finish");
        }
        let drained = tokio::time::timeout(self.settings.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(%stage, left = tasks.len(), "grace period over; unfinished deliveries go back to the queue");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            // Their messages go back to the queue; their starts are settled so the
            // next worker does not take them for jobs that killed this one.
            let cut_off: Vec<StageMessage> =
                self.context.in_flight.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, m)| m).collect();
            for message in &cut_off {
                self.context.outcomes.settle(message).await;
            }
        }
        if let Err(e) = stream.close().await {
            warn!(%e, "closing the consumer failed; closing the connection will end it");
        }
        let report = self.context.counters.snapshot();
        info!(%stage, ?report, "worker stopped");
        stop.map(|()| report)
    }
}

/// The span of one delivery: named after the stage, a child of the trace context the
/// message carries, so a job's stages form one trace. `job_id`, `attempt` and
/// `outcome` are filled in as they become known.
fn delivery_span(stage: Stage, delivery: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "delivery",
        otel.name = stage.name(),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        %stage,
        lane = %delivery.lane(),
        redelivered = delivery.redelivered(),
        job_id = tracing::field::Empty,
        attempt = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    crate::otel::continue_trace(&span, delivery.trace());
    span
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): the signals orchestrators and people send.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(%e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                error!(%e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => info!("SIGINT received"),
        _ = terminate => info!("SIGTERM received"),
    }
}

/// Reads a delivery as a stage message for this lane, or says why it cannot be one.
pub fn decode(body: &[u8], lane: Lane) -> Result<StageMessage, String> {
    #[derive(Deserialize)]
    struct SchemaProbe {
        schema: u32,
    }
    // Check the version before the shape, so a newer message says "schema" rather
    // than some missing-field error.
    let probe: SchemaProbe =
        serde_json::from_slice(body).map_err(|e| format!("invalid message: not stage-message JSON ({e})"))?;
    if probe.schema != MESSAGE_SCHEMA_VERSION {
        return Err(format!(
            "unsupported message schema {} (this worker reads {MESSAGE_SCHEMA_VERSION})",
            probe.schema
        ));
    }
    let message: StageMessage =
        serde_json::from_slice(body).map_err(|e| format!("invalid message: {e}"))?;
    match Lane::for_message(&message) {
        Ok(expected) if expected == lane => Ok(message),
        Ok(expected) => Err(format!("message for lane {expected} arrived on lane {lane}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn process(delivery: Delivery, context: &Context) {
    let lane = delivery.lane();
    let timer = StageTimer::start(lane.stage());
    if delivery.redelivered() {
        metrics::counter!(names::REDELIVERIES, "stage" => lane.stage().name()).increment(1);
    }
    if let Some(queued) = delivery.queued_for() {
        metrics::histogram!(names::QUEUE_WAIT, "stage" => lane.stage().name()).record(queued.as_secs_f64());
    }
    let span = tracing::Span::current();
    let outcome = match decode(delivery.body(), lane) {
        Ok(message) => {
            span.record("job_id", tracing::field::display(message.job_id));
            span.record("attempt", message.attempt);
            handle(delivery, message, context).await
        }
        Err(reason) => {
            warn!(%reason, "undecodable message");
            dead_letter(delivery, &reason, context).await
        }
    };
    span.record("outcome", outcome.name());
    if matches!(outcome, StageOutcome::Retried | StageOutcome::DeadLettered) {
        span.record("otel.status_code", "error");
    }
    timer.finish(outcome);
}

/// How a handler runs beside the others: a suspect redelivery alone (the write side), the
/// rest together (the read side).
enum Isolation<'a> {
    Alone(tokio::sync::RwLockWriteGuard<'a, ()>),
    // Held only for its drop, which lets a waiting suspect in.
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'a, ()>),
}

impl<'a> Isolation<'a> {
    async fn enter(lock: &'a tokio::sync::RwLock<()>, alone: bool) -> Self {
        if alone {
            Isolation::Alone(lock.write().await)
        } else {
            Isolation::Shared(lock.read().await)
        }
    }

    /// Lets the others in again, without a gap another suspect could take.
    fn share(self) -> Self {
        match self {
            Isolation::Alone(guard) => Isolation::Shared(guard.downgrade()),
            shared => shared,
        }
    }
}

async fn handle(delivery: Delivery, message: StageMessage, context: &Context) -> StageOutcome {
    debug!(job = %message.job_id, attempt = message.attempt, redelivered = delivery.redelivered(), "processing");
    // A redelivery may follow a worker death, so it waits until it can run alone
    // *before* recording its start: a suspect that only queued behind a poison message
    // when the worker died again must not be counted as having been there.
    let redelivered = delivery.redelivered();
    let mut isolation = Isolation::enter(&context.isolation, redelivered).await;
    let started = context.outcomes.start(&message).await;
    let ticket = context.track(&message);
    let unsettled = match started {
        Ok(n) => n,
        Err(e) => {
            // Without the record the job is treated as a first start; the handler
            // meets the same store and fails retryably if it is down.
            warn!(job = %message.job_id, reason = %e.reason, "could not record the stage's start");
            0
        }
    };
    // Only a redelivery can follow a death: a retry is a fresh message, and a start
    // left unsettled by a store outage must not count against it.
    let deaths = if redelivered { unsettled } else { 0 };
    let last_delivery = delivery.delivery_count() >= context.delivery_limit;
    if deaths >= context.max_crashes || (deaths > 0 && last_delivery) {
        context.settle(ticket, &message).await;
        drop(isolation);
        context.counters.crash_failed.fetch_add(1, Ordering::SeqCst);
        let reason = format!(
            "the {} worker died {deaths} time(s) while handling this job (abort, kill or out of memory; \
             delivered {} times), so it is not run again",
            message.stage,
            delivery.delivery_count() + 1
        );
        error!(job = %message.job_id, %reason, "failing a job that kills its worker");
        return give_up(delivery, &message, &reason, context).await;
    }
    if deaths > 0 {
        warn!(job = %message.job_id, deaths, "redelivered after a worker death: running it alone");
        context.counters.isolated.fetch_add(1, Ordering::SeqCst);
    } else {
        // Redelivered, but never started before (it was only fetched): share again.
        isolation = isolation.share();
    }
    let outcome = run_handler(&message, context).await;
    context.settle(ticket, &message).await;
    drop(isolation);
    match outcome {
        Ok(Next::Forward(next)) => match context.queue.publish(&next).await {
            Ok(()) => ack(delivery, StageOutcome::Ok, context).await,
            Err(e) => {
                let reason = format!("publishing to {} failed: {e}", next.stage);
                retry_or_give_up(delivery, &message, &reason, context).await
            }
        },
        Ok(Next::Finished) => ack(delivery, StageOutcome::Ok, context).await,
        Ok(Next::Rejected) => ack(delivery, StageOutcome::Rejected, context).await,
        Ok(Next::Stale(why)) => {
            info!(job = %message.job_id, %why, "stale message acknowledged without effect");
            ack(delivery, StageOutcome::Skipped, context).await
        }
        Err(e) => match e.class {
            ErrorClass::Retryable => {
                context.outcomes.attempt_failed(&message, &e).await;
                retry_or_give_up(delivery, &message, &e.reason, context).await
            }
            ErrorClass::Permanent => give_up(delivery, &message, &e.reason, context).await,
            ErrorClass::Rejection => match context.outcomes.reject(&message, &e.reason).await {
                Ok(()) => {
                    info!(job = %message.job_id, reason = %e.reason, "job rejected");
                    ack(delivery, StageOutcome::Rejected, context).await
                }
                Err(record) if record.class == ErrorClass::Retryable => {
                    let reason = format!("recording rejection ({}) failed: {}", e.reason, record.reason);
                    retry_or_give_up(delivery, &message, &reason, context).await
                }
                Err(record) => {
                    let reason = format!("rejected ({}), but recording it failed: {}", e.reason, record.reason);
                    dead_letter(delivery, &reason, context).await
                }
            },
        },
    }
}

/// Runs the handler in its own task, so a panic or a hang costs one message, not the worker.
async fn run_handler(message: &StageMessage, context: &Context) -> Result<Next, StageError> {
    let handler = context.handler.clone();
    let owned = message.clone();
    // In the delivery's span, so the handler's own spans and events join the job's trace.
    let mut task = tokio::spawn(async move { handler.handle(owned).await }.in_current_span());
    match tokio::time::timeout(context.handler_timeout, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) if join_error.is_panic() => {
            context.counters.panicked.fetch_add(1, Ordering::SeqCst);
            let panic = join_error.into_panic();
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            error!(job = %message.job_id, panic = %text, "stage handler panicked");
            Err(StageError::permanent(format!("stage handler panicked: {text}")))
        }
        Ok(Err(_cancelled)) => Err(StageError::retryable("stage handler task was cancelled")),
        Err(_elapsed) => {
            task.abort();
            Err(StageError::retryable(format!(
                "stage handler timed out after {:?}",
                context.handler_timeout
            )))
        }
    }
}

async fn retry_or_give_up(delivery: Delivery, message: &StageMessage, reason: &str, context: &Context) -> StageOutcome {
    if message.attempt >= context.max_attempts {
        let reason = format!("gave up after {} attempts: {reason}", message.attempt);
        return give_up(delivery, message, &reason, context).await;
    }
    retry(delivery, message, reason, context).await
}

async fn retry(delivery: Delivery, message: &StageMessage, reason: &str, context: &Context) -> StageOutcome {
    let mut again = message.clone();
    again.attempt = message.attempt.saturating_add(1);
    match delivery.retry_later(encode(&again), again.attempt, reason).await {
        Ok(delay) => {
            info!(job = %message.job_id, attempt = again.attempt, ?delay, %reason, "retry scheduled");
            context.counters.retried.fetch_add(1, Ordering::SeqCst);
            metrics::counter!(names::FAILURES, "stage" => message.stage.name(), "class" => "retryable").increment(1);
        }
        Err(e) => settle_failed(e, context),
    }
    StageOutcome::Retried
}

/// Ends the job as failed and parks the message in the dead-letter queue. When the
/// failure cannot be recorded for a passing reason (database down), the message is
/// retried instead, however many attempts it has had: dead-lettering it would leave the
/// job unfinished in the store with nothing left to move it. Once the store is back,
/// the retry either completes the stage or records the failure.
async fn give_up(delivery: Delivery, message: &StageMessage, reason: &str, context: &Context) -> StageOutcome {
    let reason = match context.outcomes.fail(message, reason).await {
        Ok(()) => reason.to_string(),
        Err(record) if record.class == ErrorClass::Retryable => {
            let why = format!("{reason}; marking the job failed did not work: {}", record.reason);
            return retry(delivery, message, &why, context).await;
        }
        Err(record) => format!("{reason} (job not marked failed: {})", record.reason),
    };
    warn!(job = %message.job_id, %reason, "giving up on job");
    dead_letter(delivery, &reason, context).await
}

async fn dead_letter(delivery: Delivery, reason: &str, context: &Context) -> StageOutcome {
    let stage = delivery.lane().stage().name();
    match delivery.dead_letter(reason).await {
        Ok(()) => {
            context.counters.dead_lettered.fetch_add(1, Ordering::SeqCst);
            metrics::counter!(names::FAILURES, "stage" => stage, "class" => "dead_lettered").increment(1);
        }
        Err(e) => settle_failed(e, context),
    }
    StageOutcome::DeadLettered
}

async fn ack(delivery: Delivery, outcome: StageOutcome, context: &Context) -> StageOutcome {
    match delivery.ack().await {
        Ok(()) => {
            let counter = if outcome == StageOutcome::Rejected { &context.counters.rejected } else { &context.counters.succeeded };
            counter.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => settle_failed(e, context),
    }
    outcome
}

fn settle_failed(error: QueueError, context: &Context) {
    // The broker still holds the delivery and hands it out again; handlers are idempotent.
    warn!(%error, "settling a delivery failed; it will be redelivered");
    context.counters.settle_errors.fetch_add(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mono2mesh_core::{Category, JobId};

    #[test]
    fn decode_accepts_only_current_messages_on_their_own_lane() {
        let chair = StageMessage::new(JobId::new(), Stage::Reconstruct, Some(Category::Chair));
        let body = encode(&chair);
        assert_eq!(decode(&body, Lane::Reconstruct(Category::Chair)), Ok(chair.clone()));

        let wrong_lane = decode(&body, Lane::Reconstruct(Category::Sofa)).unwrap_err();
        assert!(wrong_lane.contains("reconstruct.chair arrived on lane reconstruct.sofa"), "{wrong_lane}");
        let garbage = decode(b"\xff\x00", Lane::Gate).unwrap_err();
        assert!(garbage.starts_with("invalid message"), "{garbage}");
        let newer = decode(br#"{"schema":2,"whatever":true}"#, Lane::Gate).unwrap_err();
        assert!(newer.contains("unsupported message schema 2"), "{newer}");
        let shapeless = decode(br#"{"schema":1,"stage":"gate"}"#, Lane::Gate).unwrap_err();
        assert!(shapeless.contains("job_id"), "{shapeless}");
        let uncategorised = encode(&StageMessage::new(JobId::new(), Stage::Reconstruct, None));
        assert!(decode(&uncategorised, Lane::Reconstruct(Category::Car)).unwrap_err().contains("category"));
    }

    #[test]
    fn worker_refuses_mixed_stages_and_zero_concurrency() {
        let queue: Arc<dyn MessageQueue> = Arc::new(crate::queue::MemoryQueue::new(
            crate::queue::Topology::new("t", Lane::all(), vec![Duration::from_secs(1)], 3).unwrap(),
        ));
        struct NoOutcomes;
        #[async_trait]
        impl JobOutcomes for NoOutcomes {
            async fn reject(&self, _: &StageMessage, _: &str) -> Result<(), StageError> {
                Ok(())
            }
            async fn fail(&self, _: &StageMessage, _: &str) -> Result<(), StageError> {
                Ok(())
            }
        }
        let handler: Arc<dyn StageHandler> = Arc::new(|_m: StageMessage| async { Ok(Next::Finished) });
        let outcomes: Arc<dyn JobOutcomes> = Arc::new(NoOutcomes);
        let mixed = Worker::new(queue.clone(), vec![Lane::Gate, Lane::Refine], handler.clone(), outcomes.clone(), RuntimeSettings::default());
        assert!(matches!(mixed, Err(RuntimeError::Settings(_))));
        let idle = RuntimeSettings { concurrency: 0, ..RuntimeSettings::default() };
        assert!(Worker::new(queue.clone(), vec![Lane::Gate], handler.clone(), outcomes.clone(), idle).is_err());
        assert!(Worker::new(queue, vec![], handler, outcomes, RuntimeSettings::default()).is_err());
    }
}
