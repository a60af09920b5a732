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

// Service is a running notifications process; its Run, GRPCAddr and
// HTTPAddr come from server.Base. Run serves and consumes until ctx is
// cancelled, then lets the events in hand finish and closes NATS, the sink
// and the database.
type Service struct {
	server.Base
}

// New opens and migrates the database, opens the sink, connects to NATS
// (creating the streams), and starts listening. Nothing is served or
// consumed until Run. On error everything opened so far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifications configuration: %w", err)
	}
	s := &Service{Base: server.NewBase(Name, logger)}
	defer s.CloseOnError(&err)

	d, err := s.OpenDB(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, err
	}
	var sink app.Sink = adapters.NewLogSink(logger)
	if cfg.SinkFile != "" {
		fileSink, err := adapters.OpenFileSink(cfg.SinkFile)
		if err != nil {
			return nil, err
		}
		s.OnClose(fileSink.Close)
		sink = fileSink
	}
	js, err := s.ConnectEvents(ctx, cfg.Events)
	if err != nil {
		return nil, err
	}

	tokenKey := pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger)
	notifications := app.New(adapters.NewNotificationSQLRepository(d), sink, tokenKey)
	handler := ports.EventHandler(notifications)
	for _, cc := range ports.ConsumerConfigs(ports.Retry{}) {
		c, err := events.NewConsumer(d, js, logger, cc, handler, events.WithConsumerMetrics(s.Registry()))
		if err != nil {
			return nil, err
		}
		s.AddComponent(c.Run)
	}

	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger))
	if err != nil {
		return nil, err
	}
	notificationsv1.RegisterNotificationsServiceServer(grpcServer, ports.NewGRPCServer(notifications))
	return s, nil
}
