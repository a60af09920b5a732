package adapters_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
)

func sampleProduct(t *testing.T) domain.Product {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	p, err := domain.NewProduct(id, domain.ProductInput{
		SKU: "cache-" + id[:8], Name: "Cached kettle", Description: "Boils.\nQuickly, ünïcödé.",
		PriceCents: 2599, Currency: "EUR", Categories: []string{"kitchen", "tea"},
		ImageURL: "https://img.example.com/k.png",
	}, time.Now().UTC().Truncate(time.Microsecond))
	require.NoError(t, err)
	return p
}

// next is p's next version, as an update would make it.
func next(t *testing.T, p domain.Product, name string) domain.Product {
	t.Helper()
	n, err := p.Apply(domain.ProductPatch{Name: &name}, p.UpdatedAt.Add(time.Second))
	require.NoError(t, err)
	return n
}

func lookup(t *testing.T, c app.ProductCache, id string) app.CacheEntry {
	t.Helper()
	return c.Lookup(t.Context(), []string{id})[0]
}

func TestProductRedisCacheEntries(t *testing.T) {
	c := newTestCache(t, adapters.CacheOptions{TTL: 30 * time.Second})
	p, absent := sampleProduct(t), uuid.NewString()

	require.Equal(t, app.CacheMiss, lookup(t, c, p.ID).State)
	c.Fill(t.Context(), []domain.Product{p}, []string{absent})
	got := lookup(t, c, p.ID)
	require.Equal(t, app.CachedProduct, got.State)
	require.Equal(t, p, got.Product, "the product comes back exactly as stored")
	require.Equal(t, app.CachedAbsent, lookup(t, c, absent).State)

	ttl, err := c.raw.PTTL(t.Context(), c.prefix+"catalog:product:"+p.ID).Result()
	require.NoError(t, err)
	require.True(t, ttl > 25*time.Second && ttl <= 30*time.Second, "entry TTL %s", ttl)
	ttl, err = c.raw.PTTL(t.Context(), c.prefix+"catalog:product:"+absent).Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= adapters.MaxNegativeCacheTTL, "negative TTL %s", ttl)

	noCats := sampleProduct(t)
	noCats.Categories, noCats.Description, noCats.ImageURL = []string{}, "", ""
	other := uuid.NewString()
	c.Fill(t.Context(), []domain.Product{noCats}, nil)
	entries := c.Lookup(t.Context(), []string{other, noCats.ID, p.ID, absent})
	require.Equal(t, []app.CacheEntry{{}, {State: app.CachedProduct, Product: noCats}, got, {State: app.CachedAbsent}}, entries)

	require.Equal(t, float64(2+3), metric(t, c.reg, "mercato_catalog_cache_hits_total"))
	require.Equal(t, float64(1+1), metric(t, c.reg, "mercato_catalog_cache_misses_total"))
	require.Zero(t, metric(t, c.reg, "mercato_catalog_cache_errors_total"))

	require.NoError(t, c.raw.Set(t.Context(), c.prefix+"catalog:product:"+other, "p1:{not json", time.Minute).Err())
	require.Equal(t, app.CacheMiss, lookup(t, c, other).State, "a value it cannot read is a miss")
	require.Equal(t, float64(1), metric(t, c.reg, "mercato_catalog_cache_errors_total", "operation", "decode"))
}

// TestProductRedisCacheRefusesStaleFills plays the races between readers
// filling what they read and writers invalidating, one step at a time.
func TestProductRedisCacheRefusesStaleFills(t *testing.T) {
	c := newTestCache(t, adapters.CacheOptions{})
	v1 := sampleProduct(t)
	v2 := next(t, v1, "Second")
	v3 := next(t, v2, "Third")
	fill := func(p ...domain.Product) { c.Fill(t.Context(), p, nil) }

	fill(v1)
	require.NoError(t, c.Invalidate(t.Context(), v1.ID, 2))
	require.Equal(t, app.CacheMiss, lookup(t, c, v1.ID).State, "an update drops the entry")
	require.Equal(t, "t2", c.value(t, v1.ID))

	fill(v1)
	require.Equal(t, app.CacheMiss, lookup(t, c, v1.ID).State,
		"a reader that read version 1 before the update and fills after its invalidation stores nothing")
	c.Fill(t.Context(), nil, []string{v1.ID})
	require.Equal(t, app.CacheMiss, lookup(t, c, v1.ID).State, "nor does a reader that found nothing")

	fill(v2)
	require.Equal(t, v2, lookup(t, c, v1.ID).Product, "a read of the current version fills")
	fill(v1)
	require.Equal(t, v2, lookup(t, c, v1.ID).Product, "an older read filling late leaves the newer entry")
	for _, version := range []int64{2, 1} {
		require.NoError(t, c.Invalidate(t.Context(), v1.ID, version))
		require.Equal(t, v2, lookup(t, c, v1.ID).Product, "a late or replayed event for version %d keeps version 2", version)
	}

	require.NoError(t, c.Invalidate(t.Context(), v1.ID, 3))
	fill(v3)
	require.Equal(t, v3, lookup(t, c, v1.ID).Product)

	// Deleting version 3 makes version 4 the first current one, which no
	// read will ever find.
	require.NoError(t, c.Invalidate(t.Context(), v1.ID, 4))
	fill(v3)
	c.Fill(t.Context(), nil, []string{v1.ID})
	require.Equal(t, app.CacheMiss, lookup(t, c, v1.ID).State, "after a delete nothing read before it is stored")
	ttl, err := c.raw.PTTL(t.Context(), c.prefix+"catalog:product:"+v1.ID).Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= adapters.DefaultCacheTTL, "the marker expires: %s", ttl)

	// Found products replace "no such product": the read that found one is
	// the newer news.
	fresh := sampleProduct(t)
	c.Fill(t.Context(), nil, []string{fresh.ID})
	require.Equal(t, app.CachedAbsent, lookup(t, c, fresh.ID).State)
	fill(fresh)
	require.Equal(t, fresh, lookup(t, c, fresh.ID).Product)

	require.Equal(t, float64(5), metric(t, c.reg, "mercato_catalog_cache_invalidations_total"))
}

