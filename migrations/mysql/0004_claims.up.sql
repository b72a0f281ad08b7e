-- Claims become rows of their own: a claim writes one row into
-- <table>_claims (its token, owner, lease, and the JSON arrays of the events
-- it holds and of their keys) instead of a lease into every event, so that
-- marking an event published is the only write per event (docs/claim.md).
-- The lease columns go, and held no longer looks at them: a relay of an
-- earlier version fails on this table instead of claiming events that a
-- claim row holds. Stop such relays before applying this step.
--
-- Each statement is safe to re-run (see migration 2): the table is created
-- if missing, and the ALTER runs while lease_token exists; it is one
-- statement, so it is applied whole or not at all.
CREATE TABLE IF NOT EXISTS {{.Table}}_claims (
    token       CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
    owner       TEXT NOT NULL,
    lease_until TIMESTAMP(6) NOT NULL,
    event_ids   LONGTEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_keys  LONGTEXT NOT NULL,
    PRIMARY KEY (token)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
SET @outbox_ddl = IF(EXISTS(
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = IF(LOCATE('.', '{{.Table}}') > 0, SUBSTRING_INDEX('{{.Table}}', '.', 1), DATABASE())
      AND table_name = '{{.Name}}' AND column_name = 'lease_token'), '
ALTER TABLE {{.Table}}
    MODIFY COLUMN held TINYINT AS (next_attempt_at IS NOT NULL OR parked_at IS NOT NULL) STORED,
    DROP COLUMN lease_owner,
    DROP COLUMN lease_token,
    DROP COLUMN lease_until', 'DO 0');
PREPARE outbox_ddl FROM @outbox_ddl;
EXECUTE outbox_ddl;
DEALLOCATE PREPARE outbox_ddl;
