-- The project's own tables: the run ledger and the assignment history. Versions start at 1001
-- so they never collide with the source schema's when both live in one database.
CREATE TABLE targeting_runs (
    run_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    run_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'aborted')),
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    audience_size BIGINT,
    holdout_size BIGINT,
    model_versions TEXT,
    export_uri TEXT,
    error TEXT,
    PRIMARY KEY (run_id, campaign_id)
);

CREATE TABLE targeting_assignments (
    run_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    arm TEXT NOT NULL CHECK (arm IN ('treatment', 'holdout')),
    scores TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, campaign_id, user_id)
);

-- Frequency caps and lift reports read a user's recent history.
CREATE INDEX targeting_assignments_user ON targeting_assignments (user_id, assigned_at);
