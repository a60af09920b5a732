package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestCheckout drives the checkout through the gateway of `mercato up`, on
// SQLite and on PostgreSQL. The subtests share one running system per
// engine; each buys its own products, so none sees another's stock.
func TestCheckout(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			s := startSystem(t, engineOptions(t, engine))
			admin := s.login(t, s.adminEmail, s.adminPassword).AccessToken

			t.Run("the demo catalog is in stock", func(t *testing.T) { testSeededStock(t, s, admin) })
			t.Run("browse, fill the cart, check out, refund", func(t *testing.T) { testCheckoutJourney(t, s, admin) })
			t.Run("cancel right after placing", func(t *testing.T) { testCancelAtOnce(t, s, admin) })
			t.Run("buy now leaves the cart alone", func(t *testing.T) { testBuyNowKeepsCart(t, s, admin) })
			t.Run("a read can wait for the outcome", func(t *testing.T) { testWaitForOutcome(t, s, admin) })
			t.Run("admin manages stock", func(t *testing.T) { testAdminStock(t, s, admin) })
			t.Run("bad orders are refused and change nothing", func(t *testing.T) { testBadOrders(t, s, admin) })
			t.Run("orders are private", func(t *testing.T) { testOrderPrivacy(t, s, admin) })
			t.Run("a request sent twice at once is one order", func(t *testing.T) { testConcurrentRetries(t, s, admin) })
			t.Run("declined payments cancel the order", func(t *testing.T) { testDeclines(t, s, admin) })
			t.Run("concurrent checkouts never oversell", func(t *testing.T) { testNoOversell(t, s, admin) })
		})
	}
}

func testSeededStock(t *testing.T, s *system, admin string) {
	for _, sku := range seededSKUs {
		s.requireStock(t, admin, sku, 100, 0)
	}
}

