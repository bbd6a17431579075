-- report: what the runs (not the dry runs) with run dates from $1 to $2 (both inclusive)
-- expected of each campaign.
SELECT run_id, campaign_id, audience_size, holdout_size, expected_conversions,
       expected_discount_cost, margin
FROM targeting_forecasts
WHERE NOT dry_run AND run_date >= $1 AND run_date <= $2