func TestProductRedisCacheFillsBatchesAfterScriptFlush(t *testing.T) {
	c := newTestCache(t, adapters.CacheOptions{})
	a, b := sampleProduct(t), sampleProduct(t)
	// A restarted Redis has forgotten the scripts; the batch fill, which
	// pipelines EVALSHA, must load them again. (Flushing is harmless to
	// anyone else using the server: a script run alone falls back to EVAL.)
	require.NoError(t, c.raw.ScriptFlush(t.Context()).Err())
	c.Fill(t.Context(), []domain.Product{a, b}, []string{uuid.NewString()})
	entries := c.Lookup(t.Context(), []string{a.ID, b.ID})
	require.Equal(t, a, entries[0].Product)
	require.Equal(t, b, entries[1].Product)
	require.Zero(t, metric(t, c.reg, "mercato_catalog_cache_errors_total"))
}

// TestProductRedisCacheUnavailable: with Redis gone every lookup is a
// miss, failures are counted, logged once per interval, and reads leave
// Redis alone for a second after a failure.
func TestProductRedisCacheUnavailable(t *testing.T) {
	logs := &logRecorder{}
	c, reg := cacheAt(t, closedAddr(t), adapters.CacheOptions{Logger: slog.New(logs)})
	now := time.Now()
	var clock sync.Mutex
	adapters.SetCacheClock(c, func() time.Time { clock.Lock(); defer clock.Unlock(); return now })
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	p := sampleProduct(t)

	require.Equal(t, []app.CacheEntry{{}, {}}, c.Lookup(t.Context(), []string{p.ID, uuid.NewString()}))
	require.Equal(t, float64(1), metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "lookup"))
	require.Equal(t, float64(2), metric(t, reg, "mercato_catalog_cache_misses_total"))

	c.Fill(t.Context(), []domain.Product{p}, nil)
	require.Equal(t, app.CacheMiss, lookup(t, c, p.ID).State)
	require.Zero(t, metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "fill"), "within the bypass, fills skip Redis")
	require.Equal(t, float64(1), metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "lookup"), "and so do lookups")
	require.Equal(t, float64(3), metric(t, reg, "mercato_catalog_cache_misses_total"))

	require.Error(t, c.Invalidate(t.Context(), p.ID, 2), "an invalidation is always tried, and says it failed")
	require.Equal(t, float64(1), metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "invalidate"))

	advance(2 * time.Second)
	lookup(t, c, p.ID)
	require.Equal(t, float64(2), metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "lookup"), "past the bypass, Redis is tried again")
	require.Len(t, logs.logged(), 1, "three failures in 30 s, one line: %v", logs.logged())

	advance(time.Minute)
	lookup(t, c, p.ID)
	lines := logs.logged()
	require.Len(t, lines, 2)
	require.Contains(t, lines[1], "failures_not_logged=2")

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	advance(2 * time.Second)
	require.Equal(t, app.CacheMiss, c.Lookup(canceled, []string{p.ID})[0].State)
	require.Equal(t, float64(3), metric(t, reg, "mercato_catalog_cache_errors_total", "operation", "lookup"),
		"a caller that gave up is not a Redis failure")
}

// TestProductRedisCacheTimesOut: a Redis that accepts connections and
// never answers costs a read the cache's timeout, not the client's
// defaults (seconds, with retries).
func TestProductRedisCacheTimesOut(t *testing.T) {
	const timeout = 50 * time.Millisecond
	c, reg := cacheAt(t, silentAddr(t), adapters.CacheOptions{Timeout: timeout})

	start := time.Now()
	require.Equal(t, app.CacheMiss, lookup(t, c, uuid.NewString()).State)
	require.Error(t, c.Invalidate(t.Context(), uuid.NewString(), 2))
	require.Less(t, time.Since(start), time.Second, "two calls to a silent Redis")
	require.Equal(t, float64(2), metric(t, reg, "mercato_catalog_cache_errors_total"))
}

// cacheAt is a cache of the Redis at addr, its metrics in the registry
// returned.
func cacheAt(t *testing.T, addr string, opts adapters.CacheOptions) (*adapters.ProductRedisCache, *prometheus.Registry) {
	t.Helper()
	opts = opts.WithDefaults()
	client := redis.NewClient(adapters.CacheClientOptions(&redis.Options{Addr: addr}, opts.Timeout))
	t.Cleanup(func() { _ = client.Close() })
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	c, err := adapters.NewProductRedisCache(client, opts)
	require.NoError(t, err)
	return c, reg
}
