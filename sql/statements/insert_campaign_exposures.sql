INSERT INTO campaign_exposures (campaign_id, user_id, assigned_at, arm, discount_pct) VALUES
