package catalog

import (
	"context"
	"embed"
	"fmt"
	"log/slog"

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
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	c.Events = c.Events.WithDefaults().WithStreams(Streams...)
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
// streams), and starts listening. Nothing is served until Run. On error
// everything opened so far is closed again.
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
	catalog := app.NewCatalog(repo, pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger))
	catalogv1.RegisterCatalogServiceServer(grpcServer, ports.NewGRPCServer(catalog))
	return s, nil
}
