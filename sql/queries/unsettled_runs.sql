-- The runs of a campaign ($1) and run date ($2) a complete export may be left of, oldest first:
-- under the campaign-day's lock, those still 'running' are the leftovers of a process that
-- stopped, and a 'failed' one with an export URI failed after its export was complete (its
-- delivery to a watched prefix did not finish). Other failed runs left nothing complete.
SELECT run_id FROM targeting_runs
WHERE campaign_id = $1 AND run_date = $2
  AND (status = 'running' OR (status = 'failed' AND export_uri IS NOT NULL))
ORDER BY started_at, run_id
