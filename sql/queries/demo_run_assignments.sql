-- The demo's night: every assignment of run $1, to draw its users' outcomes from the truth.
SELECT campaign_id, user_id, arm, discount_pct
FROM targeting_assignments
WHERE run_id = $1
