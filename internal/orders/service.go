// Package orders is the orders service: it takes orders (an append-only
// event stream per order, with a read model) and runs the checkout saga
// against inventory and payments until every order is confirmed, rejected
// or cancelled (or, when its payment cannot be returned, needs an
// operator's attention), announcing order.* events through a
// transactional outbox.
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
	// DefaultSagaStuckAfter is how long an order's saga may record nothing
	// before the order counts as stuck.
	DefaultSagaStuckAfter = app.DefaultStuckAfter
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
	// SagaStuckAfter is how long an order whose saga still has work to do
	// may record no event before it is logged (once), counted in
	// mercato_orders_stuck and listed for admins. Default 2m; 1s to 24h.
	SagaStuckAfter time.Duration
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
	if c.SagaStuckAfter == 0 {
		c.SagaStuckAfter = DefaultSagaStuckAfter
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
	p.Add(c.SagaStuckAfter < time.Second || c.SagaStuckAfter > 24*time.Hour, "saga stuck threshold must be between 1s and 24h")
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

// Service is a running orders process; its Run, GRPCAddr and HTTPAddr
// come from server.Base. Besides the API, Run runs the outbox relay, the
// saga and the retention of idempotency keys; when it stops, running saga
// steps finish before the connections and the database are closed.
type Service struct {
	server.Base
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
	repo := adapters.NewOrderSQLRepository(d, s.Outbox(d, js, Streams...))
	// The neighbours are deliberately not readiness checks: one that is
	// down fails only the requests that need it (placing an order asks the
	// catalog and payments, 503 while they cannot answer), and the saga
	// waits for it.
	dialOpts, err := s.DialOptions(cfg.Server)
	if err != nil {
		return nil, err
	}
	nb, err := dialNeighbours(cfg, s.Registry(), dialOpts, s.OnClose)
	if err != nil {
		return nil, err
	}

	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = Name
		}
	}
	fault := crashHook(cfg.CrashAfter, logger)
	if fault != nil {
		logger.WarnContext(ctx, "fault injection armed: the process will kill itself", "crash_after", cfg.CrashAfter)
	}
	saga := app.NewSaga(repo, repo, nb.Inventory, nb.Payments, logger, app.SagaConfig{
		InstanceID: instance, Workers: cfg.SagaWorkers, PollInterval: cfg.SagaPollInterval,
		ReservationTTL: cfg.SagaDeadline + reservationGrace, StuckAfter: cfg.SagaStuckAfter,
		Fault: fault, Registerer: s.Registry(),
	})
	orders := app.NewOrders(repo, repo, nb.Catalog, nb.Cart, nb.Payments, saga, logger, app.OrdersConfig{
		SagaDeadline: cfg.SagaDeadline, PageTokenKey: pagination.KeyOrRandom(ctx, cfg.PageTokenKey, logger),
		Fault: fault, IdempotencyKeyTTL: cfg.IdempotencyKeyTTL,
	})
	s.AddComponent(saga.Run)
	s.AddComponent(server.Every(orders.KeyRetentionInterval(), orders.RetainKeys))

	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	ordersv1.RegisterOrdersServiceServer(grpcServer, ports.NewGRPCServer(orders))
	return s, nil
}

// dialNeighbours returns the neighbour clients: the injected ones, and
// resilient gRPC clients for the rest. Inventory and payments are called on
// the service's own behalf with a service token from identity; the cart is
// read with the user's token, which its client forwards. Every connection
// it opens is handed to onClose.
func dialNeighbours(cfg Config, reg prometheus.Registerer, dialOpts []grpc.DialOption, onClose func(func() error)) (Neighbours, error) {
	nb := cfg.Neighbours
	dial := func(name, target string, interceptors ...grpc.UnaryClientInterceptor) (*grpc.ClientConn, error) {
		conn, err := resilience.Dial(name, target, resilience.Options{Registerer: reg, Interceptors: interceptors, DialOptions: dialOpts})
		if err != nil {
			return nil, err
		}
		onClose(conn.Close)
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
