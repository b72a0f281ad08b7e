-- Claims become rows of their own. A claim writes one row into
-- <table>_claims (its token, owner, lease, the events it holds and their
-- keys) instead of a lease into every event, so that marking an event
-- published is the only write per event (docs/claim.md). The lease columns
-- go: a relay of an earlier version, which leases rows, fails on this table
-- instead of claiming events that a claim row holds. Stop such relays before
-- applying this step.
CREATE TABLE IF NOT EXISTS {{.Table}}_claims (
    token       UUID PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    event_ids   UUID[] NOT NULL,
    event_keys  TEXT[] NOT NULL
);
-- Random UUIDs do not compress: store the arrays without trying.
ALTER TABLE {{.Table}}_claims ALTER COLUMN event_ids SET STORAGE EXTERNAL, ALTER COLUMN event_keys SET STORAGE EXTERNAL;
DROP INDEX IF EXISTS ix_{{.Name}}_held;
ALTER TABLE {{.Table}}
    DROP COLUMN IF EXISTS lease_owner,
    DROP COLUMN IF EXISTS lease_token,
    DROP COLUMN IF EXISTS lease_until;
-- Rows that hold back later rows of their key: backing off or parked.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_held ON {{.Table}} (event_key, seq)
    WHERE published_at IS NULL AND (next_attempt_at IS NOT NULL OR parked_at IS NOT NULL);
