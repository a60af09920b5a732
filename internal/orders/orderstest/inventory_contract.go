package orderstest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/app"
)

// InventoryUnderTest is an inventory the contract runs against.
type InventoryUnderTest struct {
	// Inventory is orders' client of it: the gRPC adapter orders runs.
	Inventory app.Inventory
	// SetOnHand puts n units of sku on hand, as an admin does.
	SetOnHand func(t *testing.T, sku string, n int)
}

// RunInventoryContract checks that an inventory behaves as the checkout
// saga relies on. newInventory is called once; the cases share it, each
// with skus and order ids of its own.
func RunInventoryContract(t *testing.T, newInventory func(t *testing.T) InventoryUnderTest) {
	inv := newInventory(t)
	c := inventoryContract{inv: inv.Inventory, setOnHand: inv.SetOnHand}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a reservation holds the stock and says until when", c.reserveHolds},
		{"reserve is idempotent by order id", c.reserveIsIdempotent},
		{"reserving the same order for other lines is a conflict", c.reserveOtherLines},
		{"out of stock answers the typed result naming the sku and holds nothing", c.outOfStock},
		{"release after reserve restores availability", c.releaseRestores},
		{"commit sells the held stock once", c.commitSells},
		{"restock after commit puts the stock back", c.restockAfterCommit},
		{"a release before the reservation leaves nothing to hold", c.releaseFirst},
		{"unknown order ids are not found", c.unknownOrders},
		{"moves the reservation does not allow are conflicts", c.refusedMoves},
		{"an expired hold gives its stock back and cannot be committed", c.expiry},
	} {
		t.Run(tc.name, tc.run)
	}
}

type inventoryContract struct {
	inv       app.Inventory
	setOnHand func(t *testing.T, sku string, n int)
}

// ttl is the hold time of the contract's reservations: long enough never
// to run out during a case, except where a case waits for it.
const ttl = 10 * time.Minute

// newSKU returns a sku no other case uses, with n units on hand. Skus are
// upper-case, the form inventory keeps them in.
func (c inventoryContract) newSKU(t *testing.T, n int) string {
	t.Helper()
	sku := "SKU-" + strings.ToUpper(uuid.NewString()[:13])
	c.setOnHand(t, sku, n)
	return sku
}

func newOrderID() string { return uuid.NewString() }

func lines(sku string, q int64) []app.StockLine { return []app.StockLine{{SKU: sku, Quantity: q}} }

// reserve reserves and requires the reservation to hold stock.
func (c inventoryContract) reserve(t *testing.T, orderID string, l []app.StockLine) app.Reservation {
	t.Helper()
	res, err := c.inv.Reserve(t.Context(), orderID, l, ttl)
	require.NoError(t, err)
	require.Equal(t, app.ReservationReserved, res.Status)
	return res
}

// requireShort requires err to be inventory's out-of-stock answer for sku.
func requireShort(t *testing.T, err error, sku string) {
	t.Helper()
	var short *app.OutOfStockError
	require.True(t, errors.As(err, &short), "want out of stock, got %v", err)
	require.Equal(t, sku, short.SKU)
	require.ErrorIs(t, err, app.ErrConflict)
}

// requireClass requires err to be of class want (one of app's neighbour
// error classes) and none of the others.
func requireClass(t *testing.T, err, want error) {
	t.Helper()
	require.ErrorIs(t, err, want)
	for _, other := range []error{app.ErrUnavailable, app.ErrOutcomeUnknown, app.ErrConflict, app.ErrInvalidRequest, app.ErrNotFound} {
		if !errors.Is(want, other) {
			require.NotErrorIs(t, err, other, "%v is not only %v", err, want)
		}
	}
}

func (c inventoryContract) reserveHolds(t *testing.T) {
	sku := c.newSKU(t, 2)
	before := time.Now()
	res := c.reserve(t, newOrderID(), lines(sku, 2))
	require.True(t, res.Status.HoldsStock())
	require.WithinRange(t, res.ExpiresAt, before.Add(ttl-2*time.Second), time.Now().Add(ttl+2*time.Second))

	_, err := c.inv.Reserve(t.Context(), newOrderID(), lines(sku, 1), ttl)
	requireShort(t, err, sku)
}

func (c inventoryContract) reserveIsIdempotent(t *testing.T) {
	sku := c.newSKU(t, 4)
	order := newOrderID()
	first := c.reserve(t, order, lines(sku, 2))
	again := c.reserve(t, order, lines(sku, 2))
	require.True(t, first.ExpiresAt.Equal(again.ExpiresAt), "a repeat answers the first reservation")
	// Had the repeat held two more units, nothing would be left.
	c.reserve(t, newOrderID(), lines(sku, 2))
}

func (c inventoryContract) reserveOtherLines(t *testing.T) {
	sku := c.newSKU(t, 4)
	order := newOrderID()
	c.reserve(t, order, lines(sku, 1))
	_, err := c.inv.Reserve(t.Context(), order, lines(sku, 2), ttl)
	requireClass(t, err, app.ErrConflict)
	var short *app.OutOfStockError
	require.False(t, errors.As(err, &short), "other lines are no shortage: %v", err)
	// The first reservation stands as it was.
	c.reserve(t, newOrderID(), lines(sku, 3))
}

