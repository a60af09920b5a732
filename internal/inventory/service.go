// Package inventory is the inventory service: stock per sku and the
// reservations orders hold against it, with expiry, served over gRPC.
// Admins read and set stock (GetStock, SetStock); mercato's services, and
// admins, reserve, commit, release and restock (every other RPC). No method
// is open to anonymous callers.
//
// A sku's stock is on_hand (units for sale, the reserved ones included),
// reserved (held by live reservations), available = on_hand - reserved, and
// sold (committed, net of restocks). 0 ≤ reserved ≤ on_hand and sold ≥ 0
// hold under any concurrency, on both engines; only SetStock changes
// on_hand + sold. A sku never stocked reads as zeros.
//
// Every reservation call is idempotent by order id, and an order id has at
// most one reservation, ever:
//
//	reserved ──commit──▶ committed ──restock──▶ restocked
//	    │
//	    ├──release──▶ released
//	    └──(expiry)─▶ expired
//
// Repeating a call whose move is already made answers the reservation
// unchanged; a move from a status that does not allow it is a conflict.
// ReserveStock for an order that already has a reservation returns it as it
// is, whatever its status (a conflict if it was for other lines). Releasing
// an order with no reservation records a released one without lines, so a
// ReserveStock that arrives after its own compensation holds nothing: the
// caller must look at the status it gets back. A reservation past its
// expiry cannot be committed, even before the background sweep reaches it.
//
// The service publishes no events: nothing else needs to know about stock
// for the system to be correct, and the orders saga learns every outcome
// from the RPC's answer. Every change to a stock row is recorded in the
// stock_movements ledger in the same transaction.
package inventory

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"time"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/inventory/adapters"
	"github.com/mercato-dev/mercato/internal/inventory/app"
	"github.com/mercato-dev/mercato/internal/inventory/domain"
	"github.com/mercato-dev/mercato/internal/inventory/ports"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

//go:embed migrations
var migrations embed.FS

// Name is the service's name in logs, metrics and the gRPC health protocol.
const Name = "inventory"

// Defaults of the service-specific settings.
const (
	DefaultReservationTTL      = 15 * time.Minute
	DefaultExpirySweepInterval = 5 * time.Second
)

// Bounds of the expiry sweep interval.
const (
	MinExpirySweepInterval = 100 * time.Millisecond
	MaxExpirySweepInterval = time.Hour
)

// Config is everything the inventory needs to run.
type Config struct {
	Server server.Config
	DB     db.Config
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// ReservationTTL is how long a reservation holds stock when ReserveStock
	// gives no ttl (DefaultReservationTTL when 0), at most 24h. It must be
	// longer than the orders saga takes from reserving to committing, or
	// a slow checkout loses its stock and is refused at commit.
	ReservationTTL time.Duration
	// ExpirySweepInterval is how often overdue reservations are released
	// (DefaultExpirySweepInterval when 0), 100ms to 1h. Stock held by an
	// abandoned checkout comes back at most this long after it expires.
	ExpirySweepInterval time.Duration
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	c.Server = c.Server.WithDefaults()
	if c.ReservationTTL == 0 {
		c.ReservationTTL = DefaultReservationTTL
	}
	if c.ExpirySweepInterval == 0 {
		c.ExpirySweepInterval = DefaultExpirySweepInterval
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
	p.Include("keys", c.Keys.Validate())
	p.Add(c.ReservationTTL < time.Second || c.ReservationTTL > domain.MaxTTL,
		"reservation TTL must be between 1s and %s, got %s", domain.MaxTTL, c.ReservationTTL)
	p.Add(c.ExpirySweepInterval < MinExpirySweepInterval || c.ExpirySweepInterval > MaxExpirySweepInterval,
		"expiry sweep interval must be between %s and %s, got %s",
		MinExpirySweepInterval, MaxExpirySweepInterval, c.ExpirySweepInterval)
	return p.Err()
}

// Migrate applies the inventory's schema to the database cfg names and
// closes it again: what `mercato migrate inventory` runs. It is idempotent.
func Migrate(ctx context.Context, cfg db.Config) error {
	return db.MigrateAndClose(ctx, cfg, MigrateDB)
}

// MigrateDB applies the inventory's migrations to an open database.
func MigrateDB(ctx context.Context, d *db.DB) error {
	if err := db.Migrate(ctx, d, migrations); err != nil {
		return fmt.Errorf("migrate inventory: %w", err)
	}
	return nil
}

// Service is a running inventory process; its Run, GRPCAddr and HTTPAddr
// come from server.Base. Besides the API, Run runs the expiry sweep.
type Service struct {
	server.Base
}

// New opens and migrates the database and starts listening. Nothing is
// served, and no reservation expired, until Run. On error everything
// opened so far is closed again.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("inventory configuration: %w", err)
	}
	s := &Service{Base: server.NewBase(Name, logger)}
	defer s.CloseOnError(&err)

	d, err := s.OpenDB(ctx, cfg.DB, MigrateDB)
	if err != nil {
		return nil, err
	}
	metrics, err := app.NewMetrics(s.Registry())
	if err != nil {
		return nil, fmt.Errorf("register inventory metrics: %w", err)
	}
	inv := app.NewInventory(adapters.NewStockSQLRepository(d), cfg.ReservationTTL, metrics)
	s.AddComponent(ports.NewExpirySweeper(inv, cfg.ExpirySweepInterval, logger).Run)

	verifier, _ := cfg.Keys.NewVerifier()
	grpcServer, err := s.Listen(cfg.Server, auth.UnaryServerInterceptor(verifier, logger, ports.PublicMethods...))
	if err != nil {
		return nil, err
	}
	inventoryv1.RegisterInventoryServiceServer(grpcServer, ports.NewGRPCServer(inv))
	return s, nil
}
