-- Stored Responses API objects (`POST /v1/responses` unless `store: false`), for
-- `GET /v1/responses/{id}` and `previous_response_id`: the final Response object as JSON and the
-- chat conversation that a later turn continues. A response belongs to the key that created it.
-- Portable SQL for SQLite and PostgreSQL alike.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    response TEXT NOT NULL,
    conversation TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX responses_key_time ON responses (key_id, created_at);
