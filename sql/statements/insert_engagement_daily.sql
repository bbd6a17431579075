INSERT INTO engagement_daily (user_id, day, sessions, shop_views, wishlist_adds, cart_adds) VALUES
