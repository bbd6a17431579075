INSERT INTO demo_truth (user_id, true_uplift, true_discount_sensitivity, true_base_rate) VALUES
