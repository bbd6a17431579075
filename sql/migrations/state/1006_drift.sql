-- How far tonight's users had moved from those each model was trained for (its
-- profile, see models::training::profile_population) when a run scored them (see
-- models::drift): one row per model and distribution (the model's score, then each feature).
-- Dry runs record theirs too, marked `dry_run`. `targeting report` draws the latest of its range.
CREATE TABLE targeting_drift (
    run_id TEXT NOT NULL,
    run_date TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    recorded_at BIGINT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    -- The feature's name, or the score's (`uplift`, `discount_sensitivity`).
    name TEXT NOT NULL,
    -- Population stability index against the profile; NULL when no value was present.
    psi DOUBLE PRECISION,
    missing_then DOUBLE PRECISION NOT NULL,
    missing_now DOUBLE PRECISION NOT NULL,
    -- Users counted (a fixed eighth of the night's, by a hash of the id).
    sampled BIGINT NOT NULL,
    PRIMARY KEY (run_id, model, name)
);
