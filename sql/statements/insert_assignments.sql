INSERT INTO targeting_assignments (run_id, campaign_id, user_id, arm, scores, assigned_at, discount_pct, explore) VALUES
