-- Operator actions (retry, skip) on parked events, for every outbox table of
-- the database: one shared table, created by the first outbox table's
-- migration. Reverting removes only this table's records.
CREATE TABLE IF NOT EXISTS outbox_audit (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    table_name VARCHAR(128) NOT NULL,
    event_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
    action     VARCHAR(16) NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    INDEX ix_outbox_audit_event (table_name, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
