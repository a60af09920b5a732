package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
)

// What the checkout tests read and write through the public API.

type address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// shipTo is a valid shipping address.
var shipTo = address{Name: "Ada Shopper", Line1: "1 Market Street", City: "Springfield", PostalCode: "12345", Country: "US"}

type itemInput struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// checkout is the body of POST /api/v1/orders.
type checkout struct {
	Items           []itemInput `json:"items,omitempty"`
	ShippingAddress *address    `json:"shipping_address,omitempty"`
	PaymentToken    string      `json:"payment_token,omitempty"`
}

// buy is a checkout of quantity of one product, paid with token.
func buy(productID string, quantity int, token string) checkout {
	return checkout{Items: []itemInput{{productID, quantity}}, ShippingAddress: &shipTo, PaymentToken: token}
}

type orderItem struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int    `json:"unit_price_cents"`
	LineTotalCents int    `json:"line_total_cents"`
}

type order struct {
	ID              string      `json:"id"`
	UserID          string      `json:"user_id"`
	Status          string      `json:"status"`
	Items           []orderItem `json:"items"`
	TotalCents      int         `json:"total_cents"`
	Currency        string      `json:"currency"`
	ShippingAddress address     `json:"shipping_address"`
	Reason          string      `json:"reason"`
	Refunded        bool        `json:"refunded"`
	CreatedAt       string      `json:"created_at"`
	UpdatedAt       string      `json:"updated_at"`
}

// Order statuses.
const (
	pending   = "pending"
	confirmed = "confirmed"
	rejected  = "rejected"
	cancelled = "cancelled"
)

type orderEvent struct {
	Version    int            `json:"version"`
	Type       string         `json:"type"`
	Data       map[string]any `json:"data"`
	OccurredAt time.Time      `json:"occurred_at"`
}

