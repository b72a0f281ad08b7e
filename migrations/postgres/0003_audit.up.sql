-- Operator actions (retry, skip) on parked events, for every outbox table of
-- the database: one shared table, created by the first outbox table's
-- migration. Reverting removes only this table's records.
CREATE TABLE IF NOT EXISTS outbox_audit (
    id         BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(128) NOT NULL,
    event_id   UUID NOT NULL,
    action     VARCHAR(16) NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_outbox_audit_event ON outbox_audit (table_name, event_id);
