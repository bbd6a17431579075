-- report: the drift measured by the latest run (not a dry run) with a run date from $1 to $2
-- (both inclusive): every model's score and features against its profile.
SELECT d.run_id, d.run_date, d.model, d.model_version, d.name, d.psi, d.missing_then,
       d.missing_now, d.sampled
FROM targeting_drift d
WHERE d.run_id = (
    SELECT run_id FROM targeting_drift
    WHERE NOT dry_run AND run_date >= $1 AND run_date <= $2
    ORDER BY recorded_at DESC, run_id DESC
    LIMIT 1
)
ORDER BY d.model, d.name
