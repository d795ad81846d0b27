-- Spend tags: a request's tags (`x-switchyard-tags`, `metadata.tags`), one row per entry and tag,
-- written in the settlement's transaction with the entry, so usage can be grouped by tag.
-- Portable SQL for SQLite and PostgreSQL alike.
CREATE TABLE usage_entry_tags (
    request_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, tag)
);
CREATE INDEX usage_entry_tags_by_time ON usage_entry_tags (created_at);
