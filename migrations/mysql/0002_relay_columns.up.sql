-- What the relay needs on top of the Python services' table. Rows that older writers
-- insert with the Python services' columns only get a seq, empty headers and no topic
-- (the relay then reads event_data's "topic"). Rows already in the table get
-- their seq in write order: by created_at, then id.
--
-- MySQL and MariaDB commit DDL implicitly, so each statement of this step
-- must be safe to re-run when the step stopped before its version was
-- recorded, and runs only while the table lacks what it adds. The guards are
-- prepared statements because MySQL 8 has no ADD COLUMN IF NOT EXISTS
-- (MariaDB has).
--
-- ALTER TABLE numbers the rows it adds seq to in primary-key (UUID) order,
-- so the first statement adds seq with everything else and a non-unique
-- index on it; the second numbers the rows by created_at and id; the third
-- makes the index unique, which marks the step done. The numbering runs with
-- the table locked for writing: LOCK TABLES waits for the transactions that
-- write to it, so no row it does not see holds a seq it hands out, and rows
-- inserted afterwards get higher ones. A step stopped halfway numbers the
-- rows again, all of them, when it is re-run.
--
-- No partial indexes: ix_<table>_unpublished (the claim's walk in seq order)
-- and ix_<table>_held (the per-key probe) start with published_at, so pending
-- rows form one contiguous range of each, and the janitor finds the oldest
-- published rows through the same prefix. The held column stands in for
-- PostgreSQL's partial-index predicate: rows that may block later rows of
-- their key (leased, backing off or parked) form their own range per key, so
-- the probe skips the unheld rows of a hot key instead of reading each.
SET @outbox_ddl = IF(EXISTS(
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = IF(LOCATE('.', '{{.Table}}') > 0, SUBSTRING_INDEX('{{.Table}}', '.', 1), DATABASE())
      AND table_name = '{{.Name}}' AND column_name = 'seq'), 'DO 0', '
ALTER TABLE {{.Table}}
    ADD COLUMN seq             BIGINT NOT NULL AUTO_INCREMENT,
    ADD COLUMN topic           VARCHAR(249) NULL DEFAULT NULL,
    ADD COLUMN headers         LONGTEXT NOT NULL DEFAULT (''{}''),
    ADD COLUMN next_attempt_at TIMESTAMP(6) NULL DEFAULT NULL,
    ADD COLUMN lease_owner     TEXT NULL,
    ADD COLUMN lease_token     CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci NULL DEFAULT NULL,
    ADD COLUMN lease_until     TIMESTAMP(6) NULL DEFAULT NULL,
    ADD COLUMN parked_at       TIMESTAMP(6) NULL DEFAULT NULL,
    ADD COLUMN held            TINYINT AS (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL) STORED,
    ADD CONSTRAINT ck_{{.Name}}_headers CHECK (JSON_VALID(headers)),
    ADD INDEX ux_{{.Name}}_seq (seq),
    DROP INDEX ix_{{.Name}}_unpublished,
    ADD INDEX ix_{{.Name}}_unpublished (published_at, parked_at, seq),
    ADD INDEX ix_{{.Name}}_held (published_at, event_key, held, seq)');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
LOCK TABLES {{.Table}} AS o WRITE, {{.Table}} AS n READ;
SET @outbox_renumber = EXISTS(
    SELECT 1 FROM information_schema.statistics
    WHERE table_schema = IF(LOCATE('.', '{{.Table}}') > 0, SUBSTRING_INDEX('{{.Table}}', '.', 1), DATABASE())
      AND table_name = '{{.Name}}' AND index_name = 'ux_{{.Name}}_seq' AND non_unique = 1);
SET @outbox_ddl = IF(@outbox_renumber, '
UPDATE {{.Table}} AS o JOIN (
    SELECT n.id, ROW_NUMBER() OVER (ORDER BY n.created_at, n.id) AS seq FROM {{.Table}} AS n
) w ON o.id = w.id
SET o.seq = w.seq', 'DO 0');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
UNLOCK TABLES;
SET @outbox_ddl = IF(@outbox_renumber, '
ALTER TABLE {{.Table}} DROP INDEX ux_{{.Name}}_seq, ADD UNIQUE INDEX ux_{{.Name}}_seq (seq)', 'DO 0');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
