INSERT INTO users (user_id, created_at, country, platform, email, marketing_opt_in) VALUES
