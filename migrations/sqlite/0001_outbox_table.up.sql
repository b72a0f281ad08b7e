-- The outbox table on SQLite, in its final shape at once: no older writer
-- ever created it, so there is nothing to adopt.
--   * seq is the rowid (INTEGER PRIMARY KEY AUTOINCREMENT): SQLite has one
--     writer at a time, so seq order is commit order, and a number is never
--     used twice.
--   * Times are integers, microseconds since the Unix epoch, from the
--     database clock (unixepoch('subsec'), millisecond precision).
--   * event_data and headers are text checked with json_valid: the relay
--     publishes event_data byte for byte.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- A writer that gives no id gets a random (version 4) UUID.
    id              TEXT NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
                        substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random()) % 4, 1) ||
                        substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    aggregate_id    TEXT NOT NULL,
    aggregate_type  TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_data      TEXT NOT NULL CHECK (json_valid(event_data)),
    event_key       TEXT,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    published_at    INTEGER,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    topic           TEXT,
    headers         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
    next_attempt_at INTEGER,
    parked_at       INTEGER
);
-- Pending rows in seq order: what the claim walks.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_unpublished ON {{.Name}} (seq) WHERE published_at IS NULL AND parked_at IS NULL;
-- Rows that hold back later rows of their key: backing off or parked.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_held ON {{.Name}} (event_key, seq)
    WHERE published_at IS NULL AND (next_attempt_at IS NOT NULL OR parked_at IS NOT NULL);
-- Operators look settled rows up by aggregate and type; the janitor deletes
-- the oldest published ones first.
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_aggregate ON {{.Name}} (aggregate_type, aggregate_id)
    WHERE published_at IS NOT NULL OR parked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_event_type ON {{.Name}} (event_type)
    WHERE published_at IS NOT NULL OR parked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_published ON {{.Name}} (published_at) WHERE published_at IS NOT NULL;
