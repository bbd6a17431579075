-- The runs of a campaign ($1) and run date ($2) that did not succeed, oldest first: under the
-- campaign-day's lock, 'running' ones are the leftovers of a process that stopped; a 'failed'
-- or 'aborted' one may still have a complete export (its list was out, and its delivery to a
-- watched prefix, or its ledger row, was not).
SELECT run_id FROM targeting_runs
WHERE campaign_id = $1 AND run_date = $2 AND status IN ('running', 'failed', 'aborted')
ORDER BY started_at, run_id
