-- The table and indexes as the Python services create them.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregate_id   VARCHAR(255) NOT NULL,
    aggregate_type VARCHAR(100) NOT NULL,
    event_type     VARCHAR(255) NOT NULL,
    event_data     JSON NOT NULL,
    event_key      VARCHAR(255),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ,
    retry_count    INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_unpublished ON {{.Table}} (created_at) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_aggregate ON {{.Table}} (aggregate_type, aggregate_id);
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_event_type ON {{.Table}} (event_type);
