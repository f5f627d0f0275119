//! Gathers the inputs of concurrent deliveries into one batch for a model's forward
//! pass (classify and reconstruct), so a network runs once per batch instead of once
//! per photo, in the workers and in `mono2mesh run` alike.
//!
//! A batch closes when it holds `batch_size` items or `latency` after its first item
//! arrived, whichever comes first. The batch runs on a blocking thread; a panic there
//! fails that batch's jobs (permanently, with the panic's message) and the batcher
//! keeps serving the next ones.

use mono2mesh_core::StageError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::telemetry::names;

type Reply<O> = oneshot::Sender<Result<O, StageError>>;

/// Runs a batch: one result per input, in order.
pub trait BatchFn<I, O>: Fn(Vec<I>) -> Vec<Result<O, StageError>> + Send + Sync + 'static {}
impl<I, O, F: Fn(Vec<I>) -> Vec<Result<O, StageError>> + Send + Sync + 'static> BatchFn<I, O> for F {}

pub struct Batcher<I, O> {
    requests: mpsc::Sender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batching task on the current Tokio runtime. `stage` labels the
    /// batch-size metric.
    pub fn spawn(stage: &'static str, batch_size: usize, latency: Duration, run: impl BatchFn<I, O>) -> Self {
        let batch_size = batch_size.max(1);
        let (requests, mut incoming) = mpsc::channel::<(I, Reply<O>)>(batch_size * 4);
        let run = Arc::new(run);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + latency;
                while batch.len() < batch_size {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(request)) => batch.push(request),
                        Ok(None) | Err(_) => break,
                    }
                }
                let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
                metrics::histogram!(names::BATCH_SIZE, "stage" => stage).record(inputs.len() as f64);
                let expected = inputs.len();
                let run = run.clone();
                match tokio::task::spawn_blocking(move || run(inputs)).await {
                    Ok(results) if results.len() == expected => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Ok(results) => {
                        let reason = format!("{stage}: a batch of {expected} gave {} results", results.len());
                        replies.into_iter().for_each(|r| {
                            let _ = r.send(Err(StageError::permanent(reason.clone())));
                        });
                    }
                    Err(join) => {
                        let reason = format!("{stage} batch did not finish: {}", panic_message(join));
                        replies.into_iter().for_each(|r| {
                            let _ = r.send(Err(StageError::permanent(reason.clone())));
                        });
                    }
                }
            }
        });
        Batcher { requests }
    }

    /// Queues `input` for the next batch and waits for its result.
    pub async fn run(&self, input: I) -> Result<O, StageError> {
        let (reply, result) = oneshot::channel();
        self.requests
            .send((input, reply))
            .await
            .map_err(|_| StageError::permanent("the batcher stopped"))?;
        result.await.map_err(|_| StageError::permanent("the batcher dropped the job"))?
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .map_or_else(|| "it panicked".to_string(), |m| format!("it panicked: {m}")),
        Err(join) => join.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inputs_share_batches_and_a_panic_fails_only_its_batch() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counter = batches.clone();
        let batcher = Arc::new(Batcher::spawn("test", 4, Duration::from_millis(200), move |inputs: Vec<i32>| {
            counter.fetch_add(1, Ordering::SeqCst);
            assert!(!inputs.contains(&-1), "poison input");
            inputs.into_iter().map(|i| Ok(i * 10)).collect()
        }));
        let tasks: Vec<_> = (0..8).map(|i| tokio::spawn({
            let b = batcher.clone();
            async move { b.run(i).await }
        })).collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        assert_eq!(results, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        assert!(batches.load(Ordering::SeqCst) <= 3, "8 inputs in batches of up to 4");

        let error = batcher.run(-1).await.unwrap_err();
        assert!(error.reason.contains("panicked") && error.reason.contains("poison input"), "{}", error.reason);
        assert_eq!(batcher.run(7).await.unwrap(), 70, "the batcher survives a panicking batch");
    }
}
