-- Progress within the stage a job is in (issue 16, item 8): the stage that reported it and
-- how far it got, 0-100. Handlers report it where their work takes long (reconstruct's
-- forward pass, refine's meshing, colouring and files); the API and the status page turn
-- it into the job's overall progress (JobState::progress_in). Every state change resets it.
ALTER TABLE jobs
    ADD COLUMN progress_stage TEXT CHECK (progress_stage IN ('gate', 'classify', 'reconstruct', 'refine')),
    ADD COLUMN stage_progress SMALLINT NOT NULL DEFAULT 0 CHECK (stage_progress BETWEEN 0 AND 100);
