-- Marks the runs of a campaign and date that are still 'running' as aborted: called by the
-- holder of that campaign and date's lock, so no other process is running them; they are the
-- leftovers of a process that stopped (or of this one, at shutdown).
UPDATE targeting_runs SET status = 'aborted', finished_at = $3, error = $4
WHERE campaign_id = $1 AND run_date = $2 AND status = 'running'
