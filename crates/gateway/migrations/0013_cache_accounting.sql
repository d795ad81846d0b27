-- Prompt-cache accounting per entry: the tokens written to the provider's cache (both lifetimes;
-- reads are `cached_tokens`) and what the cache saved against the whole prompt at the input price,
-- in nano-dollars (negative when the writes cost more than the reads saved). Portable SQL for
-- SQLite and PostgreSQL alike.
ALTER TABLE usage_entries ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_entries ADD COLUMN cache_saved_nanos BIGINT NOT NULL DEFAULT 0;
