-- A contract query restricted to what a run reads: the query as written (the built-in one or
-- the deployment's own) becomes a subquery, and `{filter}` tests its columns, so a deployment's
-- SQL needs no parameters. The filter is written by the run from the data contract
-- (`models::features::Slicing`): the run date's window, and a shard's users.
SELECT * FROM (
{query}
) AS contract
WHERE {filter}
