// Package orders is the orders service: it takes orders (an append-only
// event stream per order, with a read model) and runs the checkout saga
// against inventory and payments until every order is confirmed, rejected
// or cancelled, announcing order.* events through a transactional outbox.
package orders

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	MinPageTokenKeyLength    = 16
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

// Config is everything the orders service needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// NATSURL is the NATS server (or a comma-separated list of them) whose
	// JetStream receives the order.* events.
	NATSURL string
	// JWKSURL is where identity publishes the public keys that sign access
	// tokens. Not needed when Keys is set.
	JWKSURL string
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
	// StreamReplicas is how many copies JetStream keeps of each stream: 1
	// for a single NATS server (the default when 0), 3 on a cluster.
	StreamReplicas int

	// Keys, when set, verifies access tokens instead of fetching JWKSURL.
	Keys auth.KeySource
	// Neighbours, when set, replaces dialled clients (tests).
	Neighbours Neighbours
	// ServiceToken, when set, obtains the service token instead of
	// identity (tests).
	ServiceToken auth.FetchToken
}

func (c Config) withDefaults() Config {
	if c.SagaDeadline == 0 {
		c.SagaDeadline = DefaultSagaDeadline
	}
	if c.SagaWorkers == 0 {
		c.SagaWorkers = DefaultSagaWorkers
	}
	if c.SagaPollInterval == 0 {
		c.SagaPollInterval = app.DefaultPollInterval
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.IdempotencyKeyTTL == 0 {
		c.IdempotencyKeyTTL = DefaultIdempotencyKeyTTL
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	c = c.withDefaults()
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
	p.Add(c.PageTokenKey != "" && len(c.PageTokenKey) < MinPageTokenKeyLength,
		"page token key must be at least %d bytes", MinPageTokenKeyLength)
	p.Add(c.CrashAfter != "" && !domain.KnownEventType(strings.TrimPrefix(c.CrashAfter, CrashBeforePrefix)),
		"crash-after fault %q is not an event type (optionally prefixed with %q)", c.CrashAfter, CrashBeforePrefix)
	p.Add(c.StreamReplicas < 1 || c.StreamReplicas > 5, "stream replicas must be between 1 and 5")
	return p.Err()
}

// Migrate applies the orders schema (and the outbox's) to cfg.DB and closes
// it again: what `mercato migrate orders` runs. It is idempotent.
func Migrate(ctx context.Context, cfg Config) error {
	d, err := db.Open(ctx, cfg.DB)
	if err != nil {
		return fmt.Errorf("open orders database: %w", err)
	}
	defer d.Close()
	return MigrateDB(ctx, d)
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
	server *server.Server
	relay  *events.Relay
	saga   *app.Saga
	orders *app.Orders
	conns  []*grpc.ClientConn
	nc     *nats.Conn
	db     *db.DB
	log    *slog.Logger
}

// New opens and migrates the database, connects to NATS (creating the
// streams), dials the neighbours and starts listening. Nothing is served
// and no saga runs until Run. On error everything opened so far is closed
// again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("orders config: %w", err)
	}
	cfg = cfg.withDefaults()
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
		return nil, fmt.Errorf("open orders database: %w", err)
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
	repo := adapters.NewOrderSQLRepository(d, outbox)

	nb, conns, err := dialNeighbours(cfg, reg)
	closers = append(closers, func() { _ = closeConns(conns) })
	if err != nil {
		return nil, err
	}

	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = Name
		}
	}
	tokenKey := []byte(cfg.PageTokenKey)
	if len(tokenKey) == 0 {
		tokenKey = []byte(rand.Text())
		logger.WarnContext(ctx, "page token key not set, using a random one: page tokens will not survive a restart or work across replicas")
	}
	fault := crashHook(cfg.CrashAfter, logger)
	if fault != nil {
		logger.WarnContext(ctx, "fault injection armed: the process will kill itself", "crash_after", cfg.CrashAfter)
	}
	saga := app.NewSaga(repo, repo, nb.Inventory, nb.Payments, logger, app.SagaConfig{
		InstanceID: instance, Workers: cfg.SagaWorkers, PollInterval: cfg.SagaPollInterval,
		ReservationTTL: cfg.SagaDeadline + reservationGrace, Fault: fault, Registerer: reg,
	})
	orders := app.NewOrders(repo, repo, nb.Catalog, nb.Cart, nb.Payments, saga, logger, app.OrdersConfig{
		SagaDeadline: cfg.SagaDeadline, PageTokenKey: tokenKey, Fault: fault, IdempotencyKeyTTL: cfg.IdempotencyKeyTTL,
	})

	keys := cfg.Keys
	if keys == nil {
		keys = auth.NewJWKSCache(cfg.JWKSURL, nil)
	}
	verifier := auth.NewVerifier(keys, auth.DefaultIssuer, auth.DefaultAudience)
	srv, err := server.New(Name, cfg.Server, logger, reg, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	ordersv1.RegisterOrdersServiceServer(srv.GRPC(), ports.NewGRPCServer(orders))
	srv.AddCheck("database", d.PingContext)
	srv.AddCheck("nats", events.ConnectedCheck(nc))
	// The neighbours are deliberately not readiness checks: one that is
	// down fails only the requests that need it (placing an order asks the
	// catalog and payments, 503 while they cannot answer), and the saga
	// waits for it.

	return &Service{server: srv, relay: relay, saga: saga, orders: orders, conns: conns, nc: nc, db: d, log: logger}, nil
}

