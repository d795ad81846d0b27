-- The HTTP status of the last upstream answer a request got (200 when served; the provider's
-- error status, e.g. 402 or 400, when it failed or was refused; null without any answer such as
-- a connection error or a timeout), so operators see what the provider said while the caller only
-- sees the gateway's own error. Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE usage_entries ADD COLUMN upstream_status BIGINT;
