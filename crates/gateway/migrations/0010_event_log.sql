-- The operator's event log: per request the HTTP status its client got, the error's own text when
-- it failed (masked, bounded), and its type (`chat`, `chat.stream`, `responses`,
-- `responses.stream`); per key the last four characters of the key, so the log can show a masked
-- key (`sk-sy-…a1b2`). Keys made before this migration have none and show `…????`.
-- Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE usage_entries ADD COLUMN status BIGINT;
ALTER TABLE usage_entries ADD COLUMN error_text TEXT;
ALTER TABLE usage_entries ADD COLUMN request_type TEXT;
ALTER TABLE api_keys ADD COLUMN key_last4 TEXT;
