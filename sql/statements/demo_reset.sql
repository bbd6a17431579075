-- Clears the demo source tables before they are generated again.
DELETE FROM users;
DELETE FROM suppressions;
DELETE FROM items;
DELETE FROM purchases;
DELETE FROM engagement_daily;
DELETE FROM wishlist;
DELETE FROM friendships;
DELETE FROM campaign_exposures;
DELETE FROM demo_truth;
DELETE FROM demo_meta;
