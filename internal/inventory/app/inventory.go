// Package app holds the inventory's use cases: who may do what, and how a
// reservation moves through its life. It knows no transport and no SQL.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/inventory/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// StockRepository stores stock levels and the reservations that hold
// stock. Implementations are safe for concurrent use, including by several
// replicas sharing one database: every method is atomic, and no
// interleaving of calls can break the stock invariants (0 ≤ reserved ≤
// on_hand, sold ≥ 0) or hold stock twice for one order. Every change to a
// stock row is recorded in the ledger in the same transaction.
type StockRepository interface {
	// Stock returns sku's stock; a sku never stocked is all zeros.
	Stock(ctx context.Context, sku string) (domain.Stock, error)
	// SetStock sets sku's on_hand (creating its row when missing) and
	// returns the result. A *domain.BelowReservedError when onHand is below
	// what is reserved, and then nothing changes.
	SetStock(ctx context.Context, sku string, onHand int32, now time.Time) (domain.Stock, error)
	// Reserve records r (status reserved, normalised lines) and holds its
	// lines, all or none: a *domain.OutOfStockError naming the first sku
	// short of stock, and then nothing is recorded. When r.OrderID already
	// has a reservation, nothing changes and that one is returned with
	// created false.
	Reserve(ctx context.Context, r domain.Reservation, now time.Time) (stored domain.Reservation, created bool, err error)
	// Transition moves the order's reservation to status to as r.Move(to,
	// now) decides, adjusting stock by domain.EffectOf for each line. It
	// returns the reservation as it is afterwards and whether it moved;
	// Move's error when the move is not allowed; ErrReservationNotFound
	// when the order has no reservation.
	Transition(ctx context.Context, orderID string, to domain.Status, now time.Time) (domain.Reservation, bool, error)
	// RecordTombstone records a released reservation without lines for an
	// order that has none, so a later Reserve for it holds nothing. It
	// returns false, changing nothing, when the order has a reservation.
	RecordTombstone(ctx context.Context, orderID string, now time.Time) (bool, error)
	// Reservation returns the order's reservation, or ErrReservationNotFound.
	Reservation(ctx context.Context, orderID string) (domain.Reservation, error)
	// ExpiredReservations returns up to limit orders whose reservations
	// are still reserved at now but past their expiry, oldest first.
	ExpiredReservations(ctx context.Context, now time.Time, limit int) ([]string, error)
}

// Inventory runs the inventory's use cases. It is safe for concurrent use.
type Inventory struct {
	repo       StockRepository
	metrics    *Metrics
	defaultTTL time.Duration
	now        func() time.Time
}

// Option changes how an Inventory is built.
type Option func(*Inventory)

// WithClock makes the inventory read the time from now (tests).
func WithClock(now func() time.Time) Option { return func(i *Inventory) { i.now = now } }

// NewInventory returns the use cases over repo. defaultTTL is how long a
// reservation holds stock when the caller gives no ttl; metrics may be nil.
func NewInventory(repo StockRepository, defaultTTL time.Duration, metrics *Metrics, opts ...Option) *Inventory {
	inv := &Inventory{repo: repo, metrics: metrics, defaultTTL: defaultTTL, now: time.Now}
	for _, o := range opts {
		o(inv)
	}
	return inv
}

// GetStock returns sku's stock (admins only). A sku never stocked reads as
// zeros rather than not found: the inventory cannot tell an unknown sku
// from one that was never delivered, and both have nothing to sell.
func (inv *Inventory) GetStock(ctx context.Context, sku string) (domain.Stock, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return domain.Stock{}, err
	}
	sku, err := domain.NormalizeSKU(sku)
	if err != nil {
		return domain.Stock{}, err
	}
	st, err := inv.repo.Stock(ctx, sku)
	if err != nil {
		return domain.Stock{}, fmt.Errorf("get stock: %w", err)
	}
	return st, nil
}

// SetStock sets sku's on_hand (admins only), 0 to 1,000,000. Below what
// live reservations hold is a conflict and changes nothing. Setting the
// value it already has changes nothing and records no movement.
func (inv *Inventory) SetStock(ctx context.Context, sku string, onHand int32) (domain.Stock, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return domain.Stock{}, err
	}
	sku, err := domain.NormalizeSKU(sku)
	if err != nil {
		return domain.Stock{}, err
	}
	if err := domain.ValidateOnHand(onHand); err != nil {
		return domain.Stock{}, err
	}
	st, err := inv.repo.SetStock(ctx, sku, onHand, inv.now())
	if err != nil {
		return domain.Stock{}, fmt.Errorf("set stock: %w", err)
	}
	return st, nil
}

// ReserveStock is a request to hold stock for an order.
type ReserveStock struct {
	OrderID string
	Lines   []domain.Line
	// TTL is how long the hold lasts if never committed; 0 picks the
	// service default, at most domain.MaxTTL.
	TTL time.Duration
}

