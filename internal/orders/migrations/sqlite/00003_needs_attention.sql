-- +goose Up
-- An order whose payment could not be returned waits for an operator in
-- status needs_attention. SQLite cannot change a CHECK constraint in
-- place, so the table is rebuilt (in the migration's transaction), with
-- two more columns:
--   last_error     what an operator is shown of the saga's last failure of
--                  the step due;
--   stuck_version  the version at which the order was last noticed stuck,
--                  so that each crossing of the threshold is logged once.
CREATE TABLE orders_next (
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    email            TEXT    NOT NULL DEFAULT '',
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled', 'needs_attention')),
    items            TEXT    NOT NULL,
    total_cents      INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    shipping_address TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT '',
    refunded         BOOLEAN NOT NULL DEFAULT FALSE,
    payment_id       TEXT    NOT NULL DEFAULT '',
    version          INTEGER NOT NULL,
    saga_step        TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    deadline_at      TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT,
    payment_attempt  INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    last_error       TEXT    NOT NULL DEFAULT '',
    stuck_version    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO orders_next (id, user_id, email, status, items, total_cents, currency, shipping_address, reason, refunded,
    payment_id, version, saga_step, attempts, next_attempt_at, deadline_at, lease_owner, lease_until, payment_attempt,
    created_at, updated_at)
SELECT id, user_id, email, status, items, total_cents, currency, shipping_address, reason, refunded,
    payment_id, version, saga_step, attempts, next_attempt_at, deadline_at, lease_owner, lease_until, payment_attempt,
    created_at, updated_at
FROM orders;
DROP TABLE orders;
ALTER TABLE orders_next RENAME TO orders;
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE saga_step <> 'done';
-- What the admins' list of stuck orders reads besides the orders in flight.
CREATE INDEX orders_needs_attention ON orders (id) WHERE status = 'needs_attention';

-- +goose Down
CREATE TABLE orders_prev (
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
    saga_step        TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    deadline_at      TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT,
    payment_attempt  INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
-- An order needing attention fails the old CHECK, which stops the
-- migration: resolve such orders before going back.
INSERT INTO orders_prev SELECT id, user_id, email, status, items, total_cents, currency, shipping_address, reason,
    refunded, payment_id, version, saga_step, attempts, next_attempt_at, deadline_at, lease_owner, lease_until,
    payment_attempt, created_at, updated_at
FROM orders;
DROP TABLE orders;
ALTER TABLE orders_prev RENAME TO orders;
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE saga_step <> 'done';
