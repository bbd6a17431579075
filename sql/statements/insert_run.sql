INSERT INTO targeting_runs (run_id, campaign_id, run_date, status, started_at, note) VALUES ($1, $2, $3, 'running', $4, $5)
