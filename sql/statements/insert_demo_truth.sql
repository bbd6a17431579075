INSERT INTO demo_truth (user_id, true_uplift, true_discount_sensitivity, true_base_rate, true_discount_cap, true_discount_threshold) VALUES
