-- Takes the lease $1 for holder $2 until $3 (Unix seconds), unless another holder's lease is
-- still valid at $4 (now). Affects one row when taken.
INSERT INTO targeting_leases (lock_key, holder, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (lock_key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE targeting_leases.holder = excluded.holder OR targeting_leases.expires_at < $4
