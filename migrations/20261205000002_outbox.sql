-- The transactional outbox of stage messages. A new job's gate message is written
-- here in the same transaction as the job row and its `submitted` event, so a crash
-- between recording a job and publishing it can no longer leave a job that no worker
-- will ever see. Relays (`mono2mesh_infra::outbox`, run by `mono2mesh serve`,
-- `mono2mesh submit` and the gate worker) publish due rows with publisher confirms,
-- then delete the row and append the job's `published` event in one statement.
--
-- Claiming: a relay moves `next_attempt_at` to the end of a lease (rows picked with
-- FOR UPDATE SKIP LOCKED), so concurrent relays never take the same row while the
-- lease runs, and one that dies mid-publish only delays the row until it ends. The
-- submitter takes that lease already in the insert, to publish its own row at once.

CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    job_id           UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The message's stage (also inside `message`): at most one pending message per
    -- job and stage, so two submissions resuming the same job queue it once.
    stage            TEXT NOT NULL CHECK (stage IN ('gate', 'classify', 'reconstruct', 'refine')),
    -- The StageMessage as the queue will carry it (JSON of mono2mesh_core::StageMessage).
    message          JSONB NOT NULL,
    -- W3C trace context of the submission, so a late publish still joins its trace.
    trace            JSONB NOT NULL DEFAULT '{}',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Publishes tried so far (a claim counts as one, before the publish).
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When the row may be claimed next: now for a free row, the end of a claim's
    -- lease while a publish is in flight, or a back-off after a failed publish.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    UNIQUE (job_id, stage)
);

CREATE INDEX outbox_due_idx ON outbox (next_attempt_at);
