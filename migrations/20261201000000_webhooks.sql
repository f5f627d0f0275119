-- Webhook notifications of finished jobs: an outbox with one row per job that asked
-- to be notified (its own URL, or the deployment's default, fixed at submission).
-- The dispatcher in `mono2mesh serve` claims due rows whose job has reached done,
-- rejected or failed, calls the URL, and reschedules failures with back-off; every
-- attempt is also appended to the job's history as a `webhook` event.

CREATE TABLE webhook_deliveries (
    job_id           UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    url              TEXT NOT NULL CHECK (url <> ''),
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Calls made so far (a claim counts as one, before the call).
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When the row may be claimed next: now for a new row, the back-off after a
    -- failure, or the end of a claim's lease while a call is in flight.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ
);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
