-- The assignments users got before a run date, for the frequency cap and the discount cooldown:
-- both arms of succeeded runs with run dates from $1 (inclusive) to $2 (exclusive, so a re-run
-- of a night never counts its own earlier run). Holdout members count as if messaged: otherwise
-- last night's holdout would be eligible again tonight while its treatment arm is capped, and
-- tonight's arms would no longer be comparable.
SELECT a.user_id, r.run_date, a.discount_pct
FROM targeting_assignments a
JOIN targeting_runs r ON r.run_id = a.run_id AND r.campaign_id = a.campaign_id
WHERE r.status = 'succeeded' AND r.run_date >= $1 AND r.run_date < $2
