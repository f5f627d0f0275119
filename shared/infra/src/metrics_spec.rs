//! What every metric is called and how its histograms are bucketed: the one list that
//! the recorders ([`crate::telemetry`] for Prometheus, [`crate::otel_metrics`] for OTLP),
//! the code that records and the dashboards agree on. A leaf: it uses no other module.

/// Metric names, in one place so dashboards and code agree.
pub mod names {
    /// Counter {stage}: deliveries a stage started handling.
    pub const STAGE_RECEIVED: &str = "mono2mesh_stage_received_total";
    /// Counter {stage, outcome}: deliveries a stage finished, by outcome.
    pub const STAGE_FINISHED: &str = "mono2mesh_stage_finished_total";
    /// Histogram {stage, outcome}: handler wall time.
    pub const STAGE_DURATION: &str = "mono2mesh_stage_duration_seconds";
    /// Gauge {stage}: deliveries being handled right now.
    pub const STAGE_INFLIGHT: &str = "mono2mesh_stage_inflight";
    /// Histogram {stage}: time a message waited in the queue before handling.
    pub const QUEUE_WAIT: &str = "mono2mesh_queue_wait_seconds";
    /// Counter {stage}: deliveries the broker marked as redelivered.
    pub const REDELIVERIES: &str = "mono2mesh_queue_redeliveries_total";
    /// Counter {stage, class}: failures sent to a retry queue or the dead-letter queue.
    pub const FAILURES: &str = "mono2mesh_stage_failures_total";
    /// Histogram: publish-to-confirm time.
    pub const PUBLISH_CONFIRM: &str = "mono2mesh_queue_publish_confirm_seconds";
    /// Counter: broker connections replaced after a loss.
    pub const QUEUE_RECONNECTS: &str = "mono2mesh_queue_reconnects_total";
    /// Histogram {stage}: items per model batch (classify, reconstruct).
    pub const BATCH_SIZE: &str = "mono2mesh_stage_batch_size";
    /// Histogram {stage, device}: time a model batch spent in the network on its device
    /// (GPU time on a GPU), per batch.
    pub const DEVICE_TIME: &str = "mono2mesh_stage_device_seconds";
    /// Histogram {op, outcome}: blob store request time.
    pub const BLOB_REQUEST: &str = "mono2mesh_blob_request_seconds";
    /// Histogram {op}: job store query time.
    pub const DB_QUERY: &str = "mono2mesh_db_query_seconds";
    /// Counter {stage, action}: what recovery did to jobs nothing else would finish
    /// (`failed_dead_letter`, `republished`, `failed_stuck`, `undecodable`).
    pub const RECOVERY_ACTIONS: &str = "mono2mesh_recovery_actions_total";
    /// Counter {via}: outbox messages confirmed by the broker, by who published them
    /// (`submit`: the submission itself; `relay`: a relay, later).
    pub const OUTBOX_PUBLISHED: &str = "mono2mesh_outbox_published_total";
    /// Counter {via}: outbox publishes that failed or timed out (the row stays queued).
    pub const OUTBOX_PUBLISH_FAILURES: &str = "mono2mesh_outbox_publish_failures_total";
    /// Gauge: messages waiting in the outbox, as the last relay pass counted them.
    pub const OUTBOX_PENDING: &str = "mono2mesh_outbox_pending";
}

/// Histogram buckets (seconds) spanning a cached blob read to a CPU reconstruction.
pub(crate) const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
pub(crate) const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The explicit histogram buckets of a metric, shared by the Prometheus endpoint and
/// the OTLP export so both show the same distribution.
pub fn buckets_for(name: &str) -> Option<&'static [f64]> {
    if name == names::BATCH_SIZE {
        Some(&BATCH_BUCKETS)
    } else if name.ends_with("_seconds") {
        Some(&SECONDS_BUCKETS)
    } else {
        None
    }
}
