package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/registry"
)

// Base is what every service process is built on. A service embeds it, and
// its constructor opens through it what the service uses (its database,
// NATS, an outbox), then Listen builds the gRPC server; Run serves, runs the
// components until ctx is cancelled, and closes everything in reverse
// order. Base gives the service its Run, GRPCAddr and HTTPAddr.
//
// A constructor that fails part-way defers CloseOnError, which closes what
// was opened so far. Base is not safe for concurrent use while the service
// is being built.
type Base struct {
	name       string
	log        *slog.Logger
	registry   *prometheus.Registry
	discovery  registry.Registry
	server     *Server
	checks     []namedCheck
	reports    []namedCheck
	components []Component
	closers    Closers
}

type namedCheck struct {
	name  string
	check Check
}

// NewBase starts building the service called name, which logs to logger.
func NewBase(name string, logger *slog.Logger) Base {
	return Base{name: name, log: logger, registry: observability.NewRegistry()}
}

// Registry is where the service's metrics go; /metrics serves it.
func (b *Base) Registry() *prometheus.Registry { return b.registry }

// Discovery opens, the first time, the service registry cfg names (nil
// when it names none); it is closed after everything else.
func (b *Base) Discovery(cfg Config) (registry.Registry, error) {
	if b.discovery != nil || cfg.Registry.Kind == "" {
		return b.discovery, nil
	}
	reg, err := registry.Open(cfg.Registry.WithDefaults(), b.log)
	if err != nil {
		return nil, fmt.Errorf("%s registry: %w", b.name, err)
	}
	b.discovery = reg
	// The registry outlives the connections that resolve through it.
	b.closers.AddLast(reg.Close)
	return reg, nil
}

// DialOptions are what a client of another service needs to resolve
// mercato:/// targets through the registry cfg names (none without one).
func (b *Base) DialOptions(cfg Config) ([]grpc.DialOption, error) {
	reg, err := b.Discovery(cfg)
	if err != nil || reg == nil {
		return nil, err
	}
	return []grpc.DialOption{registry.WithResolver(reg, b.log)}, nil
}

// OpenDB opens the database cfg names, applies migrate to it (the
// service's MigrateDB), and makes it a readiness check; it is closed last.
func (b *Base) OpenDB(ctx context.Context, cfg db.Config, migrate func(context.Context, *db.DB) error) (*db.DB, error) {
	d, err := db.OpenMigrated(ctx, cfg, migrate)
	if err != nil {
		return nil, fmt.Errorf("%s database: %w", b.name, err)
	}
	b.closers.Add(d.Close)
	b.AddCheck("database", d.PingContext)
	return d, nil
}

// ConnectEvents connects to NATS as cfg says, creating the streams; it is
// drained after the components have stopped. The connection is reported
// by /readyz?verbose and the mercato_events_nats_connected gauge but is
// not a readiness check: the service answers its requests while NATS is
// away, its outbox keeps the events and its consumers resume when NATS is
// back, so an outage must not take it out of its callers' balancing.
func (b *Base) ConnectEvents(ctx context.Context, cfg events.Config) (jetstream.JetStream, error) {
	nc, js, err := events.Connect(ctx, cfg, b.name)
	if err != nil {
		return nil, err
	}
	b.closers.Add(func() error { return events.Drain(nc) })
	connected := events.ConnectedCheck(nc)
	b.AddReport("nats", connected)
	b.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mercato", Subsystem: "events", Name: "nats_connected",
		Help: "1 while the process is connected to NATS, 0 while it is not.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	}))
	return js, nil
}

// Outbox returns an outbox in d for events on streams, whose relay to js
// runs as a component.
func (b *Base) Outbox(d *db.DB, js jetstream.JetStream, streams ...events.Stream) *events.Outbox {
	outbox := events.NewOutbox(d, events.PublishesTo(streams...))
	relay := events.NewRelay(outbox, js, b.log, events.WithRelayMetrics(b.registry))
	b.AddComponent(relay.Run)
	return outbox
}

// Listen binds cfg's addresses and returns the gRPC server to register the
// service on, its calls passing the shared interceptor chain and then
// authenticate (auth.UnaryServerInterceptor; nil for none).
func (b *Base) Listen(cfg Config, authenticate grpc.UnaryServerInterceptor) (*grpc.Server, error) {
	var extra []grpc.UnaryServerInterceptor
	if authenticate != nil {
		extra = append(extra, authenticate)
	}
	reg, err := b.Discovery(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := New(b.name, cfg, b.log, b.registry, extra...)
	if err != nil {
		return nil, err
	}
	b.server = srv
	if reg != nil {
		inst := registry.Instance{
			Service:   b.name,
			ID:        cfg.InstanceID,
			GRPCAddr:  advertised(cfg.AdvertiseHost, srv.grpcLis.Addr()),
			AdminAddr: advertised(cfg.AdvertiseHost, srv.httpLis.Addr()),
		}
		if inst.ID == "" {
			host, _ := os.Hostname()
			inst.ID = host + "-" + portOf(srv.grpcLis.Addr())
		}
		srv.Announce(func(ctx context.Context) (func(context.Context) error, error) {
			registration, err := reg.Register(ctx, inst)
			if err != nil {
				return nil, err
			}
			return registration.Deregister, nil
		})
	}
	for _, c := range b.checks {
		srv.AddCheck(c.name, c.check)
	}
	for _, c := range b.reports {
		srv.AddReport(c.name, c.check)
	}
	b.checks, b.reports = nil, nil
	return srv.GRPC(), nil
}

// AddCheck adds a readiness check (see Server.AddCheck).
func (b *Base) AddCheck(name string, c Check) {
	if b.server != nil {
		b.server.AddCheck(name, c)
		return
	}
	b.checks = append(b.checks, namedCheck{name, c})
}

// AddReport adds a dependency /readyz?verbose reports on without making
// the instance unready (see Server.AddReport).
func (b *Base) AddReport(name string, c Check) {
	if b.server != nil {
		b.server.AddReport(name, c)
		return
	}
	b.reports = append(b.reports, namedCheck{name, c})
}

// AddComponent adds background work that Run runs beside the server.
func (b *Base) AddComponent(c Component) { b.components = append(b.components, c) }

// OnClose registers close, called when the service stops (or fails to be
// built) before everything opened earlier.
func (b *Base) OnClose(close func() error) { b.closers.Add(close) }

// Server is the service's server, once Listen has built it.
func (b *Base) Server() *Server { return b.server }

// CloseOnError closes everything opened so far when *err is set; a
// constructor defers it with its named error result.
func (b *Base) CloseOnError(err *error) { b.closers.CloseOnError(err) }

// Run serves until ctx is cancelled, then drains in-flight requests, stops
// the components and closes what the service opened. It returns the error
// that stopped the service, or nil after a graceful stop. Call it once.
func (b *Base) Run(ctx context.Context) error {
	err := b.server.Run(ctx, b.components...)
	if closeErr := b.closers.Close(); closeErr != nil {
		b.log.WarnContext(ctx, "closing resources failed", "service", b.name, "error", closeErr)
	}
	return err
}

// GRPCAddr is the address the gRPC server listens on.
func (b *Base) GRPCAddr() string { return b.server.GRPCAddr() }

// HTTPAddr is the address of the admin HTTP listener (health, metrics).
func (b *Base) HTTPAddr() string { return b.server.HTTPAddr() }
