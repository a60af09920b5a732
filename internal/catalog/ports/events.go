package ports

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// ProductCacheConsumer is the durable consumer through which the catalog
// invalidates its cache on its own product.* events. It is one consumer
// for all replicas, not one per replica: the cache is shared in Redis, so
// one replica dropping an entry drops it for every replica, and no replica
// keeps product state of its own that would need the event too.
const ProductCacheConsumer = "catalog-product-cache"

// ProductCacheConsumerConfig is the consumer's configuration on stream.
// A failed invalidation (Redis unreachable) is retried soon and then for a
// little longer than the default TTL (68 s in all), not for ever: by then
// the entry the event was to drop has expired anyway.
func ProductCacheConsumerConfig(stream string) events.ConsumerConfig {
	return events.ConsumerConfig{
		Name:       ProductCacheConsumer,
		Stream:     stream,
		Subjects:   []string{"product.>"},
		MaxDeliver: 8,
		Backoff: []time.Duration{
			250 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
			10 * time.Second, 20 * time.Second, 30 * time.Second,
		},
		AckWait: 10 * time.Second,
	}
}

// ProductCacheHandler invalidates the cached product an event names. A
// payload without an id or a version is permanent: it goes to the
// dead-letter stream at once.
func ProductCacheHandler(c *app.Catalog) events.Handler {
	return func(ctx context.Context, _ *sql.Tx, msg events.Message) error {
		var ev domain.ProductEvent
		if err := json.Unmarshal(msg.Payload, &ev); err != nil {
			return events.Permanent(fmt.Errorf("decode %s: %w", msg.Subject, err))
		}
		if ev.ID == "" || ev.Version < 1 {
			return events.Permanent(errors.New("decode " + msg.Subject + ": no id or version"))
		}
		return c.ProductChanged(ctx, msg.Subject, ev)
	}
}
