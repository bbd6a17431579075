DELETE FROM targeting_leases WHERE lock_key = $1 AND holder = $2
