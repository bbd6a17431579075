-- The discount each assignment carried, so the discount cooldown can read the history.
ALTER TABLE targeting_assignments ADD COLUMN discount_pct DOUBLE PRECISION NOT NULL DEFAULT 0;
