-- The shard of a user id among {shards} shards, as `models::shard::shard_of` computes it: the
-- contract of every deployment, which never changes. `{column}` is the column holding the id;
-- the expression is NULL when the id is.
((((({column} % 2147483648) + 2147483648) % 2147483648) * 1103515245 + 12345) % 2147483648 / 65536 % {shards})
