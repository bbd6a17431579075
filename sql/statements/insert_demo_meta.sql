INSERT INTO demo_meta (seed, users, anchor) VALUES
