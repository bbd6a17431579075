-- The runs of a campaign ($1) and run date ($2) a complete export may be left of, oldest first:
-- under the campaign-day's lock, those still 'running' are the leftovers of a process that
-- stopped; an 'aborted' one was stopped at shutdown, perhaps after its export was complete
-- (while delivering it to a watched prefix); a 'failed' one with an export URI failed after
-- its export was complete. Other failed runs left nothing complete and are not looked at, so
-- an unreachable store does not stop a retry.
SELECT run_id FROM targeting_runs
WHERE campaign_id = $1 AND run_date = $2
  AND (status IN ('running', 'aborted') OR (status = 'failed' AND export_uri IS NOT NULL))
ORDER BY started_at, run_id
