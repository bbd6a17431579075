-- Leases of the scheduler where the state database is SQLite (PostgreSQL uses advisory locks):
-- one row per campaign and run date, held by one process until it expires. A holder renews its
-- lease while it runs; a crashed holder's lease runs out and another process takes over.
CREATE TABLE targeting_leases (
    lock_key TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
