-- What the relay needs on top of the seed's table. Rows that older writers
-- insert with the seed's columns only get a seq, empty headers and no topic
-- (the relay then reads event_data's "topic").
ALTER TABLE {{.Table}}
    ADD COLUMN IF NOT EXISTS seq             BIGSERIAL,
    ADD COLUMN IF NOT EXISTS topic           VARCHAR(249),
    ADD COLUMN IF NOT EXISTS headers         JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS lease_owner     TEXT,
    ADD COLUMN IF NOT EXISTS lease_token     UUID,
    ADD COLUMN IF NOT EXISTS lease_until     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS parked_at       TIMESTAMPTZ;
-- The claim walks pending rows in seq order: parked rows leave this index so
-- they never slow the claim down.
DROP INDEX IF EXISTS ix_{{.Name}}_unpublished;
CREATE INDEX ix_{{.Name}}_unpublished ON {{.Table}} (seq) WHERE published_at IS NULL AND parked_at IS NULL;
-- Rows that may block later rows of their key: leased, backing off or parked.
-- The claim's per-key check probes only these, so it stays O(1) per row even
-- for a hot key with a deep backlog.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_held ON {{.Table}} (event_key, seq)
    WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL);
-- The janitor deletes the oldest published rows first.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_published ON {{.Table}} (published_at) WHERE published_at IS NOT NULL;
