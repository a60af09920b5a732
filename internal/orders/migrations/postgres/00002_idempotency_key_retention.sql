-- +goose NO TRANSACTION
-- +goose Up
-- Keys older than the retention are deleted in created_at order. Built
-- CONCURRENTLY so that placing orders is not blocked while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_created_at;
