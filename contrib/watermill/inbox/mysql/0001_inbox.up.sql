-- One row per message a handler has handled. The primary key is what makes a
-- redelivery a no-op: the handler's transaction inserts its row first.
-- utf8mb4_bin compares IDs byte for byte; the key is 2040 bytes, below
-- InnoDB's 3072.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    consumer     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    processed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (consumer, message_id),
    -- Operators prune old rows by age: once a message can no longer be
    -- redelivered (past the topic's retention), its row is not needed (Inbox.Prune).
    INDEX ix_{{.Name}}_processed_at (processed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
