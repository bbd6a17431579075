-- The runs of a campaign ($1) and run date ($2) still marked 'running', oldest first: under the
-- campaign-day's lock, the leftovers of a process that stopped.
SELECT run_id FROM targeting_runs
WHERE campaign_id = $1 AND run_date = $2 AND status = 'running'
ORDER BY started_at, run_id
