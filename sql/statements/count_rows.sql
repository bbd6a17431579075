-- The number of rows a contract query returns (the users, for the shards a memory budget needs).
SELECT COUNT(*) FROM (
{query}
) AS contract
