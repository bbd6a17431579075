INSERT INTO items (item_id, title, kind, publisher_id, game_id, category, list_price_cents, released_at) VALUES
