-- The real-world size the submitter stated for the asset (manifest columns, API fields):
-- {"height_mm": 900} or {"width_mm": 600, "height_mm": 900, "depth_mm": 550}, checked by
-- mono2mesh_core::RealSize when written and when read. NULL: the refine stage uses the
-- category's typical size. Added without a default, so existing rows are untouched.
ALTER TABLE jobs ADD COLUMN size JSONB CHECK (size IS NULL OR jsonb_typeof(size) = 'object');
