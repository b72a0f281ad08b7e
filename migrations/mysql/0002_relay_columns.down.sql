-- Back to the Python services' table, guarded like the up step (see there).
SET @outbox_ddl = IF(EXISTS(
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = IF(LOCATE('.', '{{.Table}}') > 0, SUBSTRING_INDEX('{{.Table}}', '.', 1), DATABASE())
      AND table_name = '{{.Name}}' AND column_name = 'seq'), '
ALTER TABLE {{.Table}}
    DROP INDEX ix_{{.Name}}_held,
    DROP INDEX ix_{{.Name}}_unpublished,
    ADD INDEX ix_{{.Name}}_unpublished (published_at, created_at),
    DROP INDEX ux_{{.Name}}_seq,
    DROP CONSTRAINT ck_{{.Name}}_headers,
    DROP COLUMN held,
    DROP COLUMN parked_at,
    DROP COLUMN lease_until,
    DROP COLUMN lease_token,
    DROP COLUMN lease_owner,
    DROP COLUMN next_attempt_at,
    DROP COLUMN headers,
    DROP COLUMN topic,
    DROP COLUMN seq', 'DO 0');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
