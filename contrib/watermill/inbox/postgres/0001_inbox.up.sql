-- One row per message a handler has handled. The primary key is what makes a
-- redelivery a no-op: the handler's transaction inserts its row first.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    consumer     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
-- Operators prune old rows by age: once a message can no longer be
-- redelivered (past the topic's retention), its row is not needed (Inbox.Prune).
CREATE INDEX IF NOT EXISTS ix_{{.Name}}_processed_at ON {{.Table}} (processed_at);
