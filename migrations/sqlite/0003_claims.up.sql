-- A claim is a row of its own: the events it holds and their keys, as JSON
-- arrays, until its lease ends (see the store's claim).
CREATE TABLE IF NOT EXISTS {{.Table}}_claims (
    token       TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    event_ids   TEXT NOT NULL,
    event_keys  TEXT NOT NULL
);
