INSERT INTO wishlist (user_id, item_id, added_at) VALUES
