-- Keys: the spend of the current budget period and a version that every change bumps (so that a
-- cached account only ever moves forward); usage entries: when the request started and finished.
-- Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE api_keys ADD COLUMN period_start BIGINT;
ALTER TABLE api_keys ADD COLUMN period_spent_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_entries ADD COLUMN started_at BIGINT;
ALTER TABLE usage_entries ADD COLUMN finished_at BIGINT;
CREATE INDEX usage_entries_model_time ON usage_entries (requested_model, created_at);
