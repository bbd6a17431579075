-- A note on a run the operator should see beside its status, e.g. that it published a
-- campaign-day again on purpose (`run --force`).
ALTER TABLE targeting_runs ADD COLUMN note TEXT;
