INSERT INTO suppressions (user_id, reason, created_at) VALUES
