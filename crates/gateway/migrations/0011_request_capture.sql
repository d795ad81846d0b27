-- Per-key capture of prompt and completion text (off unless an operator turns it on for a key):
-- `capture_hours` on a key is how long its captures are kept (NULL: capture off); each captured
-- request is one row of `request_captures`, redacted and truncated before it is written, and
-- deleted once `expires_at` (epoch ms) has passed. Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE api_keys ADD COLUMN capture_hours BIGINT;
CREATE TABLE request_captures (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    request_text TEXT NOT NULL,
    completion_text TEXT NOT NULL,
    truncated BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX request_captures_expires ON request_captures (expires_at);
CREATE INDEX request_captures_key ON request_captures (key_id);
