package adapters_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog/adapters"
)

// redisTestAddr is the Redis server tests use (database 0; every test keeps
// to its own key prefix).
const redisTestAddr = "127.0.0.1:6379"

// redisClient returns a client of the test server, tuned as the service
// tunes its cache's.
func redisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	client := redis.NewClient(adapters.CacheClientOptions(&redis.Options{Addr: addr}, time.Second))
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// redisPrefix returns a key prefix unique to this test and deletes every
// key under it when the test ends.
func redisPrefix(t testing.TB) string {
	t.Helper()
	prefix := "mercato-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		client := redis.NewClient(&redis.Options{Addr: redisTestAddr})
		defer client.Close()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Logf("list test keys: %v", err)
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Logf("delete test keys: %v", err)
			}
		}
	})
	return prefix
}

// testCache is a cache on the test server under a prefix of its own, with
// its metrics in reg.
type testCache struct {
	*adapters.ProductRedisCache
	raw    *redis.Client
	prefix string
	reg    *prometheus.Registry
}

func newTestCache(t testing.TB, opts adapters.CacheOptions) *testCache {
	t.Helper()
	client := redisClient(t, redisTestAddr)
	require.NoError(t, client.Ping(t.Context()).Err(), "Redis must run at %s", redisTestAddr)
	opts.Prefix = redisPrefix(t)
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	cache, err := adapters.NewProductRedisCache(client, opts)
	require.NoError(t, err)
	return &testCache{ProductRedisCache: cache, raw: client, prefix: opts.Prefix, reg: reg}
}

// value is what Redis holds for product id ("" when nothing).
func (c *testCache) value(t *testing.T, id string) string {
	t.Helper()
	v, err := c.raw.Get(t.Context(), c.prefix+"catalog:product:"+id).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	require.NoError(t, err)
	return v
}

// metric sums the samples of the metric called name in reg whose labels
// include labels (name=value pairs).
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// closedAddr is a loopback address nothing listens on: connecting is
// refused at once, as with a Redis that is down.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// silentAddr is a loopback address that accepts connections and never
// answers, as a Redis behind a dropped network does.
func silentAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// logRecorder keeps the messages logged at warn and above.
type logRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return nil
	}
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, b.String())
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) logged() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.messages...)
}
