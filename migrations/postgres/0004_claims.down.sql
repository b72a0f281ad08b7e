-- Back to leases in the rows. Events that a claim row holds are pending
-- again at once: stop the relays before reverting this step.
DROP TABLE IF EXISTS {{.Table}}_claims;
DROP INDEX IF EXISTS ix_{{.Name}}_held;
ALTER TABLE {{.Table}}
    ADD COLUMN IF NOT EXISTS lease_owner TEXT,
    ADD COLUMN IF NOT EXISTS lease_token UUID,
    ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_held ON {{.Table}} (event_key, seq)
    WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL);
