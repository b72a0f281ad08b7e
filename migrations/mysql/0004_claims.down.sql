-- Back to leases in the rows, guarded like the up step. Events that a claim
-- row holds are pending again at once: stop the relays before reverting
-- this step.
DROP TABLE IF EXISTS {{.Table}}_claims;
SET @outbox_ddl = IF(EXISTS(
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = IF(LOCATE('.', '{{.Table}}') > 0, SUBSTRING_INDEX('{{.Table}}', '.', 1), DATABASE())
      AND table_name = '{{.Name}}' AND column_name = 'lease_token'), 'DO 0', '
ALTER TABLE {{.Table}}
    ADD COLUMN lease_owner TEXT NULL,
    ADD COLUMN lease_token CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci NULL DEFAULT NULL,
    ADD COLUMN lease_until TIMESTAMP(6) NULL DEFAULT NULL,
    MODIFY COLUMN held TINYINT AS (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL) STORED');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
