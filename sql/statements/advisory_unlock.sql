-- Gives back a session-level advisory lock on PostgreSQL (see advisory_lock.sql) before its
-- session closes: a closed session's locks go only once its server process has exited, which
-- a run started just after can still see.
SELECT pg_advisory_unlock($1)
