// Package payments is the payments service: it authorizes, captures, voids
// and refunds payments through a card provider (an in-process fake with
// Stripe-style test tokens and fault knobs), over gRPC for mercato's own
// services and admins, and lets an order's owner list its payments. Every
// status change is announced as a payment.* event through a transactional
// outbox. Card data is never stored.
package payments

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/payments/adapters"
	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "payments"

// MaxProviderLatency is the largest ProviderLatency accepted.
const MaxProviderLatency = 30 * time.Second

// Streams are the JetStream streams payments publishes its events to.
var Streams = []events.Stream{{Name: "PAYMENTS", Domain: "payment", Description: "payments events"}}

// Config is everything the payments service needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// Events is where the payment.* events go (its Streams are added).
	Events events.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// ProviderLatency is added to every call to the fake card provider
	// (0 to 30s): a fault knob.
	ProviderLatency time.Duration
	// ProviderFailureRate is the share of provider calls, in [0, 1], that
	// fail as unavailable: a fault knob.
	ProviderFailureRate float64
	// ProviderSeed seeds the failure draws, so a run fails the same calls
	// every time; 0 picks a random seed.
	ProviderSeed uint64
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
	p.Add(c.ProviderLatency < 0 || c.ProviderLatency > MaxProviderLatency,
		"provider latency %s must be between 0s and %s", c.ProviderLatency, MaxProviderLatency)
	// Written so that NaN fails too.
	p.Add(!(c.ProviderFailureRate >= 0 && c.ProviderFailureRate <= 1),
		"provider failure rate %v must be between 0 and 1", c.ProviderFailureRate)
	return p.Err()
}

// Migrate applies the payments schema (and the outbox's) to the database
// cfg names and closes it again: what `mercato migrate payments` runs. It
// is idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the payments migrations and the events schema to an
// open database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate payments: %w", err)
	}
	return nil
}

// Service is a running payments process; its Run, GRPCAddr and HTTPAddr
// come from server.Base.
type Service struct {
	server.Base
	provider *adapters.FakeProvider
}

// New opens and migrates the database, connects to NATS (creating the
// streams), and starts listening. Nothing is served until Run. On error
// everything opened so far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("payments configuration: %w", err)
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
	metrics, err := adapters.NewMetrics(s.Registry())
	if err != nil {
		return nil, err
	}
	repo := adapters.NewPaymentSQLRepository(d, s.Outbox(d, js, Streams...))

	seed := cfg.ProviderSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.provider = adapters.NewFakeProvider(adapters.FakeProviderConfig{
		Latency: cfg.ProviderLatency, FailureRate: cfg.ProviderFailureRate, Seed: seed,
	})
	if cfg.ProviderLatency > 0 || cfg.ProviderFailureRate > 0 {
		logger.InfoContext(ctx, "payment provider fault knobs set",
			"latency", cfg.ProviderLatency, "failure_rate", cfg.ProviderFailureRate, "seed", seed)
	}

	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	payments := app.NewPayments(repo, metrics.InstrumentProvider(s.provider), metrics)
	paymentsv1.RegisterPaymentsServiceServer(grpcServer, ports.NewGRPCServer(payments))
	return s, nil
}

// Provider is the service's fake card provider, for tests that count its
// calls or switch it down (SetDown) to simulate an outage.
func (s *Service) Provider() *adapters.FakeProvider { return s.provider }
