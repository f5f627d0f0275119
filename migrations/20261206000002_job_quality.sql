-- Each asset's quality (workers/refine/src/quality.rs): its confidence in [0, 1], the parts
-- it is made of and `needs_review`, written by the refine stage with the job's meshes.
-- `needs_review` is derived, so it can never disagree with the stored verdict, and is what
-- `stats` counts.
ALTER TABLE jobs
    ADD COLUMN quality JSONB CHECK (quality IS NULL OR jsonb_typeof(quality) = 'object'),
    ADD COLUMN needs_review BOOLEAN GENERATED ALWAYS AS ((quality ->> 'needs_review')::boolean) STORED;
