// Package orders is the orders service: it takes orders (an append-only
// event stream per order, with a read model) and runs the checkout saga
// against inventory and payments until every order is confirmed, rejected
// or cancelled, announcing order.* events through a transactional outbox.
package orders

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	ordersv1 "github.com/mercato-dev/mercato/internal/gen/orders/v1"
	paymentsv1 "github.com/mercato-dev/mercato/internal/gen/payments/v1"
	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/orders/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
	"github.com/mercato-dev/mercato/internal/platform/resilience"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics, service tokens and the gRPC
// health protocol.
const Name = "orders"

// Defaults and limits of Config.
const (
	DefaultSagaDeadline = app.DefaultSagaDeadline
	DefaultSagaWorkers  = app.DefaultSagaWorkers
	// DefaultIdempotencyKeyTTL is how long an Idempotency-Key is remembered.
	DefaultIdempotencyKeyTTL = app.DefaultIdempotencyKeyTTL
	MaxSagaWorkers           = 1024
	// reservationGrace is how much longer than the saga deadline inventory
	// holds stock for an order: the hold only has to outlive a saga that
	// stopped (crashed) mid-way, which then resumes and releases it itself.
	reservationGrace = 2 * time.Minute
)

// CrashBeforePrefix marks a CrashAfter point between a neighbour call and
// the append recording it ("before:StockReserved").
const CrashBeforePrefix = "before:"

// Neighbours are the clients of the services orders depends on. A nil
// field is dialled from its address in Config; tests set fakes.
type Neighbours struct {
	Catalog   app.Catalog
	Cart      app.Cart
	Inventory app.Inventory
	Payments  app.Payments
}

// Streams are the JetStream streams orders publishes its events to.
var Streams = []events.Stream{{Name: "ORDERS", Domain: "order", Description: "orders events"}}

// Config is everything the orders service needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// Events is where the order.* events go (its Streams are added).
	Events events.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// CatalogAddr, CartAddr, InventoryAddr and PaymentsAddr are the gRPC
	// targets of the neighbours (host:port, or dns:///name:port), needed
	// unless the matching Neighbours field is set.
	CatalogAddr   string
	CartAddr      string
	InventoryAddr string
	PaymentsAddr  string
	// IdentityAddr is identity's gRPC target, where the service token for
	// inventory and payments is obtained with ServiceSecret. Not needed
	// when ServiceToken is set or both of those neighbours are injected.
	IdentityAddr  string
	ServiceSecret string
	// SagaDeadline is how long a checkout may take before the stock
	// commit; past it the order is undone. Default 30s.
	SagaDeadline time.Duration
	// SagaWorkers is how many orders the saga advances at once. Default 32.
	SagaWorkers int
	// SagaPollInterval is how often the saga looks for due retries and
	// orders left by a stopped replica. Default 1s.
	SagaPollInterval time.Duration
	// InstanceID names this replica in saga leases; it must differ between
	// live replicas. Default: the host name. A replica restarted under the
	// same id resumes its orders at once.
	InstanceID string
	// IdempotencyKeyTTL is how long an Idempotency-Key is remembered.
	// Default 24h; 1m to 30 days.
	IdempotencyKeyTTL time.Duration
	// PageTokenKey signs list page tokens (HMAC-SHA256), at least 16 bytes.
	// Empty means a random key per process: set it, the same on every
	// replica, when there is more than one.
	PageTokenKey string
	// CrashAfter is a test-only fault: the process kills itself (SIGKILL)
	// right after the transaction appending this event type commits, or,
	// prefixed with "before:", right after the neighbour call whose
	// outcome that event records. Empty disables it.
	CrashAfter string

	// Neighbours, when set, replaces dialled clients (tests).
	Neighbours Neighbours
	// ServiceToken, when set, obtains the service token instead of
	// identity (tests).
	ServiceToken auth.FetchToken
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	c.Events = c.Events.WithDefaults().WithStreams(Streams...)
	if c.SagaDeadline == 0 {
		c.SagaDeadline = DefaultSagaDeadline
	}
	if c.SagaWorkers == 0 {
		c.SagaWorkers = DefaultSagaWorkers
	}
	if c.SagaPollInterval == 0 {
		c.SagaPollInterval = app.DefaultPollInterval
	}
	if c.IdempotencyKeyTTL == 0 {
		c.IdempotencyKeyTTL = DefaultIdempotencyKeyTTL
	}
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
	target := func(name, addr string, injected bool) {
		if injected {
			return
		}
		p.Add(addr == "", "%s address is empty", name)
		p.Add(strings.ContainsFunc(addr, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }),
			"%s address %q contains whitespace", name, addr)
	}
	target("catalog", c.CatalogAddr, c.Neighbours.Catalog != nil)
	target("cart", c.CartAddr, c.Neighbours.Cart != nil)
	target("inventory", c.InventoryAddr, c.Neighbours.Inventory != nil)
	target("payments", c.PaymentsAddr, c.Neighbours.Payments != nil)
	if c.ServiceToken == nil && (c.Neighbours.Inventory == nil || c.Neighbours.Payments == nil) {
		target("identity", c.IdentityAddr, false)
		p.Add(c.ServiceSecret == "", "service secret is empty (needed to call inventory and payments)")
	}
	p.Add(c.SagaDeadline < time.Second || c.SagaDeadline > time.Hour, "saga deadline must be between 1s and 1h")
	p.Add(c.IdempotencyKeyTTL < time.Minute || c.IdempotencyKeyTTL > 30*24*time.Hour, "idempotency key TTL must be between 1m and 720h")
	p.Add(c.SagaWorkers < 1 || c.SagaWorkers > MaxSagaWorkers, "saga workers must be between 1 and %d", MaxSagaWorkers)
	p.Add(c.SagaPollInterval < 0, "saga poll interval must not be negative")
	p.Include("page tokens", pagination.ValidateKey(c.PageTokenKey))
	p.Add(c.CrashAfter != "" && !domain.KnownEventType(strings.TrimPrefix(c.CrashAfter, CrashBeforePrefix)),
		"crash-after fault %q is not an event type (optionally prefixed with %q)", c.CrashAfter, CrashBeforePrefix)
	return p.Err()
}