func testCheckoutJourney(t *testing.T, s *system, admin string) {
	// Register, log in, browse.
	email := uniqueEmail("journey")
	registered := s.register(t, email, "correct horse battery", "Jo Journey")
	token := s.login(t, email, "correct horse battery").AccessToken
	tea := s.listAll(t, url.Values{"category": {"tea"}}, 100)
	byID := map[string]product{}
	var sencha, teapot product
	for _, p := range tea {
		byID[p.ID] = p
		switch p.SKU {
		case "TEA-SEN-100":
			sencha = p
		case "KIT-TPT-CAST":
			teapot = p
		}
	}
	require.NotEmpty(t, sencha.ID, "the sencha is in the tea category")
	require.NotEmpty(t, teapot.ID, "the teapot is in the tea category")
	var got product
	s.do(t, http.MethodGet, "/api/v1/products/"+sencha.ID, "", nil).decode(t, http.StatusOK, &got)
	require.Equal(t, sencha, got)
	senchaBefore, teapotBefore := s.stock(t, admin, sencha.SKU), s.stock(t, admin, teapot.SKU)

	// Fill the cart: a second PUT of the same product sets its quantity.
	for _, it := range []itemInput{{sencha.ID, 1}, {teapot.ID, 1}, {sencha.ID, 2}} {
		r := s.do(t, http.MethodPut, "/api/v1/cart/items/"+it.ProductID, token, map[string]int{"quantity": it.Quantity})
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	}
	var cart struct {
		Items []itemInput `json:"items"`
	}
	s.do(t, http.MethodGet, "/api/v1/cart", token, nil).decode(t, http.StatusOK, &cart)
	require.ElementsMatch(t, []itemInput{{sencha.ID, 2}, {teapot.ID, 1}}, cart.Items)

	// Check out the cart: no items in the body.
	key := newIdempotencyKey()
	body := checkout{ShippingAddress: &shipTo, PaymentToken: "tok_visa"}
	var placed order
	r := s.placeOrder(t, token, key, body)
	r.decode(t, http.StatusAccepted, &placed)
	require.NotEmpty(t, r.header.Get("X-Request-Id"))
	require.Equal(t, pending, placed.Status)
	require.Equal(t, registered.ID, placed.UserID)
	require.Equal(t, shipTo, placed.ShippingAddress)
	require.Equal(t, "USD", placed.Currency)
	wantTotal := 0
	require.Len(t, placed.Items, 2)
	for _, it := range placed.Items {
		p := byID[it.ProductID]
		require.Equal(t, p.SKU, it.SKU, "%+v", it)
		require.Equal(t, p.Name, it.Name)
		require.Equal(t, p.PriceCents, it.UnitPriceCents, "prices come from the catalog")
		require.Equal(t, it.Quantity*it.UnitPriceCents, it.LineTotalCents)
		wantTotal += it.LineTotalCents
	}
	require.Equal(t, 2*sencha.PriceCents+teapot.PriceCents, wantTotal)
	require.Equal(t, wantTotal, placed.TotalCents)

	// The same key with the same body is the same order, not a second one.
	var again order
	s.placeOrder(t, token, key, body).decode(t, http.StatusAccepted, &again)
	require.Equal(t, placed.ID, again.ID)

	done := s.waitOrder(t, token, placed.ID, 5*time.Second, "is confirmed", func(o order) bool { return o.Status != pending })
	require.Equal(t, confirmed, done.Status, "reason: %q", done.Reason)
	require.Empty(t, done.Reason)
	require.False(t, done.Refunded)
	require.Equal(t, placed.TotalCents, done.TotalCents)
	s.placeOrder(t, token, key, body).decode(t, http.StatusAccepted, &again)
	require.Equal(t, done.ID, again.ID, "a retry after the checkout still finds the order")
	require.Equal(t, confirmed, again.Status)
	listed := s.orders(t, token)
	require.Len(t, listed, 1)
	require.Equal(t, done.ID, listed[0].ID)

	pays := s.payments(t, token, done.ID)
	require.Len(t, pays, 1, "one payment")
	require.Equal(t, "captured", pays[0].Status)
	require.Equal(t, done.TotalCents, pays[0].AmountCents)
	require.Equal(t, "USD", pays[0].Currency)
	require.Equal(t, done.ID, pays[0].OrderID)
	require.Equal(t, registered.ID, pays[0].UserID)
	require.Equal(t, "visa", pays[0].CardBrand)

	note := s.waitNotified(t, token, "order.confirmed", done.ID)
	require.Equal(t, email, note.Recipient)
	require.Equal(t, registered.ID, note.UserID)

	waitFor(t, settleTimeout, "the cart is emptied", func() (bool, string) {
		s.do(t, http.MethodGet, "/api/v1/cart", token, nil).decode(t, http.StatusOK, &cart)
		return len(cart.Items) == 0, fmt.Sprint(cart.Items)
	})

	evs := s.orderEvents(t, token, done.ID)
	require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentAuthorized", "StockCommitted", "PaymentCaptured", "OrderConfirmed"},
		eventTypes(evs))
	require.Equal(t, done.ID, evs[0].Data["order_id"])
	require.EqualValues(t, done.TotalCents, evs[0].Data["total_cents"])
	require.Equal(t, pays[0].ID, evs[2].Data["payment_id"])

	s.requireStock(t, admin, sencha.SKU, senchaBefore.OnHand-2, senchaBefore.Sold+2)
	s.requireStock(t, admin, teapot.SKU, teapotBefore.OnHand-1, teapotBefore.Sold+1)

	// Cancelling a confirmed order refunds and restocks it.
	var refunded order
	s.cancel(t, token, done.ID).decode(t, http.StatusOK, &refunded)
	require.Equal(t, done.ID, refunded.ID)
	refunded = s.waitOrder(t, token, done.ID, settleTimeout, "is refunded", func(o order) bool { return o.Status == cancelled })
	require.True(t, refunded.Refunded)
	require.Equal(t, "cancelled by customer", refunded.Reason)
	pays = s.payments(t, token, done.ID)
	require.Len(t, pays, 1)
	require.Equal(t, "refunded", pays[0].Status)
	s.requireStock(t, admin, sencha.SKU, senchaBefore.OnHand, senchaBefore.Sold)
	s.requireStock(t, admin, teapot.SKU, teapotBefore.OnHand, teapotBefore.Sold)
	s.waitNotified(t, token, "order.refunded", done.ID)
	evs = s.orderEvents(t, token, done.ID)
	require.Equal(t, []string{"RefundRequested", "PaymentRefunded", "StockRestocked", "OrderCancelled"}, eventTypes(evs[6:]))

	// A second cancel finds nothing left to do.
	p := requireProblem(t, s.cancel(t, token, done.ID), http.StatusConflict)
	require.Equal(t, "order is already cancelled", p.Detail)
	require.Len(t, s.orderEvents(t, token, done.ID), len(evs))
	require.Equal(t, []string{"refunded"}, statuses(s.payments(t, token, done.ID)))
	s.requireStock(t, admin, sencha.SKU, senchaBefore.OnHand, senchaBefore.Sold)
}

