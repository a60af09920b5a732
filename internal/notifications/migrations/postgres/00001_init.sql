-- +goose Up
-- ids are UUIDv7 strings: with the "C" collation, ORDER BY id is byte order,
-- which is creation order, and keyset paging does not depend on the locale.
-- event_id is unique: one notification per event, whatever happens to the
-- consumer's processed_events rows.
CREATE TABLE notifications (
    id         TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT        NOT NULL,
    event_id   TEXT        NOT NULL UNIQUE,
    kind       TEXT        NOT NULL,
    channel    TEXT        NOT NULL,
    recipient  TEXT        NOT NULL,
    subject    TEXT        NOT NULL,
    body       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
-- A user's listing is a backwards range scan of this index.
CREATE INDEX notifications_user ON notifications (user_id, id);

-- What user.registered told about each user, for the order events, which
-- carry no name and not always an email.
CREATE TABLE recipients (
    user_id    TEXT        PRIMARY KEY,
    email      TEXT        NOT NULL,
    name       TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE recipients;
DROP TABLE notifications;
