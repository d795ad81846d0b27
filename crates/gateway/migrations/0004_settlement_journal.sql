-- The settlement path: what was held at admission for each entry, whether the upstream reported
-- more than that (`over_hold`), and a note on how the entry was billed (`prompt_only` for a request
-- cancelled before its first token, `checkpoint` for one found in flight after a crash).
-- Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE usage_entries ADD COLUMN hold_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_entries ADD COLUMN over_hold BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_entries ADD COLUMN billing_note TEXT;
