-- What the relay needs on top of the Python services' table. Rows that older writers
-- insert with the Python services' columns only get a seq, empty headers and no topic
-- (the relay then reads event_data's "topic").
--
-- seq is a BIGSERIAL in all but name: BIGSERIAL would number the rows
-- already in the table in their physical order, which an UPDATE (a retry)
-- changes. They are numbered in write order instead, by created_at, then,
-- for the rows of one transaction (which share created_at), by their
-- physical order, which is their insert order unless a row was updated since
-- (ids of other writers are random and tell nothing). The numbering runs
-- while ALTER TABLE holds the table locked until the step commits; re-running
-- the step numbers only rows that have no seq and never moves the sequence
-- back.
ALTER TABLE {{.Table}}
    ADD COLUMN IF NOT EXISTS seq             BIGINT,
    ADD COLUMN IF NOT EXISTS topic           VARCHAR(249),
    ADD COLUMN IF NOT EXISTS headers         JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS lease_owner     TEXT,
    ADD COLUMN IF NOT EXISTS lease_token     UUID,
    ADD COLUMN IF NOT EXISTS lease_until     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS parked_at       TIMESTAMPTZ;
UPDATE {{.Table}} t SET seq = w.seq
FROM (
    SELECT id, COALESCE((SELECT max(seq) FROM {{.Table}}), 0) + row_number() OVER (ORDER BY created_at, ctid) AS seq
    FROM {{.Table}} WHERE seq IS NULL
) w
WHERE t.id = w.id;
CREATE SEQUENCE IF NOT EXISTS {{.Table}}_seq_seq OWNED BY {{.Table}}.seq;
SELECT setval('{{.Table}}_seq_seq', m) FROM (SELECT max(seq) AS m FROM {{.Table}}) x
WHERE m > COALESCE(pg_sequence_last_value('{{.Table}}_seq_seq'), 0);
ALTER TABLE {{.Table}}
    ALTER COLUMN seq SET DEFAULT nextval('{{.Table}}_seq_seq'),
    ALTER COLUMN seq SET NOT NULL;
-- The claim walks pending rows in seq order: parked rows leave this index so
-- they never slow the claim down.
DROP INDEX IF EXISTS ix_{{.Name}}_unpublished;
CREATE INDEX ix_{{.Name}}_unpublished ON {{.Table}} (seq) WHERE published_at IS NULL AND parked_at IS NULL;
-- Rows that may block later rows of their key: leased, backing off or parked.
-- The claim's per-key check probes only these, so it stays O(1) per row even
-- for a hot key with a deep backlog.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_held ON {{.Table}} (event_key, seq)
    WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL);
-- The Python services' lookup indexes keep their names but cover settled rows only
-- (published or parked), which is what operators look up by aggregate or type
-- (outbox replay, audit, parked lists). Pending rows are few and transient:
-- leaving them out spares the insert and the relay's claim two index entries
-- each (measured: claims ~20% cheaper; docs/BENCHMARKS.md).
DROP INDEX IF EXISTS ix_{{.Name}}_aggregate;
CREATE INDEX ix_{{.Name}}_aggregate ON {{.Table}} (aggregate_type, aggregate_id)
    WHERE published_at IS NOT NULL OR parked_at IS NOT NULL;
DROP INDEX IF EXISTS ix_{{.Name}}_event_type;
CREATE INDEX ix_{{.Name}}_event_type ON {{.Table}} (event_type)
    WHERE published_at IS NOT NULL OR parked_at IS NOT NULL;
-- The janitor deletes the oldest published rows first.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_published ON {{.Table}} (published_at) WHERE published_at IS NOT NULL;