// dialNeighbours returns the neighbour clients: the injected ones, and
// resilient gRPC clients for the rest. Inventory and payments are called on
// the service's own behalf with a service token from identity; the cart is
// read with the user's token, which its client forwards.
func dialNeighbours(cfg Config, reg prometheus.Registerer) (Neighbours, []*grpc.ClientConn, error) {
	nb := cfg.Neighbours
	var conns []*grpc.ClientConn
	dial := func(name, target string, interceptors ...grpc.UnaryClientInterceptor) (*grpc.ClientConn, error) {
		conn, err := resilience.Dial(name, target, resilience.Options{Registerer: reg, Interceptors: interceptors})
		if err != nil {
			return nil, err
		}
		conns = append(conns, conn)
		return conn, nil
	}
	if nb.Catalog == nil {
		conn, err := dial("catalog", cfg.CatalogAddr)
		if err != nil {
			return nb, conns, err
		}
		nb.Catalog = adapters.NewCatalogGRPCClient(catalogv1.NewCatalogServiceClient(conn))
	}
	if nb.Cart == nil {
		conn, err := dial("cart", cfg.CartAddr)
		if err != nil {
			return nb, conns, err
		}
		nb.Cart = adapters.NewCartGRPCClient(cartv1.NewCartServiceClient(conn))
	}
	if nb.Inventory != nil && nb.Payments != nil {
		return nb, conns, nil
	}
	fetch := cfg.ServiceToken
	if fetch == nil {
		conn, err := dial("identity", cfg.IdentityAddr)
		if err != nil {
			return nb, conns, err
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
			return nb, conns, err
		}
		nb.Inventory = adapters.NewInventoryGRPCClient(inventoryv1.NewInventoryServiceClient(conn))
	}
	if nb.Payments == nil {
		conn, err := dial("payments", cfg.PaymentsAddr, serviceToken)
		if err != nil {
			return nb, conns, err
		}
		nb.Payments = adapters.NewPaymentsGRPCClient(paymentsv1.NewPaymentsServiceClient(conn))
	}
	return nb, conns, nil
}

func closeConns(conns []*grpc.ClientConn) error {
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
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
	closeErr := errors.Join(closeConns(s.conns), events.Drain(s.nc), s.db.Close())
	if closeErr != nil {
		s.log.WarnContext(ctx, "closing orders resources failed", "error", closeErr)
	}
	return err
}

// GRPCAddr is the address the gRPC server listens on.
func (s *Service) GRPCAddr() string { return s.server.GRPCAddr() }

// HTTPAddr is the address of the admin HTTP listener (health, metrics).
func (s *Service) HTTPAddr() string { return s.server.HTTPAddr() }
