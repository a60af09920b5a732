package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// placeTimeout bounds how long a client keeps sending a checkout again
// while its answers are lost.
const placeTimeout = 30 * time.Second

// maxRetryWait bounds the wait between two sends of a request whose
// answer was lost.
const maxRetryWait = 500 * time.Millisecond

// A checkoutRun is checkouts of one unit each of one product, placed while
// some part of the system fails, as their clients know them; and what
// must hold once they have settled.
type checkoutRun struct {
	s       *system
	admin   string
	product product
	initial int

	mu     sync.Mutex
	orders []*runOrder
	// lost counts the requests whose answer was lost (none came, or a 5xx)
	// and that were sent again.
	lost atomic.Int64
}

// runOrder is one checkout: who placed it, whether from their cart, and
// the order its request made.
type runOrder struct {
	token    string
	fromCart bool
	id       string
	placedAt time.Time
}

// newCheckoutRun creates the product the run buys, initial units in stock.
func newCheckoutRun(t *testing.T, s *system, admin string, initial int) *checkoutRun {
	t.Helper()
	return &checkoutRun{s: s, admin: admin, product: s.stockedProduct(t, admin, 1500, initial), initial: initial}
}

// place checks out one unit for the customer: buying it now, or, fromCart,
// putting it in their cart and checking the cart out. A request whose
// answer is lost is sent again (the checkout under the same
// Idempotency-Key), as a client would. It returns the order's id. Safe for
// concurrent use; it reports what went wrong rather than failing the test.
func (r *checkoutRun) place(ctx context.Context, token string, fromCart bool) (string, error) {
	body := buy(r.product.ID, 1, "tok_visa")
	if fromCart {
		path := "/api/v1/cart/items/" + r.product.ID
		if err := r.retry(ctx, "put in the cart", http.StatusOK, nil, func() (reply, error) {
			return r.s.send(ctx, http.MethodPut, path, token, map[string]int{"quantity": 1})
		}); err != nil {
			return "", err
		}
		body = checkout{ShippingAddress: &shipTo, PaymentToken: "tok_visa"}
	}
	key := newIdempotencyKey()
	var o order
	if err := r.retry(ctx, "check out", http.StatusAccepted, &o, func() (reply, error) {
		return r.s.send(ctx, http.MethodPost, "/api/v1/orders", token, body, "Idempotency-Key", key)
	}); err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.orders = append(r.orders, &runOrder{token: token, fromCart: fromCart, id: o.ID, placedAt: time.Now()})
	return o.ID, nil
}

// retry sends a request until it is answered with status (decoded into v
// when not nil), sending it again while no answer comes or the answer is
// a 5xx, backing off up to maxRetryWait, for at most placeTimeout. Any
// other answer is an error.
func (r *checkoutRun) retry(ctx context.Context, what string, status int, v any, send func() (reply, error)) error {
	deadline := time.Now().Add(placeTimeout)
	wait := pollInterval
	for {
		rep, err := send()
		if err == nil && rep.status < 500 {
			return expectReply(rep, nil, status, v)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d: %s", rep.status, rep.body)
			}
			return fmt.Errorf("%s: still failing after %s: %w", what, placeTimeout, err)
		}
		r.lost.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// placed returns the orders placed so far.
func (r *checkoutRun) placed() []*runOrder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*runOrder(nil), r.orders...)
}

// requireSettled waits, up to timeout, for every order to finish, and
// requires what checkouts guarantee whatever failed meanwhile: each request
// made one order (retries included); stock is conserved (on hand plus the
// units of confirmed orders is what there was, nothing held); a confirmed
// order was captured once and any other never; each confirmed order's
// customer was told once. It returns the orders by status.
func (r *checkoutRun) requireSettled(t *testing.T, timeout time.Duration) map[string][]*runOrder {
	t.Helper()
	orders := r.placed()
	require.NotEmpty(t, orders)
	byStatus := map[string][]*runOrder{}
	byToken := map[string][]*runOrder{}
	reasons := map[string]int{}
	deadline := time.Now().Add(timeout)
	for _, o := range orders {
		done := r.s.waitOrder(t, o.token, o.id, max(time.Until(deadline), time.Second), "finishes",
			func(o order) bool { return o.Status != pending })
		byStatus[done.Status] = append(byStatus[done.Status], o)
		byToken[o.token] = append(byToken[o.token], o)
		if done.Reason != "" {
			reasons[done.Reason]++
		}
		pays := statuses(r.s.payments(t, o.token, o.id))
		switch done.Status {
		case confirmed:
			require.Equal(t, []string{"captured"}, pays, "order %s is captured once", o.id)
		case rejected, cancelled:
			require.NotContains(t, pays, "captured", "order %s (%s, %s) is not charged", o.id, done.Status, done.Reason)
		default:
			t.Fatalf("order %s ended %s (%s)", o.id, done.Status, done.Reason)
		}
	}
	for token, mine := range byToken {
		var placed, listed []string
		for _, o := range mine {
			placed = append(placed, o.id)
		}
		for _, o := range r.s.orders(t, token) {
			listed = append(listed, o.ID)
		}
		require.ElementsMatch(t, placed, listed, "each request made one order, retries included")
	}
	sold := len(byStatus[confirmed])
	r.s.requireStock(t, r.admin, r.product.SKU, r.initial-sold, sold)

	// Notifications are sent from events: each confirmed order's once,
	// however many times its event was delivered.
	notified := func() (map[string]int, string) {
		count := map[string]int{}
		for token := range byToken {
			for _, n := range r.s.notifications(t, token) {
				if n.Kind != "order.confirmed" {
					continue
				}
				for _, o := range byToken[token] {
					if strings.Contains(n.Subject+n.Body, o.id) {
						count[o.id]++
					}
				}
			}
		}
		missing := 0
		for _, o := range byStatus[confirmed] {
			if count[o.id] == 0 {
				missing++
			}
		}
		return count, fmt.Sprintf("%d of %d confirmed orders not notified", missing, sold)
	}
	waitFor(t, max(time.Until(deadline), settleTimeout), "every confirmed order is notified", func() (bool, string) {
		_, seen := notified()
		return strings.HasPrefix(seen, "0 of"), seen
	})
	count, _ := notified()
	for _, o := range byStatus[confirmed] {
		require.Equal(t, 1, count[o.id], "order %s notified once", o.id)
	}
	require.Len(t, count, sold, "only confirmed orders are notified as confirmed")
	t.Logf("%d orders: %d confirmed, %d rejected, %d cancelled %v; %d requests sent again",
		len(orders), sold, len(byStatus[rejected]), len(byStatus[cancelled]), reasons, r.lost.Load())
	return byStatus
}

// requireCartsCleaned waits until the carts that confirmed orders checked
// out are empty again.
func (r *checkoutRun) requireCartsCleaned(t *testing.T, confirmedOrders []*runOrder) {
	t.Helper()
	carts := 0
	for _, o := range confirmedOrders {
		if !o.fromCart {
			continue
		}
		carts++
		waitFor(t, settleTimeout, "the cart order "+o.id+" checked out is emptied", func() (bool, string) {
			var cart struct {
				Items []itemInput `json:"items"`
			}
			r.s.do(t, http.MethodGet, "/api/v1/cart", o.token, nil).decode(t, http.StatusOK, &cart)
			return len(cart.Items) == 0, fmt.Sprint(cart.Items)
		})
	}
	require.NotZero(t, carts, "some confirmed orders checked out a cart")
}

// errorList collects what goroutines other than the test's own found wrong.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorList) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}
