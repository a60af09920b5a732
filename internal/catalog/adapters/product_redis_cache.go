package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/domain"
)

// Defaults of ProductRedisCache.
const (
	DefaultCacheTTL     = 60 * time.Second
	DefaultCacheTimeout = 100 * time.Millisecond
	// MaxNegativeCacheTTL bounds how long "no such product" is cached: long
	// enough to spare the database the repeated lookups of a product that
	// was deleted while carts and checkouts still name it, short enough
	// that flooding the catalog with random ids keeps few keys in Redis
	// (their rate times this). It can never hide a new product: creating
	// one invalidates its id, and a "no such product" is only ever stored
	// where nothing else is.
	MaxNegativeCacheTTL = 5 * time.Second
	// cacheBypass is how long reads leave Redis alone after it failed, so
	// that an outage costs a timeout once per interval instead of twice per
	// read.
	cacheBypass = time.Second
	// cacheLogInterval is the least time between two logged failures.
	cacheLogInterval = 30 * time.Second
)

// CacheOptions configure a ProductRedisCache.
type CacheOptions struct {
	// Prefix starts every key ("" in production; tests use a unique one).
	Prefix string
	// TTL is how long an entry (and an invalidation's marker) lives.
	// Default DefaultCacheTTL.
	TTL time.Duration
	// Timeout bounds every Redis call. Default DefaultCacheTimeout.
	Timeout time.Duration
	// Logger gets the failures, at most one per 30 s. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the mercato_catalog_cache_* metrics. Nil records
	// them nowhere.
	Registerer prometheus.Registerer
}

