-- Whether the user id in `{column}` is a friend of a user of one shard: the rows a training
-- sample of users reads besides its own (friends' orders). `{friendships}` is the contract's
-- friendships query (the built-in one or the deployment's own), `{shard_of}` the shard of its
-- `friends.user_id` (sql/statements/shard_of.sql) and `{index}` the shard.
{column} IN (SELECT friends.friend_id FROM (
{friendships}
) AS friends WHERE {shard_of} = {index})
