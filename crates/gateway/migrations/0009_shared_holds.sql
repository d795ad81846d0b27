-- Shared holds (several instances on one PostgreSQL): one row per open hold, leased by the
-- instance that took it; `api_keys.reserved_nanos` (unused until now) is the sum of a key's rows.
-- Portable SQL for SQLite and PostgreSQL alike (a single instance never writes this table).
CREATE TABLE holds (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX holds_instance ON holds (instance_id);
CREATE INDEX holds_expiry ON holds (expires_at);
