-- The input items of a stored response (`GET /v1/responses/{id}/input_items`): the request's
-- `input` as Responses items, each with its id, as a JSON array. Responses stored before this
-- migration have none (NULL) and list no items.
-- Portable SQL for SQLite and PostgreSQL alike.
ALTER TABLE responses ADD COLUMN input_items TEXT;
