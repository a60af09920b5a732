-- +goose Up
-- ids are UUIDv7 strings: ORDER BY id (binary collation) is creation order.
-- Times are UTC text, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', fixed width so they sort.
CREATE TABLE products (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- Stored upper-case, so uniqueness is case-insensitive.
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    currency    TEXT    NOT NULL,
    -- JSON array of the category slugs, so a read is one row; filtering uses
    -- product_categories.
    categories  TEXT    NOT NULL DEFAULT '[]',
    image_url   TEXT    NOT NULL DEFAULT '',
    -- Lower-cased name and description, what a search looks in.
    search_text TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    version     INTEGER NOT NULL
);

CREATE TABLE product_categories (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category   TEXT NOT NULL,
    PRIMARY KEY (product_id, category)
) WITHOUT ROWID;
-- A category filter is a range scan of this index in product id order.
CREATE INDEX product_categories_category ON product_categories (category, product_id);

-- +goose Down
DROP TABLE product_categories;
DROP TABLE products;
