package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
)

// ProcessedEventTTL is how long the Redis repository remembers that it applied
// an order.confirmed event: longer than the ORDERS stream keeps messages
// (7 days), so no redelivery can outlive its marker.
const ProcessedEventTTL = 8 * 24 * time.Hour

// CartRedisRepository is the app.CartRepository on Redis. A cart is two
// keys:
//
//	<prefix>cart:{<user_id>}        hash   product_id → quantity
//	<prefix>cart:{<user_id>}:order  zset   product_id scored by position
//
// The braces are a Redis Cluster hash tag: all of a user's keys live in one
// slot, so the Lua scripts below may touch them together. Every write is a
// single script or MULTI/EXEC, hence atomic: the 50-line limit is checked
// and the line added in one script, so concurrent adds cannot overfill a
// cart.
//
// Applying an order.confirmed event is made idempotent here, in Redis,
// rather than only by the consumer's processed_events row in SQL: the cart
// lives in Redis and the row in the SQL transaction, and no transaction
// spans both. If the SQL commit failed after the Redis change (a crash, a
// lost connection), the redelivered event would take the ordered
// quantities out a second time — removing what the user re-added. So the
// script that changes the cart also claims the event id (SET NX with
// ProcessedEventTTL) in the same atomic step, and does nothing when the id
// was already claimed.
type CartRedisRepository struct {
	client redis.UniversalClient
	prefix string
}

var _ app.CartRepository = (*CartRedisRepository)(nil)

// NewCartRedisRepository returns the repository over client, its keys starting
// with prefix ("" in production; tests use a unique one).
func NewCartRedisRepository(client redis.UniversalClient, prefix string) *CartRedisRepository {
	return &CartRedisRepository{client: client, prefix: prefix}
}

func (r *CartRedisRepository) itemsKey(userID string) string {
	return r.prefix + "cart:{" + userID + "}"
}

func (r *CartRedisRepository) orderKey(userID string) string {
	return r.itemsKey(userID) + ":order"
}

func (r *CartRedisRepository) eventKey(userID, eventID string) string {
	return r.itemsKey(userID) + ":event:" + eventID
}

// Items implements app.CartRepository.
func (r *CartRedisRepository) Items(ctx context.Context, userID string) ([]domain.Item, error) {
	var (
		order      *redis.StringSliceCmd
		quantities *redis.MapStringStringCmd
	)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		order = p.ZRange(ctx, r.orderKey(userID), 0, -1)
		quantities = p.HGetAll(ctx, r.itemsKey(userID))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read cart from redis: %w", err)
	}
	byProduct := quantities.Val()
	items := make([]domain.Item, 0, len(byProduct))
	for _, productID := range order.Val() {
		raw, ok := byProduct[productID]
		if !ok {
			continue
		}
		q, err := strconv.Atoi(raw)
		if err != nil {
			return nil, fmt.Errorf("cart of %s holds quantity %q for %s: %w", userID, raw, productID, err)
		}
		items = append(items, domain.Item{ProductID: productID, Quantity: q})
	}
	return items, nil
}

// setQuantityScript sets a line, appending it after the highest position
// when it is new, unless the cart already has the most lines allowed.
// KEYS: items, order. ARGV: product id, quantity, line limit.
// Returns 1 when set, 0 when the cart is full.
var setQuantityScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local position = 1
if #last == 2 then
  position = tonumber(last[2]) + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], position, ARGV[1])
return 1
`)

// SetQuantity implements app.CartRepository.
func (r *CartRedisRepository) SetQuantity(ctx context.Context, userID, productID string, quantity int) error {
	set, err := setQuantityScript.Run(ctx, r.client,
		[]string{r.itemsKey(userID), r.orderKey(userID)},
		productID, quantity, domain.MaxDistinctItems).Int()
	if err != nil {
		return fmt.Errorf("set cart item in redis: %w", err)
	}
	if set == 0 {
		return domain.ErrCartFull
	}
	return nil
}

// Remove implements app.CartRepository.
func (r *CartRedisRepository) Remove(ctx context.Context, userID, productID string) error {
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, r.itemsKey(userID), productID)
		p.ZRem(ctx, r.orderKey(userID), productID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cart item from redis: %w", err)
	}
	return nil
}

// Clear implements app.CartRepository.
func (r *CartRedisRepository) Clear(ctx context.Context, userID string) error {
	if err := r.client.Del(ctx, r.itemsKey(userID), r.orderKey(userID)).Err(); err != nil {
		return fmt.Errorf("clear cart in redis: %w", err)
	}
	return nil
}

// removeOrderedScript claims an event id and, only if it was not claimed
// before, reduces the ordered lines.
// KEYS: items, order, event marker. ARGV: marker TTL in ms, then pairs of
// product id and ordered quantity (0: remove the line).
// Returns 1 when applied, 0 when the event had been applied already.
var removeOrderedScript = redis.NewScript(`
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then
  return 0
end
for i = 2, #ARGV, 2 do
  local product = ARGV[i]
  local ordered = tonumber(ARGV[i + 1])
  local have = tonumber(redis.call('HGET', KEYS[1], product))
  if have then
    if ordered <= 0 or have <= ordered then
      redis.call('HDEL', KEYS[1], product)
      redis.call('ZREM', KEYS[2], product)
    else
      redis.call('HSET', KEYS[1], product, have - ordered)
    end
  end
end
return 1
`)

// RemoveOrdered implements app.CartRepository. tx is not used: see the
// type's comment for how an event is applied at most once.
func (r *CartRedisRepository) RemoveOrdered(ctx context.Context, _ *sql.Tx, eventID, userID string, ordered []domain.Item) error {
	if eventID == "" {
		return errors.New("remove ordered items: empty event id")
	}
	args := make([]any, 0, 1+2*len(ordered))
	args = append(args, ProcessedEventTTL.Milliseconds())
	for _, it := range ordered {
		args = append(args, it.ProductID, it.Quantity)
	}
	err := removeOrderedScript.Run(ctx, r.client,
		[]string{r.itemsKey(userID), r.orderKey(userID), r.eventKey(userID, eventID)}, args...).Err()
	if err != nil {
		return fmt.Errorf("remove ordered items in redis: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers, for the readiness check.
func (r *CartRedisRepository) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}
