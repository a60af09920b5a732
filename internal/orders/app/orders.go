// Package app holds the orders use cases (place, read, list, cancel) and
// the checkout saga that drives every order to a terminal state. It talks
// to its neighbours through the interfaces of neighbours.go and to its
// store through the repositories declared beside their users:
// OrderRepository (here), IdempotencyKeyRepository (idempotency_keys.go)
// and SagaRepository (saga_run.go).
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// OrderRepository stores orders as event streams with their read model
// and outgoing events. Every write also stores the saga's bookkeeping
// (SagaWrite), in the same transaction. Implementations are safe for
// concurrent use.
type OrderRepository interface {
	// Create stores a new order, its first events, the idempotency record
	// and the outbox events in one transaction. It returns
	// ErrIdempotencyKeyTaken, storing nothing, when the user already used
	// the key.
	Create(ctx context.Context, key IdempotencyRecord, o domain.Order, evs []domain.Event, out []events.Event, saga SagaWrite) error
	// Append adds evs (versions expected+1 onwards) to the order's stream,
	// updates the read model to o (the order after evs) and stores out, in
	// one transaction. It returns domain.ErrConcurrentModification when the
	// stream is no longer at version expected.
	Append(ctx context.Context, o domain.Order, expected int64, evs []domain.Event, out []events.Event, saga SagaWrite) error
	// Load rebuilds the order from its events. domain.ErrNotFound if absent.
	Load(ctx context.Context, id string) (domain.Order, SagaState, error)
	// Rebuild rebuilds the order from its events, without the saga's
	// bookkeeping. domain.ErrNotFound if absent.
	Rebuild(ctx context.Context, id string) (domain.Order, error)
	// Get reads the order's read model. domain.ErrNotFound if absent.
	Get(ctx context.Context, id string) (domain.View, error)
	// List returns up to limit orders newest first, those of userID (all
	// when empty), starting after the order with id after (from the start
	// when empty).
	List(ctx context.Context, userID, after string, limit int) ([]domain.View, error)
	// Events returns the order's stream, oldest first (empty if absent).
	Events(ctx context.Context, id string) ([]domain.Event, error)
}

// Defaults of OrdersConfig.
const (
	DefaultSagaDeadline = 30 * time.Second
	DefaultPageSize     = pagination.DefaultPageSize
	MaxPageSize         = pagination.MaxPageSize
)

// OrdersConfig tunes the use cases. Zero values pick the defaults.
type OrdersConfig struct {
	// SagaDeadline is how long a checkout may take before it is undone.
	SagaDeadline time.Duration
	// PageTokenKey signs list page tokens; it must not be empty.
	PageTokenKey []byte
	// Now is the clock.
	Now func() time.Time
	// Fault is called at the durable points of placing and cancelling, as
	// SagaConfig.Fault.
	Fault FaultHook
	// IdempotencyKeyTTL is how long an Idempotency-Key is remembered
	// (DefaultIdempotencyKeyTTL when 0). A retry within it returns the
	// same order; the same key after it places a new one.
	IdempotencyKeyTTL time.Duration
}

// Orders are the use cases. Every one requires an authenticated caller; an
// order is visible to its owner and to admins only (NotFound otherwise, so
// its existence is not revealed). Safe for concurrent use.
type Orders struct {
	orders   OrderRepository
	keys     IdempotencyKeyRepository
	catalog  Catalog
	cart     Cart
	payments PaymentMethods
	saga     *Saga
	log      *slog.Logger
	cfg      OrdersConfig
	tokens   pagination.Tokens
}

// NewOrders returns the use cases over the order store and the idempotency
// keys (usually one repository). payments checks card tokens before an
// order is accepted.
func NewOrders(orders OrderRepository, keys IdempotencyKeyRepository, catalog Catalog, cart Cart, payments PaymentMethods,
	saga *Saga, logger *slog.Logger, cfg OrdersConfig,
) *Orders {
	if cfg.SagaDeadline <= 0 {
		cfg.SagaDeadline = DefaultSagaDeadline
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyKeyTTL <= 0 {
		cfg.IdempotencyKeyTTL = DefaultIdempotencyKeyTTL
	}
	return &Orders{
		orders: orders, keys: keys, catalog: catalog, cart: cart, payments: payments, saga: saga, log: logger, cfg: cfg,
		tokens: pagination.NewTokens(cfg.PageTokenKey, "orders"),
	}
}

// visible reports whether p may see the order of owner.
func visible(p auth.Principal, owner string) bool {
	return p.UserID == owner || p.IsAdmin()
}

func (a *Orders) fire(point string) error {
	if a.cfg.Fault == nil {
		return nil
	}
	return a.cfg.Fault(point)
}