// testCancelAtOnce cancels an order right after placing it, while the
// card provider answers at once: where the cancel lands in the checkout is
// a race (TestOutages makes it land deterministically during a slow
// authorization). Before the stock commit it is compensated (release and
// void); past it the checkout is finished and refunded. Either way nothing
// may stay held or charged.
func testCancelAtOnce(t *testing.T, s *system, admin string) {
	token := s.customer(t)
	p := s.stockedProduct(t, admin, 1250, 5)
	placed := s.mustPlace(t, token, buy(p.ID, 2, "tok_visa"))
	var answer order
	s.cancel(t, token, placed.ID).decode(t, http.StatusOK, &answer)
	require.Equal(t, placed.ID, answer.ID)

	done := s.waitStatus(t, token, placed.ID, cancelled)
	require.Equal(t, "cancelled by customer", done.Reason)
	s.requireStock(t, admin, p.SKU, 5, 0)
	types := eventTypes(s.orderEvents(t, token, placed.ID))
	require.Equal(t, "OrderCancelled", types[len(types)-1])
	pays := statuses(s.payments(t, token, placed.ID))
	if slices.Contains(types, "RefundRequested") {
		t.Logf("the cancel came after the stock commit: finished, then refunded: %v", types)
		require.True(t, done.Refunded)
		require.NotContains(t, types, "CancellationRequested")
		require.Contains(t, types, "OrderConfirmed", "every capture belongs to a confirmed order")
		require.Equal(t, []string{"refunded"}, pays)
		s.waitNotified(t, token, "order.refunded", placed.ID)
	} else {
		t.Logf("the cancel overtook the stock commit: %v", types)
		require.False(t, done.Refunded)
		require.Contains(t, types, "CancellationRequested")
		require.NotContains(t, types, "PaymentCaptured")
		require.Subset(t, []string{"voided"}, pays, "an authorization is voided, nothing captured")
		s.waitNotified(t, token, "order.cancelled", placed.ID)
	}
	requireProblem(t, s.cancel(t, token, placed.ID), http.StatusConflict)
}

// testBuyNowKeepsCart buys a product that is also in the buyer's cart by
// listing it in the order: the cart keeps it. Only an order that checks
// out the cart takes what it bought out of it.
func testBuyNowKeepsCart(t *testing.T, s *system, admin string) {
	p := s.stockedProduct(t, admin, 830, 10)
	buyer := s.customer(t)
	var cart struct {
		Items []itemInput `json:"items"`
	}
	r := s.do(t, http.MethodPut, "/api/v1/cart/items/"+p.ID, buyer, map[string]int{"quantity": 2})
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	bought := s.mustPlace(t, buyer, buy(p.ID, 1, "tok_visa"))
	s.waitStatus(t, buyer, bought.ID, confirmed)
	s.waitNotified(t, buyer, "order.confirmed", bought.ID)

	// The cart consumes order.confirmed in publication order: once it has
	// taken a later cart checkout out of another shopper's cart, it has
	// handled the buy-now order too.
	other := s.customer(t)
	r = s.do(t, http.MethodPut, "/api/v1/cart/items/"+p.ID, other, map[string]int{"quantity": 1})
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	fromCart := s.mustPlace(t, other, checkout{ShippingAddress: &shipTo, PaymentToken: "tok_visa"})
	s.waitStatus(t, other, fromCart.ID, confirmed)
	waitFor(t, settleTimeout, "the checked-out cart is emptied", func() (bool, string) {
		s.do(t, http.MethodGet, "/api/v1/cart", other, nil).decode(t, http.StatusOK, &cart)
		return len(cart.Items) == 0, fmt.Sprint(cart.Items)
	})

	s.do(t, http.MethodGet, "/api/v1/cart", buyer, nil).decode(t, http.StatusOK, &cart)
	require.Equal(t, []itemInput{{p.ID, 2}}, cart.Items, "a buy-now order leaves the cart as it was")
	s.requireStock(t, admin, p.SKU, 8, 2)
}