func (c inventoryContract) outOfStock(t *testing.T) {
	plenty, scarce := c.newSKU(t, 5), c.newSKU(t, 1)
	order := newOrderID()
	_, err := c.inv.Reserve(t.Context(), order, []app.StockLine{{SKU: plenty, Quantity: 2}, {SKU: scarce, Quantity: 2}}, ttl)
	requireShort(t, err, scarce)
	// All lines or none: nothing of the other sku was held.
	c.reserve(t, newOrderID(), lines(plenty, 5))
	// Nothing was recorded for the order either: once there is stock, it
	// reserves.
	c.setOnHand(t, scarce, 2)
	c.reserve(t, order, lines(scarce, 2))
}

func (c inventoryContract) releaseRestores(t *testing.T) {
	sku := c.newSKU(t, 2)
	order := newOrderID()
	c.reserve(t, order, lines(sku, 2))
	other := newOrderID()
	_, err := c.inv.Reserve(t.Context(), other, lines(sku, 1), ttl)
	requireShort(t, err, sku)

	require.NoError(t, c.inv.Release(t.Context(), order))
	require.NoError(t, c.inv.Release(t.Context(), order), "releasing again changes nothing")
	c.reserve(t, other, lines(sku, 2))
	// A released reservation stays released: the order holds nothing now.
	res, err := c.inv.Reserve(t.Context(), order, lines(sku, 2), ttl)
	require.NoError(t, err)
	require.Equal(t, app.ReservationReleased, res.Status)
	require.False(t, res.Status.HoldsStock())
}

func (c inventoryContract) commitSells(t *testing.T) {
	sku := c.newSKU(t, 3)
	order := newOrderID()
	c.reserve(t, order, lines(sku, 2))
	require.NoError(t, c.inv.Commit(t.Context(), order))
	require.NoError(t, c.inv.Commit(t.Context(), order), "committing again changes nothing")
	res, err := c.inv.Reserve(t.Context(), order, lines(sku, 2), ttl)
	require.NoError(t, err)
	require.Equal(t, app.ReservationCommitted, res.Status)
	require.True(t, res.Status.HoldsStock(), "a committed reservation still counts as held")

	// Sold stock is gone: one unit is left, whatever the commit's repeats.
	_, err = c.inv.Reserve(t.Context(), newOrderID(), lines(sku, 2), ttl)
	requireShort(t, err, sku)
	c.reserve(t, newOrderID(), lines(sku, 1))
	// What is sold cannot be released; the saga restocks it instead.
	requireClass(t, c.inv.Release(t.Context(), order), app.ErrConflict)
}

func (c inventoryContract) restockAfterCommit(t *testing.T) {
	sku := c.newSKU(t, 2)
	order := newOrderID()
	c.reserve(t, order, lines(sku, 2))
	require.NoError(t, c.inv.Commit(t.Context(), order))
	require.NoError(t, c.inv.Restock(t.Context(), order))
	require.NoError(t, c.inv.Restock(t.Context(), order), "restocking again changes nothing")
	c.reserve(t, newOrderID(), lines(sku, 2))
	requireClass(t, c.inv.Commit(t.Context(), order), app.ErrConflict)
}

func (c inventoryContract) releaseFirst(t *testing.T) {
	sku := c.newSKU(t, 2)
	order := newOrderID()
	require.NoError(t, c.inv.Release(t.Context(), order), "releasing an order inventory never saw succeeds")
	// A reservation arriving after its own compensation holds nothing.
	res, err := c.inv.Reserve(t.Context(), order, lines(sku, 2), ttl)
	require.NoError(t, err)
	require.Equal(t, app.ReservationReleased, res.Status)
	require.False(t, res.Status.HoldsStock())
	c.reserve(t, newOrderID(), lines(sku, 2))
}

func (c inventoryContract) unknownOrders(t *testing.T) {
	requireClass(t, c.inv.Commit(t.Context(), newOrderID()), app.ErrNotFound)
	requireClass(t, c.inv.Restock(t.Context(), newOrderID()), app.ErrNotFound)
}

func (c inventoryContract) refusedMoves(t *testing.T) {
	sku := c.newSKU(t, 2)
	held := newOrderID()
	c.reserve(t, held, lines(sku, 1))
	requireClass(t, c.inv.Restock(t.Context(), held), app.ErrConflict)

	released := newOrderID()
	c.reserve(t, released, lines(sku, 1))
	require.NoError(t, c.inv.Release(t.Context(), released))
	requireClass(t, c.inv.Commit(t.Context(), released), app.ErrConflict)
	requireClass(t, c.inv.Restock(t.Context(), released), app.ErrConflict)
}

func (c inventoryContract) expiry(t *testing.T) {
	sku := c.newSKU(t, 1)
	order := newOrderID()
	res, err := c.inv.Reserve(t.Context(), order, lines(sku, 1), time.Second)
	require.NoError(t, err)
	require.Equal(t, app.ReservationReserved, res.Status)

	// Once the hold has run out its stock is for sale again, swept or not.
	other := newOrderID()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.inv.Reserve(t.Context(), other, lines(sku, 1), ttl)
		if err == nil {
			break
		}
		requireShort(t, err, sku)
		require.True(t, time.Now().Before(deadline), "the expired hold never gave its stock back")
		<-time.After(50 * time.Millisecond)
	}
	requireClass(t, c.inv.Commit(t.Context(), order), app.ErrConflict)
	res, err = c.inv.Reserve(t.Context(), order, lines(sku, 1), ttl)
	require.NoError(t, err)
	require.Equal(t, app.ReservationExpired, res.Status)
	require.False(t, res.Status.HoldsStock())
	require.NoError(t, c.inv.Release(t.Context(), order), "releasing an expired hold changes nothing")
}
