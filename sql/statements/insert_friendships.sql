INSERT INTO friendships (user_id, friend_id, since) VALUES
