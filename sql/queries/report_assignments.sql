-- report: both arms of the campaign-days with run dates from {from} to {to} (both inclusive,
-- written in by the report as 'YYYY-MM-DD' literals), of the last succeeded run of each
-- campaign-day (a re-run replaces a night's list), with the scores each user had that night and
-- whether the user was of the campaign's exploration sample (1) or the model's choice (0).
WITH latest AS (
    SELECT campaign_id, run_date, MAX(run_id) AS run_id
    FROM targeting_runs
    WHERE status = 'succeeded' AND run_date >= '{from}' AND run_date <= '{to}'
    GROUP BY campaign_id, run_date
)
SELECT a.run_id, a.campaign_id, l.run_date, a.user_id, a.arm, a.scores,
       CASE WHEN a.explore THEN 1 ELSE 0 END AS explore
FROM latest l
JOIN targeting_assignments a ON a.run_id = l.run_id AND a.campaign_id = l.campaign_id
