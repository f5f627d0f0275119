//! One job is one trace: a job submitted inside a span goes through four real worker
//! runtimes (gate, classify, reconstruct, refine; stand-in handlers) over the in-memory
//! queue and over RabbitMQ, and the spans that reach an OTLP/HTTP receiver (a real
//! server decoding the protobuf export, see `mono2mesh_testkit::otlp`) form one trace in
//! which each stage is the child of the one that published its message, retries included.
//! Fails, rather than skips, when RabbitMQ is missing.

#[allow(dead_code)]
mod queue_support;

use mono2mesh_core::{Category, JobId, Stage, StageError, StageMessage};
use mono2mesh_infra::telemetry;
use mono2mesh_infra::queue::Lane;
use mono2mesh_infra::runtime::{Next, StageHandler};
use mono2mesh_testkit::otlp::{traced_process, ReceivedSpan};
use opentelemetry::trace::TraceContextExt;
use queue_support::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Forwards every message to the next stage (classify picks "chair"); the first gate
/// attempt fails as retryable; refine reports the finished job on `done`.
struct StandIn {
    stage: Stage,
    gate_failed_once: Arc<AtomicBool>,
    done: mpsc::UnboundedSender<JobId>,
}

#[async_trait::async_trait]
impl StageHandler for StandIn {
    async fn handle(&self, message: StageMessage) -> Result<Next, StageError> {
        // An event inside the handler must land in the stage's span, not in a new trace.
        tracing::info!(job = %message.job_id, "stand-in handler running");
        match self.stage {
            Stage::Gate if !self.gate_failed_once.swap(true, Ordering::SeqCst) => {
                Err(StageError::retryable("first attempt fails on purpose"))
            }
            Stage::Gate => Ok(Next::Forward(StageMessage::new(message.job_id, Stage::Classify, None))),
            Stage::Classify => {
                Ok(Next::Forward(StageMessage::new(message.job_id, Stage::Reconstruct, Some(Category::Chair))))
            }
            Stage::Reconstruct => Ok(Next::Forward(StageMessage::new(message.job_id, Stage::Refine, None))),
            Stage::Refine => {
                let _ = self.done.send(message.job_id);
                Ok(Next::Finished)
            }
        }
    }
}

fn lanes() -> Vec<Lane> {
    vec![Lane::Gate, Lane::Classify, Lane::Reconstruct(Category::Chair), Lane::Refine]
}

async fn one_job_is_one_trace(fixture: Fixture) {
    let receiver = traced_process();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let gate_failed_once = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(RecordedOutcomes::default());
    let mut workers = Vec::new();
    for lane in lanes() {
        let handler =
            Arc::new(StandIn { stage: lane.stage(), gate_failed_once: gate_failed_once.clone(), done: done_tx.clone() });
        // Each stage on its own connection, as separate worker processes would be.
        let queue = fixture.open().await;
        workers.push(RunningWorker::start(queue, vec![lane], handler, outcomes.clone(), quick_settings()));
    }

    // Submission: the job's root span, in a `mono2mesh*` target as the API's is.
    let job = JobId::new();
    let submit = tracing::info_span!(target: "mono2mesh_test", "submit", otel.name = "submit", job_id = %job);
    let trace_id = submit.context().span().span_context().trace_id().to_string();
    let submitter = fixture.open().await;
    submitter.publish(&StageMessage::new(job, Stage::Gate, None)).instrument(submit.clone()).await.unwrap();
    drop(submit); // ends the span, so it is exported too

    let finished = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
    assert_eq!(finished.ok().flatten(), Some(job), "the job reached refine");
    let mut reports = Vec::new();
    for worker in workers {
        reports.push(worker.stop().await);
    }
    assert_eq!(reports[0].retried, 1, "gate retried once: {reports:?}");
    // Flushing blocks until the exporter has sent everything; keep it off the async threads.
    tokio::task::spawn_blocking(telemetry::flush).await.unwrap();

    let names = ["submit", "gate", "gate", "classify", "reconstruct", "refine"];
    let spans = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(20), |spans| {
            names.iter().all(|n| spans.iter().filter(|s| s.name == *n).count() >= names.iter().filter(|m| *m == n).count())
        })
        .await;
    let by_name = |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name == name).collect() };
    let only = |name: &str| -> &ReceivedSpan {
        let found = by_name(name);
        assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
        found[0]
    };

    let root = only("submit");
    assert!(root.parent_span_id.is_empty(), "submission starts the trace: {root:?}");
    // Gate ran twice: the first attempt is the submission's child, the retry the child
    // of the attempt that scheduled it.
    let gates = by_name("gate");
    assert_eq!(gates.len(), 2, "{spans:#?}");
    let first = gates.iter().find(|g| g.attribute("attempt") == Some("1")).expect("first gate attempt");
    let second = gates.iter().find(|g| g.attribute("attempt") == Some("2")).expect("second gate attempt");
    assert_eq!(first.parent_span_id, root.span_id);
    assert_eq!(first.attribute("outcome"), Some("retried"));
    assert_eq!(second.parent_span_id, first.span_id);
    assert_eq!(second.attribute("outcome"), Some("ok"));
    let classify = only("classify");
    assert_eq!(classify.parent_span_id, second.span_id, "classify follows the gate attempt that forwarded it");
    let reconstruct = only("reconstruct");
    assert_eq!(reconstruct.parent_span_id, classify.span_id);
    assert_eq!(reconstruct.attribute("lane"), Some("reconstruct.chair"));
    let refine = only("refine");
    assert_eq!(refine.parent_span_id, reconstruct.span_id);
    for stage_span in gates.iter().copied().chain([classify, reconstruct, refine]) {
        assert_eq!(stage_span.attribute("job_id"), Some(job.to_string().as_str()), "{stage_span:?}");
        assert_eq!(stage_span.trace_id, trace_id);
    }
    assert!(receiver.bad_requests().is_empty(), "{:?}", receiver.bad_requests());
    fixture.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_through_the_memory_queue() {
    one_job_is_one_trace(Fixture::memory(lanes())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_through_rabbitmq() {
    one_job_is_one_trace(Fixture::rabbit("traces", lanes()).await).await;
}

/// A message published outside any span (an old publisher, a replayed dead letter)
/// carries no trace context; its stage span starts a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_trace_context_starts_its_own_trace() {
    let fixture = Fixture::memory(vec![Lane::Refine]);
    let receiver = traced_process();
    let queue = fixture.open().await;
    let job = JobId::new();
    queue.publish(&StageMessage::new(job, Stage::Refine, None)).await.unwrap();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let handler = Arc::new(StandIn { stage: Stage::Refine, gate_failed_once: Arc::default(), done: done_tx });
    let worker = RunningWorker::start(queue, vec![Lane::Refine], handler, Arc::new(RecordedOutcomes::default()), quick_settings());
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await.ok().flatten(), Some(job));
    worker.stop().await;
    tokio::task::spawn_blocking(telemetry::flush).await.unwrap();
    let job_text = job.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let span = loop {
        if let Some(span) = receiver.spans().into_iter().find(|s| s.attribute("job_id") == Some(job_text.as_str())) {
            break span;
        }
        assert!(std::time::Instant::now() < deadline, "no refine span for {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(span.name, "refine");
    assert!(span.parent_span_id.is_empty(), "a root span: {span:?}");
}