func testAdminStock(t *testing.T, s *system, admin string) {
	p := s.stockedProduct(t, admin, 990, 3)
	s.requireStock(t, admin, p.SKU, 3, 0)
	s.setStock(t, admin, p.SKU, 12)
	s.requireStock(t, admin, p.SKU, 12, 0)
	s.requireStock(t, admin, "E2E-NEVER-STOCKED", 0, 0)

	customer := s.customer(t)
	for _, tc := range []struct {
		name   string
		r      reply
		status int
	}{
		{"customer reads", s.do(t, http.MethodGet, "/api/v1/inventory/"+p.SKU, customer, nil), http.StatusForbidden},
		{"customer writes", s.do(t, http.MethodPut, "/api/v1/inventory/"+p.SKU, customer, map[string]int{"on_hand": 1000}), http.StatusForbidden},
		{"anonymous reads", s.do(t, http.MethodGet, "/api/v1/inventory/"+p.SKU, "", nil), http.StatusUnauthorized},
		{"anonymous writes", s.do(t, http.MethodPut, "/api/v1/inventory/"+p.SKU, "", map[string]int{"on_hand": 1000}), http.StatusUnauthorized},
		{"negative stock", s.do(t, http.MethodPut, "/api/v1/inventory/"+p.SKU, admin, map[string]int{"on_hand": -1}), http.StatusBadRequest},
		{"stock as a word", s.do(t, http.MethodPut, "/api/v1/inventory/"+p.SKU, admin, map[string]string{"on_hand": "many"}), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) { requireProblem(t, tc.r, tc.status) })
	}
	s.requireStock(t, admin, p.SKU, 12, 0)
	// Setting stock below what is reserved (409) needs an order holding
	// stock: see TestOutages.
}

