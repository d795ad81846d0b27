-- PostgreSQL only (SQLite skips migrations whose name ends in `postgres_only`: one SQLite file has
-- one gateway process, whose own changes apply at once). The change feed of several instances:
-- every new key and every change an operator makes to a key (revocation, balance set or topped
-- up, limits, allowed models, budget, expiry, name, metadata), from any instance or the CLI,
-- notifies channel `switchyard_key_changes` with the key's id, delivered at commit; every instance
-- listens and re-reads that key at once. A settlement's debit (balance and spend move together)
-- is not notified: it is the ledger's own bookkeeping, and one notification per settled batch
-- would cost every instance a read.
CREATE OR REPLACE FUNCTION switchyard_notify_key_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('switchyard_key_changes', NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_created
    AFTER INSERT ON api_keys
    FOR EACH ROW EXECUTE FUNCTION switchyard_notify_key_change();

CREATE TRIGGER api_keys_changed
    AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.rpm IS DISTINCT FROM NEW.rpm
        OR OLD.tpm IS DISTINCT FROM NEW.tpm
        OR OLD.models IS DISTINCT FROM NEW.models
        OR OLD.budget_nanos IS DISTINCT FROM NEW.budget_nanos
        OR OLD.budget_period IS DISTINCT FROM NEW.budget_period
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
        OR OLD.name IS DISTINCT FROM NEW.name
        OR OLD.metadata IS DISTINCT FROM NEW.metadata
        OR (OLD.balance_nanos IS DISTINCT FROM NEW.balance_nanos
            AND OLD.spent_nanos IS NOT DISTINCT FROM NEW.spent_nanos))
    EXECUTE FUNCTION switchyard_notify_key_change();
