-- +goose Up
-- One row per cart that has been written to; last_position numbers the lines.
-- SQLite serialises writers (immediate transactions), so a cart's writers
-- already take turns.
CREATE TABLE carts (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    last_position INTEGER NOT NULL
) WITHOUT ROWID;

-- position orders the lines by when they were first added.
CREATE TABLE cart_items (
    user_id    TEXT    NOT NULL,
    product_id TEXT    NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    position   INTEGER NOT NULL,
    PRIMARY KEY (user_id, product_id)
) WITHOUT ROWID;
CREATE INDEX cart_items_position ON cart_items (user_id, position);

-- +goose Down
DROP TABLE cart_items;
DROP TABLE carts;
