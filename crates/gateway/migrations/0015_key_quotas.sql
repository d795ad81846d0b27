-- Coding-plan quotas: a key's windows (`5h`, `7d`, …), each capping money, requests or tokens,
-- with what the open window has used, as JSON (see `ledger::quotas`); updated in the
-- settlement's transaction. NULL: no quotas. Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE api_keys ADD COLUMN quotas TEXT;
-- The tokens a shared hold reserves in its key's token windows.
ALTER TABLE holds ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;
