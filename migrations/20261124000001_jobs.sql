-- Jobs, their append-only stage history, and the batches they were submitted in.
-- The state machine lives in mono2mesh_core::JobState; the CHECK constraints here only
-- keep foreign writers honest, the guarded UPDATEs in the job store enforce order.

CREATE TABLE batches (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    batch_id         BIGINT NOT NULL REFERENCES batches (id),
    input_key        TEXT NOT NULL,
    content_hash     TEXT NOT NULL,
    external_id      TEXT,
    category         TEXT,
    category_source  TEXT CHECK (category_source IN ('manifest', 'classifier')),
    model            TEXT,
    outputs          JSONB NOT NULL DEFAULT '{}'::jsonb,
    gate_scores      JSONB,
    state            TEXT NOT NULL DEFAULT 'submitted'
                     CHECK (state IN ('submitted', 'gated', 'classified', 'reconstructed', 'done', 'rejected', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    gated_at         TIMESTAMPTZ,
    classified_at    TIMESTAMPTZ,
    reconstructed_at TIMESTAMPTZ,
    done_at          TIMESTAMPTZ,
    rejected_at      TIMESTAMPTZ,
    failed_at        TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Resubmitting the same photo to the same batch finds the existing job.
    CONSTRAINT jobs_batch_content_unique UNIQUE (batch_id, content_hash)
);

CREATE INDEX jobs_batch_state_idx ON jobs (batch_id, state);
CREATE INDEX jobs_created_idx ON jobs (created_at DESC);
CREATE INDEX jobs_external_id_idx ON jobs (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE job_events (
    id      BIGSERIAL PRIMARY KEY,
    job_id  UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage   TEXT CHECK (stage IN ('gate', 'classify', 'reconstruct', 'refine')),
    event   TEXT NOT NULL,
    detail  JSONB NOT NULL DEFAULT '{}'::jsonb,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX job_events_job_idx ON job_events (job_id, id);
CREATE INDEX job_events_at_idx ON job_events (at);

-- History is append-only: refuse edits at the database, whoever connects.
CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only';
END;
$$;

CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
