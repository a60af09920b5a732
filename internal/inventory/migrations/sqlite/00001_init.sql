-- +goose Up
-- Times are UTC text, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', fixed width so they sort.
-- The CHECK constraints restate the invariants the conditional UPDATEs keep,
-- so no code path can oversell or drive a count negative.
CREATE TABLE stock (
    sku        TEXT    NOT NULL PRIMARY KEY,
    on_hand    INTEGER NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold       INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
    updated_at TEXT    NOT NULL,
    CHECK (reserved <= on_hand)
) WITHOUT ROWID;

-- One row per order id, ever: it is the idempotency key of every call.
-- A release that arrives before any reservation leaves a row with status
-- 'released' and no lines (a tombstone), so a late reservation holds nothing.
CREATE TABLE reservations (
    order_id   TEXT NOT NULL PRIMARY KEY,
    status     TEXT NOT NULL
        CHECK (status IN ('reserved', 'committed', 'released', 'restocked', 'expired')),
    expires_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (status <> 'reserved' OR expires_at IS NOT NULL)
) WITHOUT ROWID;
-- The expiry sweep scans the live reservations in expiry order.
CREATE INDEX reservations_live_expiry ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    order_id TEXT    NOT NULL REFERENCES reservations (order_id),
    sku      TEXT    NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
) WITHOUT ROWID;

-- The ledger: every change to a stock row, with why. Summing the deltas of
-- a sku gives its stock row.
CREATE TABLE stock_movements (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sku            TEXT    NOT NULL,
    order_id       TEXT,
    kind           TEXT    NOT NULL
        CHECK (kind IN ('reserve', 'commit', 'release', 'expire', 'restock', 'set')),
    on_hand_delta  INTEGER NOT NULL,
    reserved_delta INTEGER NOT NULL,
    sold_delta     INTEGER NOT NULL,
    at             TEXT    NOT NULL
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);
CREATE INDEX stock_movements_order ON stock_movements (order_id) WHERE order_id IS NOT NULL;

-- +goose Down
DROP TABLE stock_movements;
DROP TABLE reservation_lines;
DROP TABLE reservations;
DROP TABLE stock;
