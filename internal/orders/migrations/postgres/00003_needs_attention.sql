-- +goose NO TRANSACTION
-- +goose Up
-- An order whose payment could not be returned waits for an operator in
-- status needs_attention. Each statement commits on its own, so that the
-- constraint is checked against existing rows without holding the table
-- exclusively, and the index is built without blocking writes; each can
-- run again should the migration stop half-way.

-- What an operator is shown of the saga's last failure of the step due.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS last_error TEXT NOT NULL DEFAULT '';
-- The version at which the order was last noticed stuck, so that each
-- crossing of the threshold is logged once, by one replica.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS stuck_version BIGINT NOT NULL DEFAULT 0;

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check,
    ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled', 'needs_attention')) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_status_check;

-- What the admins' list of stuck orders reads besides the orders in flight.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_needs_attention ON orders (id) WHERE status = 'needs_attention';

-- +goose Down
-- An order needing attention fails the old CHECK, which stops the
-- migration: resolve such orders before going back.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled'));
DROP INDEX CONCURRENTLY IF EXISTS orders_needs_attention;
ALTER TABLE orders DROP COLUMN IF EXISTS stuck_version;
ALTER TABLE orders DROP COLUMN IF EXISTS last_error;