func testBadOrders(t *testing.T, s *system, admin string) {
	token := s.customer(t)
	p := s.stockedProduct(t, admin, 700, 10)
	// A first order under a key, so that the key can be reused wrongly.
	usedKey := newIdempotencyKey()
	var first order
	s.placeOrder(t, token, usedKey, buy(p.ID, 1, "tok_visa")).decode(t, http.StatusAccepted, &first)
	first = s.waitStatus(t, token, first.ID, confirmed)
	// A rejected order, to cancel in a terminal state.
	var tooMany order
	s.placeOrder(t, token, newIdempotencyKey(), buy(p.ID, 50, "tok_visa")).decode(t, http.StatusAccepted, &tooMany)
	tooMany = s.waitStatus(t, token, tooMany.ID, rejected)
	require.Equal(t, "out of stock: "+p.SKU, tooMany.Reason)
	s.requireStock(t, admin, p.SKU, 9, 1)
	before := s.orders(t, token)
	require.Len(t, before, 2)

	withAddress := func(change func(*address)) checkout {
		a := shipTo
		change(&a)
		c := buy(p.ID, 1, "tok_visa")
		c.ShippingAddress = &a
		return c
	}
	valid := `"shipping_address":{"name":"A","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},"payment_token":"tok_visa"`
	cases := []struct {
		name   string
		key    string
		body   any
		status int
		detail string
	}{
		{"unknown product", "", buy(newUUID(), 1, "tok_visa"), http.StatusBadRequest, "unknown product"},
		{"product id that is not an id", "", buy("not-a-product", 1, "tok_visa"), http.StatusBadRequest, "unknown product"},
		{"no product id", "", buy("", 1, "tok_visa"), http.StatusBadRequest, "product_id"},
		{"quantity 0", "", buy(p.ID, 0, "tok_visa"), http.StatusBadRequest, "quantity"},
		{"quantity -1", "", buy(p.ID, -1, "tok_visa"), http.StatusBadRequest, "quantity"},
		{"quantity 101", "", buy(p.ID, 101, "tok_visa"), http.StatusBadRequest, "quantity"},
		{"quantity beyond int32", "", raw(`{"items":[{"product_id":"` + p.ID + `","quantity":99999999999}],` + valid + `}`), http.StatusBadRequest, ""},
		{"fractional quantity", "", raw(`{"items":[{"product_id":"` + p.ID + `","quantity":1.5}],` + valid + `}`), http.StatusBadRequest, ""},
		{"quantity as a word", "", raw(`{"items":[{"product_id":"` + p.ID + `","quantity":"one"}],` + valid + `}`), http.StatusBadRequest, ""},
		{"one product over 100 in total", "", checkout{Items: []itemInput{{p.ID, 60}, {p.ID, 41}}, ShippingAddress: &shipTo, PaymentToken: "tok_visa"}, http.StatusBadRequest, "at most 100"},
		{"empty cart", "", checkout{ShippingAddress: &shipTo, PaymentToken: "tok_visa"}, http.StatusBadRequest, "cart is empty"},
		{"missing Idempotency-Key", "-", buy(p.ID, 1, "tok_visa"), http.StatusBadRequest, "Idempotency-Key"},
		{"blank Idempotency-Key", "   ", buy(p.ID, 1, "tok_visa"), http.StatusBadRequest, "Idempotency-Key"},
		{"Idempotency-Key too long", strings.Repeat("k", 256), buy(p.ID, 1, "tok_visa"), http.StatusBadRequest, "Idempotency-Key"},
		{"same key, other body", usedKey, buy(p.ID, 2, "tok_visa"), http.StatusUnprocessableEntity, "Idempotency-Key"},
		{"same key, other token", usedKey, buy(p.ID, 1, "tok_mastercard"), http.StatusUnprocessableEntity, "Idempotency-Key"},
		{"no payment token", "", buy(p.ID, 1, ""), http.StatusBadRequest, "payment_token"},
		{"malformed payment token", "", buy(p.ID, 1, "4242 4242 4242 4242"), http.StatusBadRequest, "payment_token"},
		// Well-formed, but not a card the provider knows: payments is
		// asked before the order is accepted.
		{"unknown payment token", "", buy(p.ID, 1, "tok_unknownCard"), http.StatusBadRequest, "payment_token is not a card the payment provider knows"},
		{"no address", "", checkout{Items: []itemInput{{p.ID, 1}}, PaymentToken: "tok_visa"}, http.StatusBadRequest, "shipping_address"},
		{"address as a string", "", raw(`{"items":[{"product_id":"` + p.ID + `","quantity":1}],"shipping_address":"1 Main St","payment_token":"tok_visa"}`), http.StatusBadRequest, ""},
		{"country not ISO", "", withAddress(func(a *address) { a.Country = "USA" }), http.StatusBadRequest, "country"},
		{"no name", "", withAddress(func(a *address) { a.Name = "  " }), http.StatusBadRequest, "name"},
		{"postal code with symbols", "", withAddress(func(a *address) { a.PostalCode = "<script>" }), http.StatusBadRequest, "postal_code"},
		{"control characters", "", withAddress(func(a *address) { a.Line1 = "1 Main St\x00" }), http.StatusBadRequest, "shipping_address"},
		{"malformed JSON", "", raw(`{"items":[{"product_id":`), http.StatusBadRequest, ""},
		{"price from the client", "", raw(`{"items":[{"product_id":"` + p.ID + `","quantity":1,"unit_price_cents":1}],` + valid + `}`), http.StatusBadRequest, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			switch key {
			case "":
				key = newIdempotencyKey()
			case "-":
				key = ""
			}
			pr := requireProblem(t, s.placeOrder(t, token, key, tc.body), tc.status)
			require.Contains(t, pr.Detail, tc.detail)
		})
	}

	unknown := newUUID()
	for _, tc := range []struct {
		name   string
		r      reply
		status int
	}{
		{"cancel a rejected order", s.cancel(t, token, tooMany.ID), http.StatusConflict},
		{"cancel an unknown order", s.cancel(t, token, unknown), http.StatusNotFound},
		{"cancel with a reason too long", s.do(t, http.MethodPost, "/api/v1/orders/"+first.ID+"/cancel", token,
			map[string]string{"reason": strings.Repeat("why ", 100)}), http.StatusBadRequest},
		{"get an unknown order", s.do(t, http.MethodGet, "/api/v1/orders/"+unknown, token, nil), http.StatusNotFound},
		{"events of an unknown order", s.do(t, http.MethodGet, "/api/v1/orders/"+unknown+"/events", token, nil), http.StatusNotFound},
		{"payments of an unknown order", s.do(t, http.MethodGet, "/api/v1/payments?order_id="+unknown, token, nil), http.StatusNotFound},
		{"payments without an order", s.do(t, http.MethodGet, "/api/v1/payments", token, nil), http.StatusBadRequest},
		{"page_size 101", s.do(t, http.MethodGet, "/api/v1/orders?page_size=101", token, nil), http.StatusBadRequest},
		{"made-up page_token", s.do(t, http.MethodGet, "/api/v1/orders?page_token=abc", token, nil), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) { requireProblem(t, tc.r, tc.status) })
	}

	// None of it left anything behind.
	require.Equal(t, before, s.orders(t, token), "no order was created or changed")
	s.requireStock(t, admin, p.SKU, 9, 1)
	require.Equal(t, confirmed, s.order(t, token, first.ID).Status)
	require.Equal(t, []string{"captured"}, statuses(s.payments(t, token, first.ID)))
}

