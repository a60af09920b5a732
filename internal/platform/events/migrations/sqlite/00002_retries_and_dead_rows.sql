-- +goose Up
-- A row JetStream refuses is retried on its own backoff, behind the rows
-- that keep flowing, and moved to outbox_dead after too many attempts.
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;

-- seq is the row's seq in the outbox; a replay puts it back with a new one.
CREATE TABLE outbox_dead (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT    NOT NULL UNIQUE,
    subject    TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    headers    TEXT    NOT NULL DEFAULT '{}',
    created_at TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    dead_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- How many times a consumer's handler rejected a stream message (failures
-- of infrastructure are not counted); gone once the message is handled or
-- dead-lettered.
CREATE TABLE consumer_rejections (
    consumer    TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    stream_seq  INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    rejections  INTEGER NOT NULL,
    last_error  TEXT    NOT NULL,
    rejected_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (consumer, stream, stream_seq)
);
CREATE INDEX consumer_rejections_rejected_at ON consumer_rejections (consumer, rejected_at);

-- +goose Down
DROP TABLE consumer_rejections;
DROP TABLE outbox_dead;
ALTER TABLE outbox DROP COLUMN last_error;
ALTER TABLE outbox DROP COLUMN next_attempt_at;
ALTER TABLE outbox DROP COLUMN attempts;
