-- A session-level advisory lock on PostgreSQL: true when taken, false when another session
-- holds it. Released when the session ends.
SELECT pg_try_advisory_lock($1)
