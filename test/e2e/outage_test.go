package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// authorizeRetries is the orders metric counting failed authorizations
// that the saga will try again.
const authorizeRetries = `mercato_orders_saga_step_retries_total{step="authorize_payment"}`

// TestOutages takes a service away while orders wait for it. Payments back
// before the saga deadline: the orders confirm; gone past it: they are
// cancelled and their stock released. While payments is unreachable no
// new order is accepted (its card cannot be checked), and nothing is
// created. A pending order can be cancelled meanwhile, at once even while
// a slow authorization is under way, and one whose stock cannot be
// committed is released and its payment voided. The rest of the system
// keeps running throughout.
func TestOutages(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			testOutages(t, startCluster(t, engine, map[string][]string{"orders": {"MERCATO_SAGA_DEADLINE=20s"}}))
		})
	}
}

func testOutages(t *testing.T, c *cluster) {
	user := c.customer(t)

	// waitRetrying waits until the saga has failed to authorize a payment
	// (at least) twice more since it was called.
	waitRetrying := func(t *testing.T) func() {
		base := c.metric(t, "orders", authorizeRetries)
		return func() {
			t.Helper()
			waitFor(t, 10*time.Second, "the saga retries the authorization", func() (bool, string) {
				n := c.metric(t, "orders", authorizeRetries)
				return n >= base+2, fmt.Sprint(n - base)
			})
		}
	}

	t.Run("payments down, back before the deadline", func(t *testing.T) {
		p := c.stockedProduct(t, c.admin, 3100, 10)
		// Placing an order checks its card with payments, so both orders
		// are placed while payments answers; slow authorizations keep
		// their checkouts from going further before it is taken away.
		c.stop(t, "payments")
		c.restart(t, "payments", "MERCATO_PAYMENTS_LATENCY=8s")
		waiting := c.mustPlace(t, user, buy(p.ID, 3, "tok_visa"))
		abandoned := c.mustPlace(t, user, buy(p.ID, 2, "tok_visa"))
		waitFor(t, settleTimeout, "both orders hold their stock", func() (bool, string) {
			st := c.stock(t, c.admin, p.SKU)
			return st.Reserved == 5, fmt.Sprintf("%+v", st)
		})
		retried := waitRetrying(t)
		c.kill(t, "payments")
		retried()
		require.Equal(t, pending, c.order(t, user, waiting.ID).Status)
		require.Equal(t, stock{SKU: p.SKU, OnHand: 10, Reserved: 5, Available: 5}, c.stock(t, c.admin, p.SKU), "the orders hold their stock")

		// No new order while the card cannot be checked, and nothing of it
		// is kept.
		before := c.orders(t, user)
		pr := requireProblem(t, c.placeOrder(t, user, newIdempotencyKey(), buy(p.ID, 1, "tok_visa")), http.StatusServiceUnavailable)
		require.Equal(t, "payments is unavailable, retry later", pr.Detail)
		require.Equal(t, before, c.orders(t, user))
		require.Equal(t, stock{SKU: p.SKU, OnHand: 10, Reserved: 5, Available: 5}, c.stock(t, c.admin, p.SKU))

		// Stock cannot be set below what orders hold.
		pr = requireProblem(t, c.do(t, http.MethodPut, "/api/v1/inventory/"+p.SKU, c.admin, map[string]int{"on_hand": 2}), http.StatusConflict)
		require.NotEmpty(t, pr.Detail)
		require.Equal(t, stock{SKU: p.SKU, OnHand: 10, Reserved: 5, Available: 5}, c.stock(t, c.admin, p.SKU))

		// A pending order is cancelled at once: its stock is released and
		// nothing was charged.
		var answer order
		c.cancel(t, user, abandoned.ID).decode(t, http.StatusOK, &answer)
		done := c.waitStatus(t, user, abandoned.ID, cancelled)
		require.Equal(t, "cancelled by customer", done.Reason)
		require.False(t, done.Refunded)
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "CancellationRequested", "StockReleased", "OrderCancelled"},
			eventTypes(c.orderEvents(t, user, abandoned.ID)))
		require.Equal(t, stock{SKU: p.SKU, OnHand: 10, Reserved: 3, Available: 7}, c.stock(t, c.admin, p.SKU))
		c.waitNotified(t, user, "order.cancelled", abandoned.ID)

		c.restart(t, "payments")
		confirmedOrder := c.waitStatus(t, user, waiting.ID, confirmed)
		requireConfirmedInTime(t, c, user, confirmedOrder)
		require.Empty(t, c.payments(t, user, abandoned.ID), "the cancelled order was never charged")
		c.requireStock(t, c.admin, p.SKU, 7, 3)
	})

	t.Run("payments failing, back before the deadline", func(t *testing.T) {
		p := c.stockedProduct(t, c.admin, 2700, 10)
		c.stop(t, "payments")
		c.restart(t, "payments", "MERCATO_PAYMENTS_FAILURE_RATE=1")
		retried := waitRetrying(t)
		waiting := c.mustPlace(t, user, buy(p.ID, 4, "tok_visa"))
		retried()
		require.Equal(t, pending, c.order(t, user, waiting.ID).Status)
		require.Empty(t, c.payments(t, user, waiting.ID), "no failed attempt shows as a payment")

		c.stop(t, "payments")
		c.restart(t, "payments")
		confirmedOrder := c.waitStatus(t, user, waiting.ID, confirmed)
		requireConfirmedInTime(t, c, user, confirmedOrder)
		c.requireStock(t, c.admin, p.SKU, 6, 4)
	})

	t.Run("payments slow: a cancel right after placing overtakes the checkout", func(t *testing.T) {
		const latency = 4 * time.Second
		c.stop(t, "payments")
		c.restart(t, "payments", "MERCATO_PAYMENTS_LATENCY="+latency.String())
		p := c.stockedProduct(t, c.admin, 4400, 5)
		placed := c.mustPlace(t, user, buy(p.ID, 2, "tok_visa"))
		// The saga authorizes right after the reservation: from here the
		// authorization is under way for the whole latency.
		waitFor(t, settleTimeout, "the order holds its stock", func() (bool, string) {
			evs := eventTypes(c.orderEvents(t, user, placed.ID))
			return slices.Contains(evs, "StockReserved"), fmt.Sprint(evs)
		})
		start := time.Now()
		var answer order
		c.cancel(t, user, placed.ID).decode(t, http.StatusOK, &answer)
		require.Less(t, time.Since(start), latency, "the cancel did not wait for the authorization")
		require.Equal(t, pending, answer.Status)
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "CancellationRequested"}, eventTypes(c.orderEvents(t, user, placed.ID)),
			"recorded while the authorization is under way")

		// The authorization that was under way is found and voided; the
		// stock is released; nothing was captured.
		done := c.waitOrder(t, user, placed.ID, settleTimeout+3*latency, "is cancelled", func(o order) bool { return o.Status == cancelled })
		require.Equal(t, "cancelled by customer", done.Reason)
		require.False(t, done.Refunded)
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "CancellationRequested", "StockReleased", "PaymentAuthorized", "PaymentVoided", "OrderCancelled"},
			eventTypes(c.orderEvents(t, user, placed.ID)))
		require.Equal(t, []string{"voided"}, statuses(c.payments(t, user, placed.ID)))
		c.requireStock(t, c.admin, p.SKU, 5, 0)
		c.waitNotified(t, user, "order.cancelled", placed.ID)
		requireProblem(t, c.cancel(t, user, placed.ID), http.StatusConflict)
		c.stop(t, "payments")
		c.restart(t, "payments")
	})

	t.Run("inventory down after the authorization, then cancelled", func(t *testing.T) {
		// Slow authorizations leave time to take inventory away between
		// the reservation and the commit.
		c.stop(t, "payments")
		c.restart(t, "payments", "MERCATO_PAYMENTS_LATENCY=2s")
		p := c.stockedProduct(t, c.admin, 5600, 10)
		placed := c.mustPlace(t, user, buy(p.ID, 2, "tok_visa"))
		waitEvent := func(event string) {
			t.Helper()
			waitFor(t, settleTimeout, "order history has "+event, func() (bool, string) {
				evs := eventTypes(c.orderEvents(t, user, placed.ID))
				return slices.Contains(evs, event), fmt.Sprint(evs)
			})
		}
		waitEvent("StockReserved")
		c.kill(t, "inventory")
		waitEvent("PaymentAuthorized")
		require.Equal(t, pending, c.order(t, user, placed.ID).Status, "the stock cannot be committed")

		var answer order
		c.cancel(t, user, placed.ID).decode(t, http.StatusOK, &answer)
		require.Equal(t, pending, answer.Status, "the stock cannot be released yet either")
		c.restart(t, "inventory")
		done := c.waitStatus(t, user, placed.ID, cancelled)
		require.Equal(t, "cancelled by customer", done.Reason)
		require.False(t, done.Refunded)
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentAuthorized", "CancellationRequested", "StockReleased", "PaymentVoided", "OrderCancelled"},
			eventTypes(c.orderEvents(t, user, placed.ID)))
		require.Equal(t, []string{"voided"}, statuses(c.payments(t, user, placed.ID)))
		c.requireStock(t, c.admin, p.SKU, 10, 0)
		c.waitNotified(t, user, "order.cancelled", placed.ID)
		c.stop(t, "payments")
		c.restart(t, "payments")
	})

	t.Run("payments failing past the deadline", func(t *testing.T) {
		p := c.stockedProduct(t, c.admin, 1900, 10)
		c.stop(t, "orders")
		c.restart(t, "orders", "MERCATO_SAGA_DEADLINE=3s")
		// The card check is a lookup the failing provider still answers;
		// every authorization fails.
		c.stop(t, "payments")
		c.restart(t, "payments", "MERCATO_PAYMENTS_FAILURE_RATE=1")
		placed := c.mustPlace(t, user, buy(p.ID, 5, "tok_visa"))
		done := c.waitStatus(t, user, placed.ID, cancelled)
		require.Equal(t, "checkout timed out", done.Reason)
		require.False(t, done.Refunded)
		c.requireStock(t, c.admin, p.SKU, 10, 0)
		require.Equal(t, []string{"OrderPlaced", "StockReserved", "CancellationRequested", "StockReleased", "OrderCancelled"},
			eventTypes(c.orderEvents(t, user, placed.ID)))
		c.waitNotified(t, user, "order.cancelled", placed.ID)

		// Payments coming back changes nothing for the finished order.
		c.stop(t, "payments")
		c.restart(t, "payments")
		c.stop(t, "orders")
		c.restart(t, "orders")
		another := c.mustPlace(t, user, buy(p.ID, 1, "tok_visa"))
		c.waitStatus(t, user, another.ID, confirmed)
		require.Equal(t, done, c.order(t, user, placed.ID))
		require.Empty(t, c.payments(t, user, placed.ID))
		c.requireStock(t, c.admin, p.SKU, 9, 1)
	})
}

// requireConfirmedInTime requires the order was confirmed with one capture
// of its total, its stock committed before its deadline, and its customer
// told once.
func requireConfirmedInTime(t *testing.T, c *cluster, user string, o order) {
	t.Helper()
	evs := c.orderEvents(t, user, o.ID)
	require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentAuthorized", "StockCommitted", "PaymentCaptured", "OrderConfirmed"},
		eventTypes(evs))
	deadline, err := time.Parse(time.RFC3339Nano, evs[0].Data["deadline_at"].(string))
	require.NoError(t, err)
	require.True(t, evs[3].OccurredAt.Before(deadline), "committed at %s, deadline %s", evs[3].OccurredAt, deadline)
	pays := c.payments(t, user, o.ID)
	require.Len(t, pays, 1)
	require.Equal(t, "captured", pays[0].Status)
	require.Equal(t, o.TotalCents, pays[0].AmountCents)
	c.waitNotified(t, user, "order.confirmed", o.ID)
}
