INSERT INTO purchases (order_id, user_id, item_id, purchased_at, list_price_cents, paid_cents, is_gift, recipient_user_id) VALUES
