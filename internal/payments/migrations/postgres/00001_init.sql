-- +goose Up
-- ids are UUIDv7 strings; the "C" collation makes ORDER BY id byte order, which
-- for UUIDv7 is creation order. No card data is stored: only the brand the
-- provider reported, its reference, and a SHA-256 of the authorize request.
CREATE TABLE payments (
    id              TEXT COLLATE "C" PRIMARY KEY,
    order_id        TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    amount_cents    BIGINT      NOT NULL CHECK (amount_cents > 0 AND amount_cents <= 100000000),
    currency        TEXT        NOT NULL,
    -- pending: recorded before the provider was asked, never shown to clients.
    status          TEXT        NOT NULL
        CHECK (status IN ('pending', 'authorized', 'declined', 'captured', 'voided', 'refunded')),
    decline_code    TEXT        NOT NULL DEFAULT '',
    card_brand      TEXT        NOT NULL DEFAULT '',
    provider_ref    TEXT        NOT NULL DEFAULT '',
    idempotency_key TEXT        NOT NULL UNIQUE,
    request_hash    TEXT        NOT NULL,
    -- The operation begun at the provider but not yet recorded, or ''.
    pending_op      TEXT        NOT NULL DEFAULT ''
        CHECK (pending_op = ''
            OR (pending_op IN ('capture', 'void') AND status = 'authorized')
            OR (pending_op = 'refund' AND status = 'captured')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX payments_order ON payments (order_id, id);
-- At most one capture per order: a payment that is captured, refunded (it was
-- captured) or being captured holds the order's only slot, so a second
-- payment of the same order can never be captured, whatever races.
CREATE UNIQUE INDEX payments_one_capture_per_order ON payments (order_id)
    WHERE status IN ('captured', 'refunded') OR pending_op = 'capture';

-- +goose Down
DROP TABLE payments;
