// Package system is the table of mercato's services: for each one its name,
// how to configure, build and migrate it, whether it keeps data, what it
// calls, the event streams it owns and its public API with the access rules
// of its routes. The binary's serve and migrate commands, `mercato up`, the
// gateway's upstreams, the event streams and the Makefile's generate loop
// all derive from it, so adding a service is its own folder, its proto and
// one entry here.
//
// Each entry reads its service's configuration from a config.Env; only
// cmd/ makes one from the process environment.
package system

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/mercato-dev/mercato/internal/gateway"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Service is one entry of the table.
type Service struct {
	// Name is how the service is known everywhere: `mercato serve <name>`,
	// its database (mercato_<name>), MERCATO_<NAME>_ADDR, its logs and
	// metrics.
	Name string
	// Database says whether the service keeps data of its own (a SQLite
	// file or a PostgreSQL database); a service without one is stateless.
	Database bool
	// Calls are the services it calls over gRPC, each found at
	// MERCATO_<NAME>_ADDR.
	Calls []string
	// Streams are the event streams it publishes to.
	Streams []events.Stream
	// API is its public API as the gateway serves it; nil when it has none.
	API *gateway.API
	// Serve reads the service's configuration from env, builds the service
	// and runs it until ctx is cancelled. A configuration problem is
	// returned as a *config.Error before anything starts.
	Serve func(ctx context.Context, env *config.Env, rt Runtime) error
	// Migrate applies the service's schema migrations to the database env
	// names; nil for a service without a database.
	Migrate func(ctx context.Context, env *config.Env) error
}

// Runtime is what a service gets from the process that runs it.
type Runtime struct {
	Logger *slog.Logger
	// LogOut is the writer under Logger, for a hot path that writes whole
	// log lines itself.
	LogOut io.Writer
}

// Services returns the table, in the order `mercato up` starts the
// services: identity first (every other service verifies tokens with its
// keys), the gateway last.
func Services() []Service {
	backends := []Service{
		identityService(),
		catalogService(),
		inventoryService(),
		cartService(),
		ordersService(),
		paymentsService(),
		notificationsService(),
	}
	return append(backends, gatewayService(backends))
}

// Lookup returns the service called name.
func Lookup(name string) (Service, bool) {
	services := Services()
	i := slices.IndexFunc(services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		return Service{}, false
	}
	return services[i], true
}

// Names returns every service's name, in table order.
func Names() []string {
	var names []string
	for _, s := range Services() {
		names = append(names, s.Name)
	}
	return names
}

// Streams returns every stream of the system: each process makes sure all
// exist, so that a consumer finds the stream it reads even before its
// publisher has ever started.
func Streams() []events.Stream {
	var all []events.Stream
	for _, s := range Services() {
		all = append(all, s.Streams...)
	}
	return all
}

// AddrVar is the variable holding the gRPC target of service, e.g.
// MERCATO_CATALOG_ADDR.
func AddrVar(service string) string {
	return "MERCATO_" + strings.ToUpper(service) + "_ADDR"
}

// defaultTarget is where a neighbour is found in a cluster: its Kubernetes
// service name and the gRPC port.
func defaultTarget(service string) string { return service + ":9090" }

// validator is a service Config.
type validator interface{ Validate() error }

// checked returns every problem with a configuration read from env at
// once: the malformed variables and what the service's Validate reports,
// as one *config.Error naming the service, or nil.
func checked(service string, env *config.Env, cfg validator, more ...error) error {
	if err := config.Join(append([]error{env.Err(), cfg.Validate()}, more...)...); err != nil {
		return fmt.Errorf("%s configuration: %w", service, err)
	}
	return nil
}
