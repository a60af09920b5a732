-- +goose Up
-- ids are UUIDv7 strings: ORDER BY id (binary collation) is creation order.
-- Times are UTC text, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', fixed width so they sort.
-- event_id is unique: one notification per event, whatever happens to the
-- consumer's processed_events rows.
CREATE TABLE notifications (
    id         TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- A user's listing is a backwards range scan of this index.
CREATE INDEX notifications_user ON notifications (user_id, id);

-- What user.registered told about each user, for the order events, which
-- carry no name and not always an email.
CREATE TABLE recipients (
    user_id    TEXT NOT NULL PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- +goose Down
DROP TABLE recipients;
DROP TABLE notifications;
