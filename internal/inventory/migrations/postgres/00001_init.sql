-- +goose Up
-- The CHECK constraints restate the invariants the conditional UPDATEs keep,
-- so no code path can oversell or drive a count negative.
CREATE TABLE stock (
    sku        TEXT COLLATE "C" PRIMARY KEY,
    on_hand    INTEGER     NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved   INTEGER     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold       INTEGER     NOT NULL DEFAULT 0 CHECK (sold >= 0),
    updated_at TIMESTAMPTZ NOT NULL,
    CHECK (reserved <= on_hand)
);

-- One row per order id, ever: it is the idempotency key of every call.
-- A release that arrives before any reservation leaves a row with status
-- 'released' and no lines (a tombstone), so a late reservation holds nothing.
CREATE TABLE reservations (
    order_id   TEXT COLLATE "C" PRIMARY KEY,
    status     TEXT        NOT NULL
        CHECK (status IN ('reserved', 'committed', 'released', 'restocked', 'expired')),
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CHECK (status <> 'reserved' OR expires_at IS NOT NULL)
);
-- The expiry sweep scans the live reservations in expiry order.
CREATE INDEX reservations_live_expiry ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    order_id TEXT COLLATE "C" NOT NULL REFERENCES reservations (order_id),
    sku      TEXT COLLATE "C" NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);

-- The ledger: every change to a stock row, with why. Summing the deltas of
-- a sku gives its stock row.
CREATE TABLE stock_movements (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku            TEXT COLLATE "C" NOT NULL,
    order_id       TEXT COLLATE "C",
    kind           TEXT        NOT NULL
        CHECK (kind IN ('reserve', 'commit', 'release', 'expire', 'restock', 'set')),
    on_hand_delta  INTEGER     NOT NULL,
    reserved_delta INTEGER     NOT NULL,
    sold_delta     INTEGER     NOT NULL,
    at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);
CREATE INDEX stock_movements_order ON stock_movements (order_id) WHERE order_id IS NOT NULL;

-- +goose Down
DROP TABLE stock_movements;
DROP TABLE reservation_lines;
DROP TABLE reservations;
DROP TABLE stock;
