-- The demo's night: every assignment of run $1, to draw its users' outcomes from the truth, with
-- whether it was of the campaign's random exploration (1) or the model's choice (0).
SELECT campaign_id, user_id, arm, discount_pct, CASE WHEN explore THEN 1 ELSE 0 END AS explore
FROM targeting_assignments
WHERE run_id = $1
