-- +goose Up
-- ids are UUIDv7 strings; the "C" collation makes ORDER BY id byte order, which
-- for UUIDv7 is creation order, and keeps keyset paging independent of the
-- database's locale.
CREATE TABLE products (
    id          TEXT COLLATE "C" PRIMARY KEY,
    -- Stored upper-case, so uniqueness is case-insensitive.
    sku         TEXT        NOT NULL UNIQUE,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    price_cents BIGINT      NOT NULL CHECK (price_cents > 0),
    currency    TEXT        NOT NULL,
    -- JSON array of the category slugs, so a read is one row; filtering uses
    -- product_categories.
    categories  TEXT        NOT NULL DEFAULT '[]',
    image_url   TEXT        NOT NULL DEFAULT '',
    -- Lower-cased name and description, what a search looks in.
    search_text TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL
);

CREATE TABLE product_categories (
    product_id TEXT COLLATE "C" NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (product_id, category)
);
-- A category filter is a range scan of this index in product id order.
CREATE INDEX product_categories_category ON product_categories (category, product_id);

-- +goose Down
DROP TABLE product_categories;
DROP TABLE products;
