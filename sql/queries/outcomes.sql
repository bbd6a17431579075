-- outcomes: what `targeting report` counts as a campaign's result, one row per purchase. Returns
-- user_id, purchased_at (UTC Unix seconds), list_price_cents and paid_cents. A user converts
-- with any row in the attribution window after a run date; revenue is the sum of paid_cents and
-- the discount given the sum of list_price_cents - paid_cents. The report reads the windows it
-- needs through a filter on purchased_at, so the query takes no parameters. A deployment's own
-- copy in source.queries_dir replaces it (e.g. to leave out gifts or refunded orders).
SELECT user_id,
       purchased_at,
       list_price_cents,
       paid_cents
FROM purchases
