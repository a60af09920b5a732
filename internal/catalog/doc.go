// Package catalog is the catalog service: products, their categories and
// prices, served over gRPC (anyone may read; admins create, update and
// delete) and announced as product.created, product.updated and
// product.deleted events through a transactional outbox.
//
// Decisions a reader may wonder about:
//
//   - SKUs are stored upper-case, so "abc-1" and "ABC-1" are one SKU and the
//     unique index makes that case-insensitive. Currencies are upper-cased
//     too; category slugs are not folded: "Shoes" is rejected, not renamed.
//   - Every update bumps the product's version; its strong ETag is `"v<n>"`,
//     sent as the "etag" response header by GetProduct, CreateProduct and
//     UpdateProduct. UpdateProduct and DeleteProduct honour an "if-match"
//     request header ("*" or a list of ETags): a mismatch is a
//     precondition failure and nothing is written. Writes use optimistic
//     concurrency (UPDATE ... WHERE id = $1 AND version = $2); a write
//     without If-Match that loses a race is re-applied to the newer version,
//     so concurrent partial updates of different fields are never lost.
//   - Listing is keyset-paged by id. Ids are UUIDv7, so id order is creation
//     order, pages never repeat or skip a product when others are added or
//     removed meanwhile, and a page costs an index range scan however deep.
//     The page token names the last id and a hash of the query (q,
//     category), signed with HMAC-SHA256 under Config.PageTokenKey: a forged
//     or edited token, or one replayed with another query, is refused.
//   - Search (q) is a case-insensitive literal substring match over name and
//     description: LIKE over a lower-cased copy (search_text) with %, _ and
//     \ escaped, values always bound as parameters. It scans the table,
//     which suits a catalog of thousands of products; a larger one would add
//     a trigram or full-text index on PostgreSQL.
//   - Categories are stored twice in one transaction: as a JSON array on the
//     product row, so GetProduct is a single primary-key lookup of a
//     prepared statement, and in product_categories(product_id, category),
//     indexed by (category, product_id), for filtering.
//   - Products are deleted for good; product.deleted carries the product as
//     it was.
//   - With Config.Cache.RedisURL set, GetProduct and BatchGetProducts read
//     through Redis (cache-aside, shared by every replica, entries living
//     Config.Cache.TTL); writes never read it, since their versions and
//     If-Match checks must come from the database. A write invalidates the
//     product right after it commits, and one durable consumer of the
//     catalog's own product.* events, shared by all replicas, invalidates
//     again for writes whose own invalidation did not happen (Redis failed
//     for a moment, the process died in between, a replica without the
//     cache). Invalidation leaves a marker naming the first version current
//     after the change, and a fill stores a product only if it is at least
//     that version, both as Lua scripts; so a reader that read the old row
//     before a write commits cannot put it back after the writer
//     invalidated. Unknown ids are cached as such for at most 5s (see
//     adapters.MaxNegativeCacheTTL). Redis is an optimisation, not a
//     dependency: a failure is a miss, reads then skip Redis for a second,
//     and Redis is not a readiness check.
package catalog
