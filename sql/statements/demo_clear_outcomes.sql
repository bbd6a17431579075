-- Removes the purchases a previous demo night simulated after its run date ($1, its cutoff),
-- before the outcomes of a new night are drawn.
DELETE FROM purchases WHERE purchased_at >= $1
