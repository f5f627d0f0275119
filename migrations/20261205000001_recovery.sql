-- Recovery bookkeeping (see shared/infra/src/recovery.rs and runtime.rs).
--
-- stage_runs: how often each stage of a job was started and how often that start was
-- settled (the handler returned, panicked or timed out). A start that was never settled
-- means the worker process died while handling the job (abort, kill -9, out of memory).
-- On the next delivery the runtime runs such a suspect alone, so one poison photo cannot
-- take innocent jobs down with it again, and fails it once it has killed its worker
-- `queue.max_crashes` times.
CREATE TABLE stage_runs (
    job_id           UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage            TEXT NOT NULL CHECK (stage IN ('gate', 'classify', 'reconstruct', 'refine')),
    started          INTEGER NOT NULL DEFAULT 0,
    settled          INTEGER NOT NULL DEFAULT 0,
    last_started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage)
);

-- The sweeper's claim on a job that waited for a stage past its deadline: each sweep
-- re-publishes the stage's message once and bumps these, so several sweepers (one per
-- worker replica) never claim the same job in the same period, and a job that stays
-- stuck after `recovery.max_republish` sweeps is failed with the reason.
ALTER TABLE jobs ADD COLUMN sweeps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN swept_at TIMESTAMPTZ;

CREATE INDEX jobs_waiting_idx ON jobs (state, updated_at)
    WHERE state IN ('submitted', 'gated', 'classified', 'reconstructed');