// Migrate applies the orders schema (and the outbox's) to the database cfg
// names and closes it again: what `mercato migrate orders` runs. It is
// idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the orders migrations and the events schema to an open
// database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := events.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate orders: %w", err)
	}
	return nil
}

// Service is a running orders process.
type Service struct {
	server  *server.Server
	relay   *events.Relay
	saga    *app.Saga
	orders  *app.Orders
	closers server.Closers
	log     *slog.Logger
}

// New opens and migrates the database, connects to NATS (creating the
// streams), dials the neighbours and starts listening. Nothing is served
// and no saga runs until Run. On error everything opened so far is closed
// again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("orders configuration: %w", err)
	}
	s := &Service{log: logger}
	defer s.closers.CloseOnError(&err)

	d, err := db.OpenMigrated(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, fmt.Errorf("orders database: %w", err)
	}
	s.closers.Add(d.Close)

	nc, js, err := events.Connect(ctx, cfg.Events, Name)
	if err != nil {
		return nil, err
	}
	s.closers.Add(func() error { return events.Drain(nc) })

	reg := observability.NewRegistry()
	outbox := events.NewOutbox(d, events.PublishesTo(Streams...))
	s.relay = events.NewRelay(outbox, js, logger, events.WithRelayMetrics(reg))
	repo := adapters.NewOrderSQLRepository(d, outbox)

	nb, err := dialNeighbours(cfg, reg, &s.closers)
	if err != nil {
		return nil, err
	}

	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = Name
		}
	}
	tokenKey := pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger)
	fault := crashHook(cfg.CrashAfter, logger)
	if fault != nil {
		logger.WarnContext(ctx, "fault injection armed: the process will kill itself", "crash_after", cfg.CrashAfter)
	}
	s.saga = app.NewSaga(repo, nb.Inventory, nb.Payments, logger, app.SagaConfig{
		InstanceID: instance, Workers: cfg.SagaWorkers, PollInterval: cfg.SagaPollInterval,
		ReservationTTL: cfg.SagaDeadline + reservationGrace, Fault: fault, Registerer: reg,
	})
	s.orders = app.NewOrders(repo, nb.Catalog, nb.Cart, nb.Payments, s.saga, logger, app.OrdersConfig{
		SagaDeadline: cfg.SagaDeadline, PageTokenKey: tokenKey, Fault: fault, IdempotencyKeyTTL: cfg.IdempotencyKeyTTL,
	})

	verifier, _ := cfg.Keys.NewVerifier()
	s.server, err = server.New(Name, cfg.Server, logger, reg, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	ordersv1.RegisterOrdersServiceServer(s.server.GRPC(), ports.NewGRPCServer(s.orders))
	s.server.AddCheck("database", d.PingContext)
	s.server.AddCheck("nats", events.ConnectedCheck(nc))
	// The neighbours are deliberately not readiness checks: one that is
	// down fails only the requests that need it (placing an order asks the
	// catalog and payments, 503 while they cannot answer), and the saga
	// waits for it.
	return s, nil
}

