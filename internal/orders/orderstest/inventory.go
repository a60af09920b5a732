package orderstest

import (
	"context"
	"maps"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/mercato-dev/mercato/internal/gen/inventory/v1"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// Inventory is an in-memory inventory service: stock per sku and one
// reservation per order, every call idempotent by order id. A hold runs
// out at its expiry by the fake's clock (SetClock), as the real service's
// sweep releases it.
type Inventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
	Faults

	mu           sync.Mutex
	stock        map[string]*StockLevel
	reservations map[string]*reservation
	now          func() time.Time
}

// StockLevel is one sku's stock. OnHand counts held stock too; Sold is
// what committed reservations took. OnHand + Sold stays what was stocked.
type StockLevel struct {
	OnHand   int
	Reserved int
	Sold     int
}

type reservation struct {
	status    string
	lines     map[string]int
	expiresAt time.Time
}

// NewInventory returns an empty inventory.
func NewInventory() *Inventory {
	return &Inventory{stock: map[string]*StockLevel{}, reservations: map[string]*reservation{}, now: time.Now}
}

// SetClock sets the clock that dates reservations' expiry.
func (i *Inventory) SetClock(now func() time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = now
}

// SetOnHand puts n units of sku on hand.
func (i *Inventory) SetOnHand(sku string, n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	i.level(sku).OnHand = n
}

// Stock returns sku's stock.
func (i *Inventory) Stock(sku string) StockLevel {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	return *i.level(sku)
}

// ReservationStatus returns the status of the order's reservation.
func (i *Inventory) ReservationStatus(orderID string) (string, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	r, ok := i.reservations[orderID]
	if !ok {
		return "", false
	}
	return r.status, true
}

// Expire drops the order's hold now, as inventory does when a reservation
// outlives its ttl.
func (i *Inventory) Expire(orderID string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.reservations[orderID]; ok {
		i.expire(r)
	}
}

func (i *Inventory) expire(r *reservation) {
	if r.status != "reserved" {
		return
	}
	for sku, q := range r.lines {
		i.level(sku).Reserved -= q
	}
	r.status = "expired"
}

// sweep expires every hold past its expiry, as the real service's
// background sweep does (and its commit, even before the sweep). i.mu
// must be held.
func (i *Inventory) sweep() {
	now := i.now()
	for _, r := range i.reservations {
		if !r.expiresAt.IsZero() && !now.Before(r.expiresAt) {
			i.expire(r)
		}
	}
}

// InventorySnapshot is the whole state, comparable with ==-like equality.
type InventorySnapshot struct {
	Stock        map[string]StockLevel
	Reservations map[string]string
}

// Snapshot returns the stock levels and reservation statuses.
func (i *Inventory) Snapshot() InventorySnapshot {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	s := InventorySnapshot{Stock: map[string]StockLevel{}, Reservations: map[string]string{}}
	for sku, l := range i.stock {
		s.Stock[sku] = *l
	}
	for id, r := range i.reservations {
		s.Reservations[id] = r.status
	}
	return s
}

func (i *Inventory) level(sku string) *StockLevel {
	l := i.stock[sku]
	if l == nil {
		l = &StockLevel{}
		i.stock[sku] = l
	}
	return l
}