func testOrderPrivacy(t *testing.T, s *system, admin string) {
	p := s.stockedProduct(t, admin, 1500, 5)
	alice, bob := s.customer(t), s.customer(t)
	theirs := s.mustPlace(t, alice, buy(p.ID, 1, "tok_visa"))
	theirs = s.waitStatus(t, alice, theirs.ID, confirmed)
	s.waitNotified(t, alice, "order.confirmed", theirs.ID)
	mine := s.mustPlace(t, bob, buy(p.ID, 1, "tok_visa"))
	s.waitStatus(t, bob, mine.ID, confirmed)

	id := theirs.ID
	for _, tc := range []struct {
		name, method, path, token string
		status                    int
	}{
		{"another's order", http.MethodGet, "/api/v1/orders/" + id, bob, http.StatusNotFound},
		{"another's history", http.MethodGet, "/api/v1/orders/" + id + "/events", bob, http.StatusNotFound},
		{"another's payments", http.MethodGet, "/api/v1/payments?order_id=" + id, bob, http.StatusNotFound},
		{"cancel another's order", http.MethodPost, "/api/v1/orders/" + id + "/cancel", bob, http.StatusNotFound},
		{"anonymous order", http.MethodGet, "/api/v1/orders/" + id, "", http.StatusUnauthorized},
		{"anonymous history", http.MethodGet, "/api/v1/orders/" + id + "/events", "", http.StatusUnauthorized},
		{"anonymous cancel", http.MethodPost, "/api/v1/orders/" + id + "/cancel", "", http.StatusUnauthorized},
		{"anonymous list", http.MethodGet, "/api/v1/orders", "", http.StatusUnauthorized},
		{"anonymous checkout", http.MethodPost, "/api/v1/orders", "", http.StatusUnauthorized},
		{"anonymous payments", http.MethodGet, "/api/v1/payments?order_id=" + id, "", http.StatusUnauthorized},
		{"anonymous notifications", http.MethodGet, "/api/v1/notifications", "", http.StatusUnauthorized},
		{"anonymous cart", http.MethodGet, "/api/v1/cart", "", http.StatusUnauthorized},
		{"forged token", http.MethodGet, "/api/v1/orders/" + id, tamper(alice), http.StatusUnauthorized},
		{"customer reads stock", http.MethodGet, "/api/v1/inventory/" + p.SKU, alice, http.StatusForbidden},
		{"customer sets stock", http.MethodPut, "/api/v1/inventory/" + p.SKU, alice, http.StatusForbidden},
		{"customer lists stuck orders", http.MethodGet, "/api/v1/admin/orders/stuck", alice, http.StatusForbidden},
		{"anonymous lists stuck orders", http.MethodGet, "/api/v1/admin/orders/stuck", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			switch {
			case strings.HasPrefix(tc.path, "/api/v1/inventory/") && tc.method == http.MethodPut:
				body = map[string]any{"on_hand": 1000}
			case tc.method == http.MethodPost:
				body = buy(p.ID, 1, "tok_visa")
				if strings.HasSuffix(tc.path, "/cancel") {
					body = map[string]any{"reason": "not mine"}
				}
			}
			requireProblem(t, s.do(t, tc.method, tc.path, tc.token, body, "Idempotency-Key", newIdempotencyKey()), tc.status)
		})
	}

	bobs := s.orders(t, bob)
	require.Len(t, bobs, 1, "a customer lists only their own orders")
	require.Equal(t, mine.ID, bobs[0].ID)
	for _, n := range s.notifications(t, bob) {
		require.NotContains(t, n.Subject+n.Body, theirs.ID, "another's notification leaked")
		require.NotEqual(t, theirs.UserID, n.UserID)
	}

	// Nothing bob tried changed alice's order; an admin sees it.
	require.Equal(t, theirs, s.order(t, alice, id))
	require.Equal(t, theirs, s.order(t, admin, id))
	require.Equal(t, []string{"captured"}, statuses(s.payments(t, admin, id)))
	var all struct {
		Orders []order `json:"orders"`
	}
	s.do(t, http.MethodGet, "/api/v1/orders?page_size=100", admin, nil).decode(t, http.StatusOK, &all)
	var ids []string
	for _, o := range all.Orders {
		ids = append(ids, o.ID)
	}
	require.Subset(t, ids, []string{theirs.ID, mine.ID}, "an admin lists everyone's orders")
	s.requireStock(t, admin, p.SKU, 3, 2)

	// Confirmed orders are nothing an operator has to look at.
	var stuck struct {
		Orders []struct {
			Order order `json:"order"`
		} `json:"orders"`
	}
	s.do(t, http.MethodGet, "/api/v1/admin/orders/stuck?page_size=100", admin, nil).decode(t, http.StatusOK, &stuck)
	for _, o := range stuck.Orders {
		require.NotContains(t, []string{theirs.ID, mine.ID}, o.Order.ID)
	}

	// An admin may cancel anyone's order.
	var byAdmin order
	s.cancel(t, admin, id).decode(t, http.StatusOK, &byAdmin)
	byAdmin = s.waitStatus(t, alice, id, cancelled)
	require.Equal(t, "cancelled by an administrator", byAdmin.Reason)
	require.True(t, byAdmin.Refunded)
	require.Equal(t, []string{"refunded"}, statuses(s.payments(t, alice, id)))
	s.requireStock(t, admin, p.SKU, 4, 1)
}