type payment struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	AmountCents int    `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
	DeclineCode string `json:"decline_code"`
	CardBrand   string `json:"card_brand"`
}

type stock struct {
	SKU       string `json:"sku"`
	OnHand    int    `json:"on_hand"`
	Reserved  int    `json:"reserved"`
	Available int    `json:"available"`
	Sold      int    `json:"sold"`
}

type notification struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Kind      string `json:"kind"`
	Subject   string `json:"subject"`
	Body      string `json:"body"`
	Channel   string `json:"channel"`
	Recipient string `json:"recipient"`
}

// Timeouts of what the saga does in the background. A checkout takes
// milliseconds; the margin is for a loaded machine.
const (
	settleTimeout = 15 * time.Second
	pollInterval  = 20 * time.Millisecond
)

// waitFor polls check until it reports done, and fails the test with what
// check last saw if that takes longer than timeout. It does not stop at the
// end of the test's context: cleanups wait with it (for a service they
// restart), and the context is cancelled before they run.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() (done bool, seen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		done, seen := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, seen)
		}
		<-tick.C
	}
}

// engineOptions are the options that put the system's data on engine
// ("sqlite" or "postgres"); PostgreSQL databases are dropped when the test
// ends.
func engineOptions(t *testing.T, engine string) options {
	t.Helper()
	opts := options{adminPassword: e2eAdminPassword}
	if engine == "postgres" {
		opts.postgres = dbtest.PostgresServerURL()
		opts.dbPrefix = "e2e_" + strings.ToLower(rand.Text()[:8]) + "_"
		t.Cleanup(func() { dropDatabases(t, opts.postgres, opts.dbPrefix) })
	}
	return opts
}

// expectReply checks an answer that a goroutine other than the test's own
// got from send: it returns what is wrong instead of ending the test. v,
// when not nil, receives the decoded body.
func expectReply(r reply, err error, status int, v any) error {
	if err != nil {
		return err
	}
	if r.status != status {
		return fmt.Errorf("status %d, want %d: %s", r.status, status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			return fmt.Errorf("decode %s: %w", r.body, err)
		}
	}
	return nil
}

// newIdempotencyKey returns a key no other request uses.
func newIdempotencyKey() string { return "e2e-" + rand.Text() }

// placeOrder posts a checkout under key and returns the answer as is.
func (a api) placeOrder(t *testing.T, token, key string, body any) reply {
	t.Helper()
	if key == "" {
		return a.do(t, http.MethodPost, "/api/v1/orders", token, body)
	}
	return a.do(t, http.MethodPost, "/api/v1/orders", token, body, "Idempotency-Key", key)
}

// mustPlace places an order that must be accepted (202, pending).
func (a api) mustPlace(t *testing.T, token string, body any) order {
	t.Helper()
	var o order
	a.placeOrder(t, token, newIdempotencyKey(), body).decode(t, http.StatusAccepted, &o)
	require.Equal(t, pending, o.Status)
	require.NotEmpty(t, o.ID)
	return o
}

func (a api) order(t *testing.T, token, id string) order {
	t.Helper()
	var o order
	a.do(t, http.MethodGet, "/api/v1/orders/"+id, token, nil).decode(t, http.StatusOK, &o)
	return o
}

// waitOrder polls the order until done says so.
func (a api) waitOrder(t *testing.T, token, id string, timeout time.Duration, what string, done func(order) bool) order {
	t.Helper()
	var o order
	waitFor(t, timeout, "order "+id+" "+what, func() (bool, string) {
		o = a.order(t, token, id)
		return done(o), fmt.Sprintf("%+v", o)
	})
	return o
}

// settled waits until the checkout of the order has finished: it is no
// longer pending.
func (a api) settled(t *testing.T, token, id string) order {
	t.Helper()
	return a.waitOrder(t, token, id, settleTimeout, "settles", func(o order) bool { return o.Status != pending })
}

// waitStatus waits for the order to reach status.
func (a api) waitStatus(t *testing.T, token, id, status string) order {
	t.Helper()
	return a.waitOrder(t, token, id, settleTimeout, "becomes "+status, func(o order) bool { return o.Status == status })
}

func (a api) orders(t *testing.T, token string) []order {
	t.Helper()
	var page struct {
		Orders        []order `json:"orders"`
		NextPageToken string  `json:"next_page_token"`
	}
	a.do(t, http.MethodGet, "/api/v1/orders?page_size=100", token, nil).decode(t, http.StatusOK, &page)
	require.Empty(t, page.NextPageToken, "more orders than a test places")
	return page.Orders
}

func (a api) orderEvents(t *testing.T, token, id string) []orderEvent {
	t.Helper()
	var evs struct {
		Events []orderEvent `json:"events"`
	}
	a.do(t, http.MethodGet, "/api/v1/orders/"+id+"/events", token, nil).decode(t, http.StatusOK, &evs)
	for i, e := range evs.Events {
		require.Equal(t, i+1, e.Version, "events come oldest first, numbered from 1")
		require.False(t, e.OccurredAt.IsZero())
		if i > 0 {
			require.False(t, e.OccurredAt.Before(evs.Events[i-1].OccurredAt), "events are in time order")
		}
	}
	return evs.Events
}

func eventTypes(evs []orderEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func (a api) cancel(t *testing.T, token, id string) reply {
	t.Helper()
	return a.do(t, http.MethodPost, "/api/v1/orders/"+id+"/cancel", token, map[string]any{})
}

// payments lists the order's payments. Payments knows an order only by its
// payments, so an order that has none is Not Found there, like another
// user's: both read as none.
func (a api) payments(t *testing.T, token, orderID string) []payment {
	t.Helper()
	r := a.do(t, http.MethodGet, "/api/v1/payments?order_id="+url.QueryEscape(orderID), token, nil)
	if r.status == http.StatusNotFound {
		requireProblem(t, r, http.StatusNotFound)
		return nil
	}
	var list struct {
		Payments []payment `json:"payments"`
	}
	r.decode(t, http.StatusOK, &list)
	require.NotEmpty(t, list.Payments, "an order without payments is not found instead")
	for _, p := range list.Payments {
		require.Equal(t, orderID, p.OrderID)
	}
	return list.Payments
}

func (a api) notifications(t *testing.T, token string) []notification {
	t.Helper()
	var list struct {
		Notifications []notification `json:"notifications"`
	}
	a.do(t, http.MethodGet, "/api/v1/notifications?page_size=100", token, nil).decode(t, http.StatusOK, &list)
	return list.Notifications
}

// notificationsAbout are the caller's notifications of kind that name the
// order.
func (a api) notificationsAbout(t *testing.T, token, kind, orderID string) []notification {
	t.Helper()
	var out []notification
	for _, n := range a.notifications(t, token) {
		if n.Kind == kind && strings.Contains(n.Subject+n.Body, orderID) {
			out = append(out, n)
		}
	}
	return out
}

// waitNotified waits until the caller was sent a notification of kind
// about the order, and requires it was sent once.
func (a api) waitNotified(t *testing.T, token, kind, orderID string) notification {
	t.Helper()
	waitFor(t, settleTimeout, kind+" notification for "+orderID, func() (bool, string) {
		got := a.notificationsAbout(t, token, kind, orderID)
		return len(got) > 0, fmt.Sprintf("%d", len(got))
	})
	got := a.notificationsAbout(t, token, kind, orderID)
	require.Len(t, got, 1, "%s for %s sent once", kind, orderID)
	return got[0]
}

func (a api) stock(t *testing.T, admin, sku string) stock {
	t.Helper()
	var s stock
	a.do(t, http.MethodGet, "/api/v1/inventory/"+url.PathEscape(sku), admin, nil).decode(t, http.StatusOK, &s)
	require.Equal(t, sku, s.SKU)
	require.Equal(t, s.OnHand-s.Reserved, s.Available, "available is on hand less reserved: %+v", s)
	return s
}

func (a api) setStock(t *testing.T, admin, sku string, onHand int) stock {
	t.Helper()
	var s stock
	a.do(t, http.MethodPut, "/api/v1/inventory/"+url.PathEscape(sku), admin, map[string]int{"on_hand": onHand}).
		decode(t, http.StatusOK, &s)
	require.Equal(t, onHand, s.OnHand)
	return s
}

// stockedProduct creates a product no other test uses, with onHand units
// in stock.
func (a api) stockedProduct(t *testing.T, admin string, priceCents, onHand int) product {
	t.Helper()
	sku := "E2E-" + rand.Text()[:10]
	var p product
	a.do(t, http.MethodPost, "/api/v1/products", admin, map[string]any{
		"sku": sku, "name": "Checkout Test " + sku, "description": "A product the checkout tests buy.",
		"price_cents": priceCents, "currency": "USD", "categories": []string{"e2e"},
	}).decode(t, http.StatusCreated, &p)
	a.setStock(t, admin, sku, onHand)
	return p
}

// requireStock requires the sku's stock to be settled at onHand units on
// hand and sold sold, with nothing held.
func (a api) requireStock(t *testing.T, admin, sku string, onHand, sold int) {
	t.Helper()
	s := a.stock(t, admin, sku)
	require.Equal(t, stock{SKU: sku, OnHand: onHand, Available: onHand, Sold: sold}, s)
}

// statuses are the payments' statuses, sorted; nil when there are none.
func statuses(ps []payment) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Status)
	}
	slices.Sort(out)
	return out
}
