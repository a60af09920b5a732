-- +goose Up
-- Order ids are UUIDv7 strings; the "C" collation makes ORDER BY id byte
-- order, which for UUIDv7 is creation order, whatever the locale.

-- The source of truth: every order is an append-only stream of events.
-- The primary key is the optimistic concurrency check: two writers
-- appending at the same version cannot both succeed.
CREATE TABLE order_events (
    order_id    TEXT COLLATE "C" NOT NULL,
    version     BIGINT      NOT NULL CHECK (version > 0),
    type        TEXT        NOT NULL,
    data        JSONB       NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, version)
);

-- The read model, updated in the transaction that appends each event, and
-- the saga's bookkeeping for the order.
CREATE TABLE orders (
    id               TEXT COLLATE "C" PRIMARY KEY,
    user_id          TEXT COLLATE "C" NOT NULL,
    email            TEXT        NOT NULL DEFAULT '',
    status           TEXT        NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled')),
    items            JSONB       NOT NULL,
    total_cents      BIGINT      NOT NULL,
    currency         TEXT        NOT NULL,
    shipping_address JSONB       NOT NULL,
    reason           TEXT        NOT NULL DEFAULT '',
    refunded         BOOLEAN     NOT NULL DEFAULT FALSE,
    payment_id       TEXT        NOT NULL DEFAULT '',
    version          BIGINT      NOT NULL,
    -- The next saga step, 'done' when there is none.
    saga_step        TEXT        NOT NULL,
    -- Failed attempts of that step, and when it is due.
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    deadline_at      TIMESTAMPTZ NOT NULL,
    -- Which replica runs the saga for the order, and until when.
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    -- 0 none, 1 armed, 2 uncertain: whether an authorization may exist
    -- that no event records.
    payment_attempt  SMALLINT    NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);
-- What the saga poller scans: only orders still in flight.
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE saga_step <> 'done';

CREATE TABLE idempotency_keys (
    user_id         TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    request_hash    TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE orders;
DROP TABLE order_events;
