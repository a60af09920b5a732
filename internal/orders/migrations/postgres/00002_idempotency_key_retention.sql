-- +goose Up
-- Keys older than the retention are deleted in created_at order.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at;
