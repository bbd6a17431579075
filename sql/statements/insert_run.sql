INSERT INTO targeting_runs (run_id, campaign_id, run_date, status, started_at) VALUES ($1, $2, $3, 'running', $4)
