-- +goose Up
-- One row per cart that has been written to. Bumping last_position locks the
-- row, which serialises the writers of one cart: that is what makes the
-- 50-line limit hold under concurrent adds.
CREATE TABLE carts (
    user_id       TEXT   PRIMARY KEY,
    last_position BIGINT NOT NULL
);

-- position orders the lines by when they were first added.
CREATE TABLE cart_items (
    user_id    TEXT    NOT NULL,
    product_id TEXT    NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    position   BIGINT  NOT NULL,
    PRIMARY KEY (user_id, product_id)
);
CREATE INDEX cart_items_position ON cart_items (user_id, position);

-- +goose Down
DROP TABLE cart_items;
DROP TABLE carts;
