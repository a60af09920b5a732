// Package notifications is the notifications service: it turns the events
// a customer should hear about (user.registered, order.confirmed,
// order.cancelled, order.refunded, order.rejected) into messages, delivers
// them through a sink, and lists each user's own over gRPC.
//
// Decisions a reader may wonder about:
//
//   - Exactly one notification per event: the consumer claims the event id
//     in processed_events, the notification (unique by event id) is
//     inserted and the sink called in that same transaction, and only then
//     does it commit. A redelivery after the commit is skipped before the
//     handler runs, so it sends nothing.
//   - Between a successful send and the commit there is an at-least-once
//     window (a crash, a failed commit): the event is handled again and
//     the sink called again. The sink is therefore told the event id and
//     must deliver it once (the file sink skips ids it already holds); the
//     log sink may repeat a line, which is harmless.
//   - A sink failure fails the handler: the event is retried with backoff
//     and, after the consumer's MaxDeliver attempts, dead-lettered to
//     dlq.<subject>. Nothing is recorded for it until a delivery succeeds.
//   - Names and emails come from user.registered and are remembered, since
//     order events carry no name and not always an email.
//   - Listing is keyset-paged by id (UUIDv7, so newest first is id order)
//     with an HMAC-signed page token bound to the caller. Everyone, admins
//     included, sees only the notifications sent to them.
package notifications

import (
	"context"
	"embed"
	"fmt"
	"log/slog"

	notificationsv1 "github.com/mercato-dev/mercato/internal/gen/notifications/v1"
	"github.com/mercato-dev/mercato/internal/notifications/adapters"
	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "notifications"

// Config is everything notifications needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// Events is where notifications reads the events it turns into
	// messages.
	Events events.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// SinkFile, when set, is a file every notification is appended to as a
	// JSON line (created if missing); otherwise notifications are logged.
	SinkFile string
	// PageTokenKey signs list page tokens (HMAC-SHA256), at least 16 bytes.
	// Empty means a random key per process: fine for one replica, but set
	// it (the same on every replica) when running several.
	PageTokenKey string
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
	p.Include("events", c.Events.Validate())
	p.Include("keys", c.Keys.Validate())
	p.Include("page tokens", pagination.ValidateKey(c.PageTokenKey))
	return p.Err()
}

// Migrate applies the notifications' schema (and the events schema) to the
// database cfg names and closes it again: what `mercato migrate
// notifications` runs. It is idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the notifications' migrations and the events schema to
// an open database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate notifications: %w", err)
	}
	return nil
}

// Service is a running notifications process.
type Service struct {
	server    *server.Server
	consumers []*events.Consumer
	closers   server.Closers
	log       *slog.Logger
}

// New opens and migrates the database, opens the sink, connects to NATS
// (creating the streams), and starts listening. Nothing is served or
// consumed until Run. On error everything opened so far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifications configuration: %w", err)
	}
	s := &Service{log: logger}
	defer s.closers.CloseOnError(&err)

	d, err := db.OpenMigrated(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, fmt.Errorf("notifications database: %w", err)
	}
	s.closers.Add(d.Close)

	var sink app.Sink = adapters.NewLogSink(logger)
	if cfg.SinkFile != "" {
		fileSink, err := adapters.OpenFileSink(cfg.SinkFile)
		if err != nil {
			return nil, err
		}
		s.closers.Add(fileSink.Close)
		sink = fileSink
	}

	nc, js, err := events.Connect(ctx, cfg.Events, Name)
	if err != nil {
		return nil, err
	}
	s.closers.Add(func() error { return events.Drain(nc) })

	tokenKey := pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger)
	notifications := app.New(adapters.NewNotificationSQLRepository(d), sink, tokenKey)

	reg := observability.NewRegistry()
	handler := ports.EventHandler(notifications)
	for _, cc := range ports.ConsumerConfigs(ports.Retry{}) {
		c, err := events.NewConsumer(d, js, logger, cc, handler, events.WithConsumerMetrics(reg))
		if err != nil {
			return nil, err
		}
		s.consumers = append(s.consumers, c)
	}

	verifier, _ := cfg.Keys.NewVerifier()
	s.server, err = server.New(Name, cfg.Server, logger, reg, auth.UnaryServerInterceptor(verifier, logger))
	if err != nil {
		return nil, err
	}
	notificationsv1.RegisterNotificationsServiceServer(s.server.GRPC(), ports.NewGRPCServer(notifications))
	s.server.AddCheck("database", d.PingContext)
	s.server.AddCheck("nats", events.ConnectedCheck(nc))
	return s, nil
}

// Run serves and consumes until ctx is cancelled, then drains in-flight
// requests, lets the events in hand finish, and closes the sink, NATS and
// the database. It returns the error that stopped the service, or nil
// after a graceful stop. Call it once.
func (s *Service) Run(ctx context.Context) error {
	components := make([]server.Component, len(s.consumers))
	for i, c := range s.consumers {
		components[i] = c.Run
	}
	err := s.server.Run(ctx, components...)
	if closeErr := s.closers.Close(); closeErr != nil {
		s.log.WarnContext(ctx, "closing notifications resources failed", "error", closeErr)
	}
	return err
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Service) GRPCAddr() string { return s.server.GRPCAddr() }

// HTTPAddr is the address of the admin HTTP listener (health, metrics).
func (s *Service) HTTPAddr() string { return s.server.HTTPAddr() }
