-- What the demo's simulated outcomes start from: the catalogue's items and prices, and the last
-- order id.
SELECT item_id, list_price_cents, (SELECT COALESCE(MAX(order_id), 0) FROM purchases) AS last_order
FROM items
ORDER BY item_id