func (i *Inventory) answer(orderID string, r *reservation) *inventoryv1.Reservation {
	out := &inventoryv1.Reservation{OrderId: orderID, Status: r.status}
	if !r.expiresAt.IsZero() {
		out.ExpiresAt = timestamppb.New(r.expiresAt)
	}
	skus := make([]string, 0, len(r.lines))
	for sku := range maps.Keys(r.lines) {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	for _, sku := range skus {
		out.Lines = append(out.Lines, &inventoryv1.ReservationLine{Sku: sku, Quantity: int32(r.lines[sku])})
	}
	return out
}

// ReserveStock implements inventoryv1.InventoryServiceServer.
func (i *Inventory) ReserveStock(ctx context.Context, req *inventoryv1.ReserveStockRequest) (*inventoryv1.Reservation, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := i.enter(ctx, "ReserveStock")
	if before != nil {
		return nil, before
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	if len(req.GetLines()) == 0 {
		return nil, invalid("lines must not be empty")
	}
	want := map[string]int{}
	for _, l := range req.GetLines() {
		want[l.GetSku()] += int(l.GetQuantity())
	}
	if r, ok := i.reservations[req.GetOrderId()]; ok {
		// A tombstone (a release that came first) has no lines and answers
		// any request.
		if len(r.lines) > 0 && !maps.Equal(r.lines, want) {
			return nil, conflict("order already has a reservation with different lines")
		}
		return i.answer(req.GetOrderId(), r), after()
	}
	for _, l := range req.GetLines() {
		lv := i.level(l.GetSku())
		if lv.OnHand-lv.Reserved < want[l.GetSku()] {
			return nil, conflict("insufficient stock for sku "+l.GetSku(),
				apperr.WithCause("out_of_stock"), apperr.WithMetadata("sku", l.GetSku()))
		}
	}
	for sku, q := range want {
		i.level(sku).Reserved += q
	}
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = 15 * time.Minute
	}
	r := &reservation{status: "reserved", lines: want, expiresAt: i.now().Add(ttl)}
	i.reservations[req.GetOrderId()] = r
	return i.answer(req.GetOrderId(), r), after()
}

// CommitReservation implements inventoryv1.InventoryServiceServer.
func (i *Inventory) CommitReservation(ctx context.Context, req *inventoryv1.CommitReservationRequest) (*inventoryv1.Reservation, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := i.enter(ctx, "CommitReservation")
	if before != nil {
		return nil, before
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	r, ok := i.reservations[req.GetOrderId()]
	switch {
	case !ok:
		return nil, notFound("reservation not found")
	case r.status == "committed":
	case r.status == "reserved":
		for sku, q := range r.lines {
			lv := i.level(sku)
			lv.Reserved -= q
			lv.OnHand -= q
			lv.Sold += q
		}
		r.status = "committed"
	default:
		return nil, refused(r.status, "committed")
	}
	return i.answer(req.GetOrderId(), r), after()
}

// ReleaseReservation implements inventoryv1.InventoryServiceServer.
func (i *Inventory) ReleaseReservation(ctx context.Context, req *inventoryv1.ReleaseReservationRequest) (*inventoryv1.Reservation, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := i.enter(ctx, "ReleaseReservation")
	if before != nil {
		return nil, before
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	r, ok := i.reservations[req.GetOrderId()]
	switch {
	case !ok:
		// A tombstone: a reservation arriving later holds nothing.
		r = &reservation{status: "released", lines: map[string]int{}}
		i.reservations[req.GetOrderId()] = r
	case r.status == "released", r.status == "expired":
	case r.status == "reserved":
		for sku, q := range r.lines {
			i.level(sku).Reserved -= q
		}
		r.status = "released"
	default:
		return nil, refused(r.status, "released")
	}
	return i.answer(req.GetOrderId(), r), after()
}

// RestockOrder implements inventoryv1.InventoryServiceServer.
func (i *Inventory) RestockOrder(ctx context.Context, req *inventoryv1.RestockOrderRequest) (*inventoryv1.Reservation, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	after, before := i.enter(ctx, "RestockOrder")
	if before != nil {
		return nil, before
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep()
	r, ok := i.reservations[req.GetOrderId()]
	switch {
	case !ok:
		return nil, notFound("reservation not found")
	case r.status == "restocked":
	case r.status == "committed":
		for sku, q := range r.lines {
			lv := i.level(sku)
			lv.OnHand += q
			lv.Sold -= q
		}
		r.status = "restocked"
	default:
		return nil, refused(r.status, "restocked")
	}
	return i.answer(req.GetOrderId(), r), after()
}

// refused is the conflict of a move to status to that a reservation in
// status from does not allow, worded as the real service words it.
func refused(from, to string) error {
	switch {
	case to == "restocked":
		return conflict("reservation is not committed")
	case from == "expired":
		return conflict("reservation has expired")
	case from == "committed":
		return conflict("reservation is committed; restock the order instead")
	}
	return conflict("reservation is " + from)
}
