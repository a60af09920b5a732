package catalog

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/ports"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "catalog"

// Streams are the JetStream streams the catalog publishes its events to.
var Streams = []events.Stream{{Name: "PRODUCTS", Domain: "product", Description: "catalog events"}}

// Config is everything the catalog needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// Events is where the catalog's events go (its Streams are added).
	Events events.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// PageTokenKey signs list page tokens (HMAC-SHA256), at least 16 bytes.
	// Empty means a random key per process: fine for one replica, but with
	// several, a token issued by one replica is refused by the others and
	// every restart invalidates the tokens in flight, so set it (the same on
	// every replica) in any deployment with more than one.
	PageTokenKey string
	// Cache, when its RedisURL is set, keeps the products GetProduct and
	// BatchGetProducts read in Redis, shared by every replica.
	Cache CacheConfig
}

// Defaults of CacheConfig.
const (
	DefaultCacheTTL     = adapters.DefaultCacheTTL
	DefaultCacheTimeout = adapters.DefaultCacheTimeout
)

// CacheConfig is the catalog's Redis cache of product reads.
type CacheConfig struct {
	// RedisURL (redis://[user:password@]host:port/db, or rediss:// for
	// TLS) turns the cache on; empty leaves it off.
	RedisURL string
	// TTL is how long a product stays cached: the staleness a lost
	// invalidation can cause at most. Default 60s.
	TTL time.Duration
	// Timeout bounds every Redis call, which is what a Redis outage adds
	// to a read (once a second; in between reads skip Redis). Default
	// 100ms.
	Timeout time.Duration
	// KeyPrefix starts every key ("" in production; tests use a unique
	// one).
	KeyPrefix string
}

// WithDefaults returns c with every unset field filled.
func (c CacheConfig) WithDefaults() CacheConfig {
	if c.TTL == 0 {
		c.TTL = DefaultCacheTTL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultCacheTimeout
	}
	return c
}

// Validate reports every problem with c at once; a cache that is off has
// none.
func (c CacheConfig) Validate() error {
	if c.RedisURL == "" {
		return nil
	}
	c = c.WithDefaults()
	var p config.Problems
	// The parse error is not quoted: it may echo a password.
	_, err := redis.ParseURL(c.RedisURL)
	p.Add(err != nil, "Redis URL is not a valid redis:// or rediss:// URL")
	p.Add(c.TTL < time.Second || c.TTL > 24*time.Hour, "cache TTL %s is not between 1s and 24h", c.TTL)
	p.Add(c.Timeout < time.Millisecond || c.Timeout > 10*time.Second, "cache timeout %s is not between 1ms and 10s", c.Timeout)
	return p.Err()
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	c.Events = c.Events.WithDefaults().WithStreams(Streams...)
	c.Cache = c.Cache.WithDefaults()
	return c
}

// Validate reports every problem with c, once its defaults are filled, at
// once.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var p config.Problems
	p.Include("server", c.Server.Validate())
	p.Include("database", c.DB.Validate())
	p.Include("events", c.Events.Validate())
	p.Include("keys", c.Keys.Validate())
	p.Include("page tokens", pagination.ValidateKey(c.PageTokenKey))
	p.Include("cache", c.Cache.Validate())
	return p.Err()
}

// Migrate applies the catalog's schema (and the outbox's) to the database
// cfg names and closes it again: what `mercato migrate catalog` runs. It is
// idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the catalog's migrations and the events schema to an
// open database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	return nil
}

// Service is a running catalog process; its Run, GRPCAddr and HTTPAddr
// come from server.Base.
type Service struct {
	server.Base
}

// New opens and migrates the database, connects to NATS (creating the
// streams) and, when configured, to Redis, and starts listening. Nothing
// is served or consumed until Run. On error everything opened so far is
// closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("catalog configuration: %w", err)
	}
	s := &Service{Base: server.NewBase(Name, logger)}
	defer s.CloseOnError(&err)

	d, err := s.OpenDB(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, err
	}
	js, err := s.ConnectEvents(ctx, cfg.Events)
	if err != nil {
		return nil, err
	}
	repo, err := adapters.NewProductSQLRepository(ctx, d, s.Outbox(d, js, Streams...))
	if err != nil {
		return nil, err
	}
	s.OnClose(repo.Close)

	// The key source's readiness is deliberately not a check: reads are
	// public and must keep working while identity is down.
	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	var opts []app.Option
	if cfg.Cache.RedisURL != "" {
		cache, err := s.openCache(ctx, cfg.Cache, logger)
		if err != nil {
			return nil, err
		}
		opts = append(opts, app.WithCache(cache))
	}
	catalog := app.NewCatalog(repo, pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger), opts...)
	if cfg.Cache.RedisURL != "" {
		consumer, err := events.NewConsumer(d, js, logger, ports.ProductCacheConsumerConfig(Streams[0].Name),
			ports.ProductCacheHandler(catalog), events.WithConsumerMetrics(s.Registry()))
		if err != nil {
			return nil, err
		}
		s.AddComponent(consumer.Run)
	}
	catalogv1.RegisterCatalogServiceServer(grpcServer, ports.NewGRPCServer(catalog))
	return s, nil
}

// openCache makes the Redis client of the product cache. Redis is
// deliberately not a readiness check, and an unreachable Redis does not
// stop the catalog from starting: every read is answered from the
// database without it, so a replica taken out of rotation for Redis would
// turn a slower catalog into none at all.
func (s *Service) openCache(ctx context.Context, cfg CacheConfig, logger *slog.Logger) (*adapters.ProductRedisCache, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, errors.New("parse Redis URL: not a valid redis:// or rediss:// URL")
	}
	client := redis.NewClient(adapters.CacheClientOptions(opts, cfg.Timeout))
	s.OnClose(client.Close)
	pingCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		logger.WarnContext(ctx, "catalog cache unreachable at start, reading from the database until it answers", "error", err)
	}
	return adapters.NewProductRedisCache(client, adapters.CacheOptions{
		Prefix: cfg.KeyPrefix, TTL: cfg.TTL, Timeout: cfg.Timeout, Logger: logger, Registerer: s.Registry(),
	})
}