// testConcurrentRetries sends the same checkout under one key several
// times at once, as an impatient client would: one order results. Keys
// belong to their user: another user's request under the same key is an
// order of its own.
func testConcurrentRetries(t *testing.T, s *system, admin string) {
	const copies = 8
	p := s.stockedProduct(t, admin, 800, 20)
	alice, bob := s.customer(t), s.customer(t)
	key := newIdempotencyKey()
	body := buy(p.ID, 3, "tok_visa")

	ids := make(chan string, copies+1)
	var g errgroup.Group
	start := make(chan struct{})
	for i := range copies + 1 {
		token := alice
		if i == copies {
			token = bob
		}
		g.Go(func() error {
			<-start
			r, err := s.send(t.Context(), http.MethodPost, "/api/v1/orders", token, body, "Idempotency-Key", key)
			var o order
			if err := expectReply(r, err, http.StatusAccepted, &o); err != nil {
				return fmt.Errorf("checkout: %w", err)
			}
			if token == alice {
				ids <- o.ID
			}
			return nil
		})
	}
	close(start)
	require.NoError(t, g.Wait())
	close(ids)
	var got []string
	for id := range ids {
		got = append(got, id)
	}
	require.Len(t, got, copies)
	for _, id := range got {
		require.Equal(t, got[0], id, "every copy answers with the same order")
	}

	alices, bobs := s.orders(t, alice), s.orders(t, bob)
	require.Len(t, alices, 1)
	require.Len(t, bobs, 1)
	require.Equal(t, got[0], alices[0].ID)
	require.NotEqual(t, alices[0].ID, bobs[0].ID)
	s.waitStatus(t, alice, alices[0].ID, confirmed)
	s.waitStatus(t, bob, bobs[0].ID, confirmed)
	require.Equal(t, []string{"captured"}, statuses(s.payments(t, alice, alices[0].ID)))
	s.requireStock(t, admin, p.SKU, 14, 6)
}

func testDeclines(t *testing.T, s *system, admin string) {
	for token, code := range map[string]string{"tok_chargeDeclined": "card_declined", "tok_insufficientFunds": "insufficient_funds"} {
		t.Run(token, func(t *testing.T) {
			user := s.customer(t)
			p := s.stockedProduct(t, admin, 4200, 5)
			placed := s.mustPlace(t, user, buy(p.ID, 2, token))
			done := s.settled(t, user, placed.ID)
			require.Equal(t, cancelled, done.Status)
			require.Equal(t, "payment declined: "+code, done.Reason)
			require.False(t, done.Refunded)

			s.requireStock(t, admin, p.SKU, 5, 0)
			pays := s.payments(t, user, placed.ID)
			require.Len(t, pays, 1)
			require.Equal(t, "declined", pays[0].Status)
			require.Equal(t, code, pays[0].DeclineCode)
			require.Equal(t, []string{"OrderPlaced", "StockReserved", "PaymentDeclined", "StockReleased", "OrderCancelled"},
				eventTypes(s.orderEvents(t, user, placed.ID)))
			s.waitNotified(t, user, "order.cancelled", placed.ID)
			requireProblem(t, s.cancel(t, user, placed.ID), http.StatusConflict)
		})
	}
}

