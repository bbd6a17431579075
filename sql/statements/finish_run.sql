UPDATE targeting_runs
SET status = $3, finished_at = $4, audience_size = $5, holdout_size = $6, model_versions = $7,
    export_uri = $8, error = $9
WHERE run_id = $1 AND campaign_id = $2
