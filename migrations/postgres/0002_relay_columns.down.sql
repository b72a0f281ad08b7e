DROP INDEX IF EXISTS ix_{{.Name}}_published;
DROP INDEX IF EXISTS ix_{{.Name}}_event_type;
CREATE INDEX ix_{{.Name}}_event_type ON {{.Table}} (event_type);
DROP INDEX IF EXISTS ix_{{.Name}}_aggregate;
CREATE INDEX ix_{{.Name}}_aggregate ON {{.Table}} (aggregate_type, aggregate_id);
DROP INDEX IF EXISTS ix_{{.Name}}_held;
DROP INDEX IF EXISTS ix_{{.Name}}_unpublished;
ALTER TABLE {{.Table}}
    DROP COLUMN IF EXISTS parked_at,
    DROP COLUMN IF EXISTS lease_until,
    DROP COLUMN IF EXISTS lease_token,
    DROP COLUMN IF EXISTS lease_owner,
    DROP COLUMN IF EXISTS next_attempt_at,
    DROP COLUMN IF EXISTS headers,
    DROP COLUMN IF EXISTS topic,
    DROP COLUMN IF EXISTS seq;
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_unpublished ON {{.Table}} (created_at) WHERE published_at IS NULL;
