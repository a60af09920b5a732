package catalog

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/nats-io/nats.go"

	"github.com/mercato-dev/mercato/internal/catalog/adapters"
	"github.com/mercato-dev/mercato/internal/catalog/app"
	"github.com/mercato-dev/mercato/internal/catalog/ports"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "catalog"

// MinPageTokenKeyLength is the shortest PageTokenKey accepted, in bytes.
const MinPageTokenKeyLength = 16

// Config is everything the catalog needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// NATSURL is the NATS server (or a comma-separated list of them) whose
	// JetStream receives the catalog's events.
	NATSURL string
	// JWKSURL is where identity publishes the public keys that sign access
	// tokens. Not needed when Keys is set.
	JWKSURL string
	// PageTokenKey signs list page tokens (HMAC-SHA256), at least 16 bytes.
	// Empty means a random key per process: fine for one replica, but with
	// several, a token issued by one replica is refused by the others and
	// every restart invalidates the tokens in flight, so set it (the same on
	// every replica) in any deployment with more than one.
	PageTokenKey string
	// StreamReplicas is how many copies JetStream keeps of each stream: 1
	// for a single NATS server (the default when 0), 3 on a cluster.
	StreamReplicas int
	// Keys, when set, verifies access tokens instead of fetching JWKSURL
	// (tests, or a deployment that distributes keys another way).
	Keys auth.KeySource
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Include("server", c.Server.Defaults().Validate())
	p.Include("database", c.DB.Validate())
	p.Add(c.NATSURL == "", "NATS URL is empty")
	if c.Keys == nil {
		u, err := url.Parse(c.JWKSURL)
		p.Add(c.JWKSURL == "", "JWKS URL is empty")
		p.Add(c.JWKSURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == ""),
			"JWKS URL %q is not an absolute http(s) URL", c.JWKSURL)
	}
	p.Add(c.PageTokenKey != "" && len(c.PageTokenKey) < MinPageTokenKeyLength,
		"page token key must be at least %d bytes", MinPageTokenKeyLength)
	p.Add(c.StreamReplicas < 0 || c.StreamReplicas > 5, "stream replicas must be between 1 and 5")
	return p.Err()
}

// Migrate applies the catalog's schema (and the outbox's) to cfg.DB and
// closes it again: what `mercato migrate catalog` runs. It is idempotent.
func Migrate(ctx context.Context, cfg Config) error {
	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return fmt.Errorf("open catalog database: %w", err)
	}
	defer d.Close()
	return MigrateDB(ctx, d)
}

// MigrateDB applies the catalog's migrations and the events schema to an
// open database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate catalog: %w", err)
	}
	return nil
}

// Service is a running catalog process.
type Service struct {
	server *server.Server
	relay  *events.Relay
	repo   *adapters.ProductSQLRepository
	nc     *nats.Conn
	db     *db.DB
	log    *slog.Logger
}

// New opens and migrates the database, connects to NATS (creating the
// streams), and starts listening. Nothing is served until Run. On error
// everything opened so far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("catalog config: %w", err)
	}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("open catalog database: %w", err)
	}
	closers = append(closers, func() { _ = d.Close() })
	if err := MigrateDB(ctx, d); err != nil {
		return nil, err
	}

	nc, js, err := events.Connect(ctx, cfg.NATSURL, Name, cfg.StreamReplicas)
	if err != nil {
		return nil, err
	}
	closers = append(closers, nc.Close)

	reg := observability.NewRegistry()
	outbox := events.NewOutbox(d)
	relay := events.NewRelay(outbox, js, logger, events.WithRelayMetrics(reg))
	repo, err := adapters.NewProductSQLRepository(ctx, d, outbox)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = repo.Close() })

	tokenKey := []byte(cfg.PageTokenKey)
	if len(tokenKey) == 0 {
		tokenKey = []byte(rand.Text())
		logger.WarnContext(ctx, "page token key not set, using a random one: page tokens will not survive a restart or work across replicas")
	}
	keys := cfg.Keys
	if keys == nil {
		keys = auth.NewJWKSCache(cfg.JWKSURL, nil)
	}
	verifier := auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience)

	srv, err := server.New(Name, cfg.Server, logger, reg, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	catalogv1.RegisterCatalogServiceServer(srv.GRPC(), ports.NewGRPCServer(app.NewCatalog(repo, tokenKey)))
	srv.AddCheck("database", d.PingContext)
	srv.AddCheck("nats", events.ConnectedCheck(nc))
	// The JWKS is deliberately not a readiness check: reads are public and
	// must keep working while identity is down.

	return &Service{server: srv, relay: relay, repo: repo, nc: nc, db: d, log: logger}, nil
}

// Run serves until ctx is cancelled, then drains in-flight requests, stops
// the outbox relay and closes NATS and the database. It returns the error
// that stopped the service, or nil after a graceful stop. Call it once.
func (s *Service) Run(ctx context.Context) error {
	err := s.server.Run(ctx, s.relay.Run)
	closeErr := errors.Join(s.repo.Close(), events.Drain(s.nc), s.db.Close())
	if closeErr != nil {
		s.log.WarnContext(ctx, "closing catalog resources failed", "error", closeErr)
	}
	return err
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Service) GRPCAddr() string { return s.server.GRPCAddr() }

// HTTPAddr is the address of the admin HTTP listener (health, metrics).
func (s *Service) HTTPAddr() string { return s.server.HTTPAddr() }