// dialNeighbours returns the neighbour clients: the injected ones, and
// resilient gRPC clients for the rest. Inventory and payments are called on
// the service's own behalf with a service token from identity; the cart is
// read with the user's token, which its client forwards. Every connection
// it opens is added to closers.
func dialNeighbours(cfg Config, reg prometheus.Registerer, closers *server.Closers) (Neighbours, error) {
	nb := cfg.Neighbours
	dial := func(name, target string, interceptors ...grpc.UnaryClientInterceptor) (*grpc.ClientConn, error) {
		conn, err := resilience.Dial(name, target, resilience.Options{Registerer: reg, Interceptors: interceptors})
		if err != nil {
			return nil, err
		}
		closers.Add(conn.Close)
		return conn, nil
	}
	if nb.Catalog == nil {
		conn, err := dial("catalog", cfg.CatalogAddr)
		if err != nil {
			return nb, err
		}
		nb.Catalog = adapters.NewCatalogGRPCClient(catalogv1.NewCatalogServiceClient(conn))
	}
	if nb.Cart == nil {
		conn, err := dial("cart", cfg.CartAddr)
		if err != nil {
			return nb, err
		}
		nb.Cart = adapters.NewCartGRPCClient(cartv1.NewCartServiceClient(conn))
	}
	if nb.Inventory != nil && nb.Payments != nil {
		return nb, nil
	}
	fetch := cfg.ServiceToken
	if fetch == nil {
		conn, err := dial("identity", cfg.IdentityAddr)
		if err != nil {
			return nb, err
		}
		identity := identityv1.NewIdentityServiceClient(conn)
		fetch = func(ctx context.Context) (string, time.Duration, error) {
			pair, err := identity.IssueServiceToken(ctx, &identityv1.IssueServiceTokenRequest{
				ClientId: Name, ClientSecret: cfg.ServiceSecret,
			})
			if err != nil {
				return "", 0, fmt.Errorf("issue service token: %w", err)
			}
			return pair.GetAccessToken(), time.Duration(pair.GetExpiresIn()) * time.Second, nil
		}
	}
	serviceToken := auth.NewTokenSource(fetch).UnaryClientInterceptor()
	if nb.Inventory == nil {
		conn, err := dial("inventory", cfg.InventoryAddr, serviceToken)
		if err != nil {
			return nb, err
		}
		nb.Inventory = adapters.NewInventoryGRPCClient(inventoryv1.NewInventoryServiceClient(conn))
	}
	if nb.Payments == nil {
		conn, err := dial("payments", cfg.PaymentsAddr, serviceToken)
		if err != nil {
			return nb, err
		}
		nb.Payments = adapters.NewPaymentsGRPCClient(paymentsv1.NewPaymentsServiceClient(conn))
	}
	return nb, nil
}

// crashHook returns the CrashAfter fault, or nil when none is set.
func crashHook(point string, logger *slog.Logger) app.FaultHook {
	if point == "" {
		return nil
	}
	return func(at string) error {
		if at != point {
			return nil
		}
		logger.Warn("fault injection: killing the process", "point", at)
		killSelf()
		return errors.New("process killed by fault injection")
	}
}

// Run serves until ctx is cancelled, then drains in-flight requests, lets
// running saga steps finish, stops the outbox relay and closes the
// connections and the database. It returns the error that stopped the
// service, or nil after a graceful stop. Call it once.
func (s *Service) Run(ctx context.Context) error {
	err := s.server.Run(ctx, s.relay.Run, s.saga.Run, server.Every(s.orders.KeyRetentionInterval(), s.orders.RetainKeys))
	if closeErr := s.closers.Close(); closeErr != nil {
		s.log.WarnContext(ctx, "closing orders resources failed", "error", closeErr)
	}
	return err
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Service) GRPCAddr() string { return s.server.GRPCAddr() }

// HTTPAddr is the address of the admin HTTP listener (health, metrics).
func (s *Service) HTTPAddr() string { return s.server.HTTPAddr() }
