-- The Python services' table and indexes, in MySQL/MariaDB terms (MySQL 8.0.16+,
-- MariaDB 10.6+):
--   * id is the UUID as text. Older writers may send it as a 36-character
--     string in any case (the collation compares case-insensitively) or omit
--     it: DEFAULT (UUID()) fills it in, as gen_random_uuid() does on PostgreSQL.
--     That default is an expression default (MySQL 8.0.13+, MariaDB 10.2+);
--     MySQL logs it as unsafe for statement-based replication.
--   * event_data is LONGTEXT checked with JSON_VALID rather than JSON: MySQL's
--     JSON type rewrites the document, and the relay publishes the bytes
--     exactly as written.
--   * Timestamps are TIMESTAMP(6), stored in UTC and set by the database clock;
--     nullable ones say NULL DEFAULT NULL so that servers running with
--     explicit_defaults_for_timestamp=OFF add no implicit default.
--   * utf8mb4_bin compares keys byte for byte, as Kafka does.
-- There are no partial indexes: ix_<table>_unpublished starts with
-- published_at so that pending rows are one contiguous range.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    id             CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL DEFAULT (UUID()),
    aggregate_id   VARCHAR(255) NOT NULL,
    aggregate_type VARCHAR(100) NOT NULL,
    event_type     VARCHAR(255) NOT NULL,
    event_data     LONGTEXT NOT NULL,
    event_key      VARCHAR(255) NULL DEFAULT NULL,
    created_at     TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    published_at   TIMESTAMP(6) NULL DEFAULT NULL,
    retry_count    INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_{{.Name}}_event_data CHECK (JSON_VALID(event_data)),
    INDEX ix_{{.Name}}_unpublished (published_at, created_at),
    INDEX ix_{{.Name}}_aggregate (aggregate_type, aggregate_id),
    INDEX ix_{{.Name}}_event_type (event_type)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
