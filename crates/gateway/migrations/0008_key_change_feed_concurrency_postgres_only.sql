-- PostgreSQL only: the change feed (0006) also notifies a change of a key's `max_concurrent`
-- (0007), so a new concurrency limit reaches every instance at once like the other limits.
DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.rpm IS DISTINCT FROM NEW.rpm
        OR OLD.tpm IS DISTINCT FROM NEW.tpm
        OR OLD.max_concurrent IS DISTINCT FROM NEW.max_concurrent
        OR OLD.models IS DISTINCT FROM NEW.models
        OR OLD.budget_nanos IS DISTINCT FROM NEW.budget_nanos
        OR OLD.budget_period IS DISTINCT FROM NEW.budget_period
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
        OR OLD.name IS DISTINCT FROM NEW.name
        OR OLD.metadata IS DISTINCT FROM NEW.metadata
        OR (OLD.balance_nanos IS DISTINCT FROM NEW.balance_nanos
            AND OLD.spent_nanos IS NOT DISTINCT FROM NEW.spent_nanos))
    EXECUTE FUNCTION switchyard_notify_key_change();
