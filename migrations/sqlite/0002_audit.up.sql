-- Operator actions (retry, skip) on parked events, for every outbox table of
-- the database: one shared table, created by the first outbox table's
-- migration. Reverting removes only this table's records.
CREATE TABLE IF NOT EXISTS outbox_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
);
CREATE INDEX IF NOT EXISTS ix_outbox_audit_event ON outbox_audit (table_name, event_id);
