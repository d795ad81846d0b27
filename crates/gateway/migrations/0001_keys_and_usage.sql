-- API keys and the append-only usage ledger; portable SQL run on SQLite and PostgreSQL alike. Money is integer nano-USD.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    balance_nanos BIGINT NOT NULL DEFAULT 0,
    reserved_nanos BIGINT NOT NULL DEFAULT 0,
    spent_nanos BIGINT NOT NULL DEFAULT 0,
    rpm BIGINT,
    tpm BIGINT,
    models TEXT,
    budget_nanos BIGINT,
    budget_period TEXT,
    expires_at BIGINT,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE usage_entries (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT,
    provider TEXT,
    attempts BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    token_source TEXT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    end_reason TEXT NOT NULL,
    ttft_ms BIGINT,
    duration_ms BIGINT NOT NULL,
    stream BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_entries_key_time ON usage_entries (key_id, created_at);
CREATE INDEX usage_entries_time ON usage_entries (created_at);