// ReserveStock holds every line of the order or none (services and admins
// only). It is idempotent by order id: when the order already has a
// reservation it is returned unchanged, whatever its status — including a
// released one without lines, left by a release that came first, which
// holds nothing — unless it was made for other lines (ErrLinesDiffer). A
// caller must therefore look at the returned status: only "reserved" (or
// "committed", on a retry after commit) means stock is held for the order.
// When any line is short, a *domain.OutOfStockError (ErrOutOfStock) and
// nothing is recorded.
func (inv *Inventory) ReserveStock(ctx context.Context, req ReserveStock) (domain.Reservation, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateOrderID(req.OrderID); err != nil {
		return domain.Reservation{}, err
	}
	lines, err := domain.NormalizeLines(req.Lines)
	if err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateTTL(req.TTL); err != nil {
		return domain.Reservation{}, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = inv.defaultTTL
	}
	now := inv.now()
	want := domain.Reservation{
		OrderID: req.OrderID, Status: domain.StatusReserved, Lines: lines, ExpiresAt: now.Add(ttl),
	}
	stored, created, err := inv.repo.Reserve(ctx, want, now)
	switch {
	case errors.Is(err, domain.ErrOutOfStock):
		inv.metrics.reservation(OutcomeOutOfStock)
		return domain.Reservation{}, err
	case err != nil:
		return domain.Reservation{}, fmt.Errorf("reserve stock: %w", err)
	case created:
		inv.metrics.reservation(OutcomeReserved)
		return stored, nil
	case !stored.Tombstone() && !stored.SameLines(lines):
		inv.metrics.reservation(OutcomeLinesDiffer)
		return domain.Reservation{}, domain.ErrLinesDiffer
	default:
		inv.metrics.reservation(OutcomeReplayed)
		return stored, nil
	}
}

// CommitReservation turns the order's held stock into sold stock (services
// and admins only). Committing a committed reservation changes nothing.
// A released, expired or restocked one is a conflict; so is a reservation
// past its expiry that the sweep has not reached yet, which is expired on
// the spot.
func (inv *Inventory) CommitReservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateOrderID(orderID); err != nil {
		return domain.Reservation{}, err
	}
	r, err := inv.transition(ctx, orderID, domain.StatusCommitted)
	if errors.Is(err, domain.ErrReservationExpired) {
		if _, expErr := inv.expire(ctx, orderID); expErr != nil {
			return domain.Reservation{}, fmt.Errorf("expire overdue reservation: %w", expErr)
		}
	}
	return r, err
}

// ReleaseReservation gives the order's held stock back (services and admins
// only). Releasing a released or expired reservation changes nothing; a
// committed or restocked one is a conflict (RestockOrder gives sold stock
// back). Releasing an order that has no reservation records a released one
// without lines, so that a ReserveStock arriving later for the same order
// (a retry overtaken by the compensation) holds nothing.
func (inv *Inventory) ReleaseReservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateOrderID(orderID); err != nil {
		return domain.Reservation{}, err
	}
	// A reservation may appear between the failed transition and the
	// tombstone; then the transition is tried again. Bounded, as each
	// round needs a concurrent reserve for the same order to lose.
	for range 3 {
		r, err := inv.transition(ctx, orderID, domain.StatusReleased)
		if !errors.Is(err, domain.ErrReservationNotFound) {
			return r, err
		}
		recorded, err := inv.repo.RecordTombstone(ctx, orderID, inv.now())
		if err != nil {
			return domain.Reservation{}, fmt.Errorf("release reservation: %w", err)
		}
		if recorded {
			return domain.Reservation{OrderID: orderID, Status: domain.StatusReleased}, nil
		}
	}
	return domain.Reservation{}, ErrBusy
}

// RestockOrder puts a committed order's sold stock back on hand (services
// and admins only). Restocking a restocked order changes nothing; any
// other status is a conflict.
func (inv *Inventory) RestockOrder(ctx context.Context, orderID string) (domain.Reservation, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateOrderID(orderID); err != nil {
		return domain.Reservation{}, err
	}
	return inv.transition(ctx, orderID, domain.StatusRestocked)
}

// GetReservation returns the order's reservation (services and admins
// only), or ErrReservationNotFound.
func (inv *Inventory) GetReservation(ctx context.Context, orderID string) (domain.Reservation, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return domain.Reservation{}, err
	}
	if err := domain.ValidateOrderID(orderID); err != nil {
		return domain.Reservation{}, err
	}
	r, err := inv.repo.Reservation(ctx, orderID)
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("get reservation: %w", err)
	}
	return r, nil
}

// expireBatch is how many overdue reservations one sweep query returns.
const expireBatch = 100

// ExpireReservations releases, as expired, every reservation past its
// expiry, each in its own transaction, and returns how many it expired.
// It is background work, not an RPC: no principal is needed. Replicas may
// sweep at the same time; each reservation is expired once.
func (inv *Inventory) ExpireReservations(ctx context.Context) (int, error) {
	now := inv.now()
	expired := 0
	for {
		ids, err := inv.repo.ExpiredReservations(ctx, now, expireBatch)
		if err != nil {
			return expired, fmt.Errorf("find expired reservations: %w", err)
		}
		for _, id := range ids {
			moved, err := inv.expire(ctx, id)
			if err != nil {
				return expired, fmt.Errorf("expire reservation: %w", err)
			}
			if moved {
				expired++
			}
		}
		// A shorter batch was the last; a full one may have more behind it
		// (all of those handled now are no longer reserved, so the next
		// query cannot return them again).
		if len(ids) < expireBatch {
			return expired, nil
		}
	}
}

func (inv *Inventory) expire(ctx context.Context, orderID string) (bool, error) {
	_, moved, err := inv.repo.Transition(ctx, orderID, domain.StatusExpired, inv.now())
	if err != nil {
		return false, err
	}
	if moved {
		inv.metrics.expiredReservation()
	}
	return moved, nil
}

func (inv *Inventory) transition(ctx context.Context, orderID string, to domain.Status) (domain.Reservation, error) {
	r, _, err := inv.repo.Transition(ctx, orderID, to, inv.now())
	if err != nil {
		return domain.Reservation{}, fmt.Errorf("move reservation to %s: %w", to, err)
	}
	return r, nil
}
