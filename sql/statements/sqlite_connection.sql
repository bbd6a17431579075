-- Run on every SQLite connection: concurrent readers beside one writer, and a wait instead of an
-- immediate "database is locked" when another process holds the write lock.
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 30000;
