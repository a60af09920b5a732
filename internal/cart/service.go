// Package cart is the cart service: one cart per user, served over gRPC
// (every call acts on the caller's own cart), kept in SQL by default or in
// Redis, and emptied of what was bought when an order of the cart is
// confirmed.
//
// Decisions a reader may wonder about:
//
//   - No request names a user: the cart is always the caller's, so another
//     user's cart is unreachable by construction rather than by a check
//     that could be forgotten.
//   - A line is at most 99 of one product and a cart at most 50 lines. The
//     line limit is enforced atomically by each store (a row lock per cart
//     on PostgreSQL, the write lock on SQLite, a Lua script on Redis).
//   - Adding a product asks the catalog whether it exists (GetProduct,
//     forwarding the caller's token); removing one does not, so a product
//     deleted from the catalog can still be taken out of a cart. Prices are
//     not kept: orders reads current prices at checkout.
//   - order.confirmed takes the ordered quantities out of the buyer's cart
//     rather than emptying it, so what the buyer added or raised after
//     placing the order stays; and only when its from_cart field is true
//     (the order checked out the cart). An order that listed its items
//     itself ("buy now") leaves the cart alone. Each event applies once:
//     in the consumer's transaction on SQL, and through an event marker
//     set in the same Lua script as the change on Redis (see
//     adapters.CartRedisRepository).
package cart

import (
	"context"
	"embed"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/mercato-dev/mercato/internal/cart/adapters"
	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/ports"
	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/resilience"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "cart"

// Config is everything the cart needs to run.
type Config struct {
	Server server.Config
	// DB holds the carts unless RedisURL is set, and in any case the
	// consumer's processed events.
	DB db.Config
	// RedisURL, when set (redis://[user:password@]host:port/db, or
	// rediss:// for TLS), keeps the carts in Redis instead of DB.
	RedisURL string
	// Events is where the cart reads order.confirmed from.
	Events events.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// CatalogAddr is the catalog's gRPC address (host:port, or
	// dns:///name:port to balance over a headless service).
	CatalogAddr string
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	c.Events = c.Events.WithDefaults()
	return c
}

// Validate reports every problem with c, once its defaults are filled, at
// once.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var p config.Problems
	p.Include("server", c.Server.Validate())
	p.Include("database", c.DB.Validate())
	if c.RedisURL != "" {
		// The parse error is not quoted: it may echo a password.
		_, err := redis.ParseURL(c.RedisURL)
		p.Add(err != nil, "Redis URL is not a valid redis:// or rediss:// URL")
	}
	p.Include("events", c.Events.Validate())
	p.Include("keys", c.Keys.Validate())
	p.Add(c.CatalogAddr == "", "catalog address is empty")
	return p.Err()
}

// Migrate applies the cart's schema (and the events schema) to the
// database cfg names and closes it again: what `mercato migrate cart` runs.
// It is idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the cart's migrations and the events schema to an open
// database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate cart: %w", err)
	}
	return nil
}

// Service is a running cart process; its Run, GRPCAddr and HTTPAddr come
// from server.Base. Run serves and consumes until ctx is cancelled, then
// lets the event in hand finish and closes every connection.
type Service struct {
	server.Base
}

// New opens and migrates the database, connects to Redis (when
// configured) and NATS (creating the streams), and starts listening.
// Nothing is served or consumed until Run. On error everything opened so
// far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cart configuration: %w", err)
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
	var repo app.CartRepository = adapters.NewCartSQLRepository(d)
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("parse Redis URL: %w", err)
		}
		redisClient := redis.NewClient(opts)
		s.OnClose(redisClient.Close)
		redisRepo := adapters.NewCartRedisRepository(redisClient, "")
		if err := redisRepo.Ping(ctx); err != nil {
			return nil, err
		}
		s.AddCheck("redis", func(ctx context.Context) error { return redisClient.Ping(ctx).Err() })
		repo = redisRepo
	}

	dialOpts, err := s.DialOptions(cfg.Server)
	if err != nil {
		return nil, err
	}
	catalogConn, err := resilience.Dial("catalog", cfg.CatalogAddr, resilience.Options{Registerer: s.Registry(), DialOptions: dialOpts})
	if err != nil {
		return nil, err
	}
	s.OnClose(catalogConn.Close)
	// The catalog is deliberately not a readiness check: reading, removing
	// and clearing work without it, and adding reports it as unavailable.
	cart := app.NewCart(repo, adapters.NewCatalogGRPCClient(catalogConn))

	consumer, err := events.NewConsumer(d, js, logger, ports.OrderConfirmedConsumerConfig(0),
		ports.OrderConfirmedHandler(cart), events.WithConsumerMetrics(s.Registry()))
	if err != nil {
		return nil, err
	}
	s.AddComponent(consumer.Run)

	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger))
	if err != nil {
		return nil, err
	}
	cartv1.RegisterCartServiceServer(grpcServer, ports.NewGRPCServer(cart))
	return s, nil
}