// WithDefaults returns o with every unset field filled.
func (o CacheOptions) WithDefaults() CacheOptions {
	if o.TTL == 0 {
		o.TTL = DefaultCacheTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultCacheTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ProductRedisCache is the app.ProductCache in Redis. Each product id has
// one string key, <prefix>catalog:product:<id>, holding one of
//
//	p<version>:<json>  the product at that version
//	n                  there is no such product (lives MaxNegativeCacheTTL at most)
//	t<version>         a change made <version> current; older fills are refused
//
// Both writes are Lua scripts, so the check and the write are one atomic
// step. Invalidate replaces the entry by a marker t<v> unless it already
// holds version v or newer; Fill stores p<v> unless the key holds v or
// newer, or a marker of a later version, and stores n only where the key
// is empty. So a reader that read version 1 from the database, and fills
// after the writer of version 2 invalidated, finds t2 and stores nothing:
// the race of an old fill after an invalidation cannot leave a stale entry
// (as long as the reader fills within TTL of the invalidation, when the
// marker expires; even then the entry only lives for TTL). Markers left by
// late or replayed events do no harm: t<v> never refuses a version >= v.
//
// A Redis failure is a miss, counted and logged, and makes reads bypass
// Redis for a second; invalidations are always attempted.
type ProductRedisCache struct {
	client  redis.UniversalClient
	opts    CacheOptions
	negTTL  time.Duration
	metrics *cacheMetrics
	now     func() time.Time

	bypassUntil atomic.Int64 // unix nanoseconds
	failing     atomic.Bool
	logMu       sync.Mutex
	nextLog     time.Time
	suppressed  int
}

var _ app.ProductCache = (*ProductRedisCache)(nil)

// NewProductRedisCache returns the cache in client. Give it a client of its
// own, made with CacheClientOptions, so that its calls fail fast.
func NewProductRedisCache(client redis.UniversalClient, opts CacheOptions) (*ProductRedisCache, error) {
	opts = opts.WithDefaults()
	metrics, err := newCacheMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &ProductRedisCache{
		client:  client,
		opts:    opts,
		negTTL:  min(opts.TTL, MaxNegativeCacheTTL),
		metrics: metrics,
		now:     time.Now,
	}, nil
}

// CacheClientOptions tunes Redis client options (from redis.ParseURL) for
// a cache: every network step bounded by timeout and no retries (of
// commands or of dials), since a retried cache call costs more than the
// database read it would spare.
func CacheClientOptions(o *redis.Options, timeout time.Duration) *redis.Options {
	o.DialTimeout = timeout
	o.DialerRetries = 1
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	o.PoolTimeout = timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	return o
}

func (c *ProductRedisCache) key(id string) string { return c.opts.Prefix + "catalog:product:" + id }

// Lookup implements app.ProductCache.
func (c *ProductRedisCache) Lookup(ctx context.Context, ids []string) []app.CacheEntry {
	entries := make([]app.CacheEntry, len(ids))
	if c.bypassing() {
		c.metrics.misses.Add(float64(len(ids)))
		return entries
	}
	callCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	values, err := c.get(callCtx, ids)
	if err != nil {
		c.failed(ctx, "lookup", err)
		c.metrics.misses.Add(float64(len(ids)))
		return entries
	}
	c.succeeded(ctx)
	hits := 0
	for i, v := range values {
		e, err := decodeEntry(v)
		if err != nil {
			// Not this program's format (an older or newer release, a key
			// written by hand): a miss, and the fill replaces it.
			c.metrics.errors.WithLabelValues("decode").Inc()
			continue
		}
		entries[i] = e
		if e.State != app.CacheMiss {
			hits++
		}
	}
	c.metrics.hits.Add(float64(hits))
	c.metrics.misses.Add(float64(len(ids) - hits))
	return entries
}

// get returns the values of ids' keys, "" for a key that does not exist.
func (c *ProductRedisCache) get(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 1 {
		v, err := c.client.Get(ctx, c.key(ids[0])).Result()
		if errors.Is(err, redis.Nil) {
			return []string{""}, nil
		}
		return []string{v}, err
	}
	// One GET per key in a pipeline rather than MGET: on Redis Cluster
	// the keys live in different slots.
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, c.key(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	values := make([]string, len(ids))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		values[i] = v
	}
	return values, nil
}

// fillScript stores ARGV[2] under KEYS[1] for ARGV[3] ms unless what is
// there is as new: ARGV[1] is the version of the value, 0 for "no such
// product", which goes only where nothing is.
var fillScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(ARGV[1])
  if v == 0 then return 0 end
  local kind, have = string.match(cur, '^(%a)(%d*)')
  have = tonumber(have)
  if have and ((kind == 'p' and have >= v) or (kind == 't' and have > v)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// invalidateScript puts the marker t<ARGV[1]> under KEYS[1] for ARGV[2] ms
// unless the key already holds that version or a newer one (a product or
// a marker).
var invalidateScript = redis.NewScript(`
local v = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local kind, have = string.match(cur, '^(%a)(%d*)')
  have = tonumber(have)
  if have and (kind == 'p' or kind == 't') and have >= v then return 0 end
end
redis.call('SET', KEYS[1], 't' .. ARGV[1], 'PX', ARGV[2])
return 1
`)

type fill struct {
	id      string
	version int64
	value   string
	ttl     time.Duration
}

// Fill implements app.ProductCache.
func (c *ProductRedisCache) Fill(ctx context.Context, found []domain.Product, missing []string) {
	if c.bypassing() || len(found)+len(missing) == 0 {
		return
	}
	fills := make([]fill, 0, len(found)+len(missing))
	for _, p := range found {
		value, err := encodeProduct(p)
		if err != nil {
			c.metrics.errors.WithLabelValues("encode").Inc()
			continue
		}
		fills = append(fills, fill{id: p.ID, version: p.Version, value: value, ttl: c.opts.TTL})
	}
	for _, id := range missing {
		fills = append(fills, fill{id: id, value: "n", ttl: c.negTTL})
	}
	callCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.fill(callCtx, fills); err != nil {
		c.failed(ctx, "fill", err)
		return
	}
	c.succeeded(ctx)
}

func (c *ProductRedisCache) fill(ctx context.Context, fills []fill) error {
	run := func(s redis.Scripter, f fill) redis.Cmder {
		return fillScript.Run(ctx, s, []string{c.key(f.id)}, f.version, f.value, f.ttl.Milliseconds())
	}
	if len(fills) == 1 {
		return run(c.client, fills[0]).Err()
	}
	// Pipelined, EVALSHA cannot fall back to EVAL by itself: load the
	// script once it is missing (a restarted Redis) and go again.
	for attempt := 0; ; attempt++ {
		cmds, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range fills {
				run(p, f)
			}
			return nil
		})
		if err == nil || attempt > 0 || !hasNoScript(cmds) {
			return err
		}
		if err := fillScript.Load(ctx, c.client).Err(); err != nil {
			return err
		}
	}
}

func hasNoScript(cmds []redis.Cmder) bool {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// Invalidate implements app.ProductCache. It ignores the bypass: a missed
// invalidation is a stale read, a missed lookup only a slower one.
func (c *ProductRedisCache) Invalidate(ctx context.Context, id string, version int64) error {
	callCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	err := invalidateScript.Run(callCtx, c.client, []string{c.key(id)}, version, c.opts.TTL.Milliseconds()).Err()
	if err != nil {
		c.failed(ctx, "invalidate", err)
		return fmt.Errorf("invalidate cached product: %w", err)
	}
	c.succeeded(ctx)
	c.metrics.invalidations.Inc()
	return nil
}

func (c *ProductRedisCache) bypassing() bool {
	return c.now().UnixNano() < c.bypassUntil.Load()
}

// failed counts a failed call, makes reads bypass Redis for a while and
// logs, unless the caller gave up first: a cancelled request says nothing
// about Redis.
func (c *ProductRedisCache) failed(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	c.metrics.errors.WithLabelValues(op).Inc()
	now := c.now()
	c.bypassUntil.Store(now.Add(cacheBypass).UnixNano())

	c.logMu.Lock()
	if now.Before(c.nextLog) {
		c.suppressed++
		c.logMu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.suppressed = 0
	c.nextLog = now.Add(cacheLogInterval)
	c.logMu.Unlock()
	// Only a logged failure is followed by a logged recovery, so a Redis
	// that comes and goes logs two lines per interval, not two per blip.
	c.failing.Store(true)
	c.opts.Logger.WarnContext(ctx, "catalog cache failed, reading from the database",
		"operation", op, "error", err, "failures_not_logged", suppressed)
}

func (c *ProductRedisCache) succeeded(ctx context.Context) {
	if c.failing.Load() && c.failing.CompareAndSwap(true, false) {
		c.opts.Logger.InfoContext(ctx, "catalog cache answers again")
	}
}

// cachedProduct is a product's JSON in the cache; the version is in the
// value's prefix, where the scripts read it.
type cachedProduct struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Categories  []string  `json:"categories"`
	ImageURL    string    `json:"image_url,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func encodeProduct(p domain.Product) (string, error) {
	b, err := json.Marshal(cachedProduct{
		ID: p.ID, SKU: p.SKU, Name: p.Name, Description: p.Description, PriceCents: p.PriceCents,
		Currency: p.Currency, Categories: p.Categories, ImageURL: p.ImageURL,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	})
	if err != nil {
		return "", fmt.Errorf("encode cached product: %w", err)
	}
	return "p" + strconv.FormatInt(p.Version, 10) + ":" + string(b), nil
}

var errCacheFormat = errors.New("cached value in an unknown format")

func decodeEntry(v string) (app.CacheEntry, error) {
	switch {
	case v == "":
		return app.CacheEntry{}, nil
	case v == "n":
		return app.CacheEntry{State: app.CachedAbsent}, nil
	case v[0] == 't':
		return app.CacheEntry{}, nil
	case v[0] != 'p':
		return app.CacheEntry{}, errCacheFormat
	}
	version, data, ok := strings.Cut(v[1:], ":")
	if !ok {
		return app.CacheEntry{}, errCacheFormat
	}
	var cp cachedProduct
	n, err := strconv.ParseInt(version, 10, 64)
	if err != nil || n < 1 {
		return app.CacheEntry{}, errCacheFormat
	}
	if err := json.Unmarshal([]byte(data), &cp); err != nil || cp.ID == "" {
		return app.CacheEntry{}, errCacheFormat
	}
	if cp.Categories == nil {
		cp.Categories = []string{}
	}
	return app.CacheEntry{State: app.CachedProduct, Product: domain.Product{
		ID: cp.ID, SKU: cp.SKU, Name: cp.Name, Description: cp.Description, PriceCents: cp.PriceCents,
		Currency: cp.Currency, Categories: cp.Categories, ImageURL: cp.ImageURL,
		CreatedAt: cp.CreatedAt.UTC(), UpdatedAt: cp.UpdatedAt.UTC(), Version: n,
	}}, nil
}

type cacheMetrics struct {
	hits, misses, invalidations prometheus.Counter
	errors                      *prometheus.CounterVec
}

func newCacheMetrics(reg prometheus.Registerer) (*cacheMetrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "mercato", Subsystem: "catalog_cache", Name: name, Help: help})
	}
	m := &cacheMetrics{
		hits:   counter("hits_total", "Product ids the cache answered (a product, or that there is none)."),
		misses: counter("misses_total", "Product ids read from the database because the cache did not know them or could not be asked."),
		invalidations: counter("invalidations_total",
			"Invalidations applied to the cache, by writes of this replica and by product events."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mercato", Subsystem: "catalog_cache", Name: "errors_total",
			Help: "Failed cache operations (lookup, fill, invalidate; decode, encode for values the cache cannot read or write).",
		}, []string{"operation"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.hits, m.misses, m.invalidations, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register catalog cache metrics: %w", err)
		}
	}
	return m, nil
}
