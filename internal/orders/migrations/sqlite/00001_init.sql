-- +goose Up
-- Order ids are UUIDv7 strings: ORDER BY id (binary collation) is creation
-- order. Times are UTC text, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', fixed width so
-- they compare and sort as text.

-- The source of truth: every order is an append-only stream of events.
-- The primary key is the optimistic concurrency check: two writers
-- appending at the same version cannot both succeed.
CREATE TABLE order_events (
    order_id    TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    PRIMARY KEY (order_id, version)
) WITHOUT ROWID;

-- The read model, updated in the transaction that appends each event, and
-- the saga's bookkeeping for the order.
CREATE TABLE orders (
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    email            TEXT    NOT NULL DEFAULT '',
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled')),
    items            TEXT    NOT NULL,
    total_cents      INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    shipping_address TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT '',
    refunded         BOOLEAN NOT NULL DEFAULT FALSE,
    payment_id       TEXT    NOT NULL DEFAULT '',
    version          INTEGER NOT NULL,
    -- The next saga step, 'done' when there is none.
    saga_step        TEXT    NOT NULL,
    -- Failed attempts of that step, and when it is due.
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    deadline_at      TEXT    NOT NULL,
    -- Which replica runs the saga for the order, and until when.
    lease_owner      TEXT,
    lease_until      TEXT,
    -- 0 none, 1 armed, 2 uncertain: whether an authorization may exist
    -- that no event records.
    payment_attempt  INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);
-- What the saga poller scans: only orders still in flight.
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE saga_step <> 'done';

CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE orders;
DROP TABLE order_events;
