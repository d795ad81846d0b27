-- A key's limit on requests open at once (null or <= 0: none), enforced in memory or, with
-- several instances, in Redis. Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE api_keys ADD COLUMN max_concurrent BIGINT;