// testNoOversell has more shoppers than units check out at once, while an
// administrator keeps reading the stock.
func testNoOversell(t *testing.T, s *system, admin string) {
	const units, shoppers = 5, 20
	p := s.stockedProduct(t, admin, 2500, units)

	tokens := s.customers(t, shoppers)

	// The sampler reads the stock until told to stop, keeping every
	// reading: on_hand + sold = units must hold in each.
	stop := make(chan struct{})
	samples := make(chan []stock, 1)
	go func() {
		var seen []stock
		defer func() { samples <- seen }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := s.send(context.WithoutCancel(t.Context()), http.MethodGet, "/api/v1/inventory/"+p.SKU, admin, nil)
			var st stock
			if err := expectReply(r, err, http.StatusOK, &st); err != nil {
				seen = append(seen, stock{SKU: "unreadable: " + err.Error()})
				continue
			}
			seen = append(seen, st)
		}
	}()

	start := make(chan struct{})
	ids := make([]string, shoppers)
	var wg sync.WaitGroup
	errs := make(chan error, shoppers)
	for i, token := range tokens {
		wg.Go(func() {
			<-start
			r, err := s.send(t.Context(), http.MethodPost, "/api/v1/orders", token, buy(p.ID, 1, "tok_visa"),
				"Idempotency-Key", newIdempotencyKey())
			var o order
			if err := expectReply(r, err, http.StatusAccepted, &o); err != nil {
				errs <- fmt.Errorf("shopper %d: %w", i, err)
				return
			}
			ids[i] = o.ID
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "every checkout is accepted; the stock decides later")
	}

	outcomes := map[string]int{}
	for i, id := range ids {
		o := s.settled(t, tokens[i], id)
		outcomes[o.Status]++
		pays := statuses(s.payments(t, tokens[i], id))
		switch o.Status {
		case confirmed:
			require.Equal(t, []string{"captured"}, pays)
		case rejected:
			require.Equal(t, "out of stock: "+p.SKU, o.Reason)
			require.Empty(t, pays, "a rejected order is never charged")
		default:
			t.Fatalf("order %s ended %s (%s)", id, o.Status, o.Reason)
		}
	}
	close(stop)
	seen := <-samples

	require.Equal(t, map[string]int{confirmed: units, rejected: shoppers - units}, outcomes)
	s.requireStock(t, admin, p.SKU, 0, units)
	require.GreaterOrEqual(t, len(seen), 10, "the sampler read the stock while the orders ran")
	for i, st := range seen {
		require.Equal(t, p.SKU, st.SKU, "sample %d", i)
		require.Equal(t, units, st.OnHand+st.Sold, "sample %d: on_hand + sold = initial: %+v", i, st)
		require.True(t, st.OnHand >= 0 && st.Reserved >= 0 && st.Sold >= 0 && st.Available >= 0, "sample %d: %+v", i, st)
		require.Equal(t, st.OnHand-st.Reserved, st.Available, "sample %d: %+v", i, st)
	}
	sold := slices.IndexFunc(seen, func(st stock) bool { return st.Sold > 0 && st.Sold < units })
	t.Logf("%d stock samples; first partial sale seen at sample %d", len(seen), sold)
}

func testWaitForOutcome(t *testing.T, s *system, admin string) {
	p := s.stockedProduct(t, admin, 840, 5)
	buyer := s.customer(t)
	placed := s.mustPlace(t, buyer, buy(p.ID, 1, "tok_visa"))

	// One read that waits answers with the outcome: no polling.
	var got order
	s.do(t, http.MethodGet, "/api/v1/orders/"+placed.ID+"?wait_seconds=8", buyer, nil).decode(t, http.StatusOK, &got)
	require.Equal(t, confirmed, got.Status)

	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/orders/"+placed.ID+"?wait_seconds=11", buyer, nil), http.StatusBadRequest)
	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/orders/"+placed.ID+"?wait_seconds=soon", buyer, nil), http.StatusBadRequest)
	stranger := s.customer(t)
	requireProblem(t, s.do(t, http.MethodGet, "/api/v1/orders/"+placed.ID+"?wait_seconds=1", stranger, nil), http.StatusNotFound)
}

// customers registers n customers, a few at a time, and returns their
// access tokens.
func (a api) customers(t *testing.T, n int) []string {
	t.Helper()
	tokens := make([]string, n)
	var g errgroup.Group
	g.SetLimit(4)
	for i := range tokens {
		g.Go(func() error {
			token, err := a.newCustomer(t.Context())
			tokens[i] = token
			return err
		})
	}
	require.NoError(t, g.Wait())
	return tokens
}

// newCustomer registers a customer and returns their access token; for
// goroutines other than the test's own.
func (a api) newCustomer(ctx context.Context) (string, error) {
	email := uniqueEmail("rush")
	r, err := a.send(ctx, http.MethodPost, "/api/v1/auth/register", "",
		map[string]string{"email": email, "password": "correct horse battery", "name": "Rush"})
	if err := expectReply(r, err, http.StatusCreated, nil); err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	r, err = a.send(ctx, http.MethodPost, "/api/v1/auth/login", "",
		map[string]string{"email": email, "password": "correct horse battery"})
	var pair tokenPair
	if err := expectReply(r, err, http.StatusOK, &pair); err != nil {
		return "", fmt.Errorf("log in: %w", err)
	}
	return pair.AccessToken, nil
}
