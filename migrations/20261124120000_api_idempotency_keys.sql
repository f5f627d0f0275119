-- Idempotency keys of the HTTP API (POST /v1/jobs with an Idempotency-Key header):
-- a retried request with the same key gets the job the first one created, and the same
-- key with a different request is refused. The fingerprint is a hash of what the
-- request asked for (batch + photo content hash, or batch + object key).

CREATE TABLE api_idempotency_keys (
    key          TEXT PRIMARY KEY CHECK (key <> ''),
    fingerprint  TEXT NOT NULL,
    job_id       UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
