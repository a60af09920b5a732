package app_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	cartv1 "github.com/mercato-dev/mercato/internal/gen/cart/v1"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

func TestPlaceOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		t.Run("prices come from the catalog", func(t *testing.T) {
			h := newHarness(t, d)
			v := h.place(h.customer(), app.PlaceOrder{
				IdempotencyKey: "k1", ShippingAddress: address(), PaymentToken: visa,
				Items: []domain.ItemInput{{ProductID: pen, Quantity: 3}, {ProductID: mug, Quantity: 1}, {ProductID: pen, Quantity: 1}},
			})
			require.Equal(t, domain.StatusPending, v.Status)
			require.Equal(t, h.user, v.UserID)
			require.Equal(t, int64(1250+4*99), v.TotalCents)
			require.Equal(t, "EUR", v.Currency)
			require.Equal(t, []domain.Item{
				{ProductID: mug, SKU: "SKU-MUG", Name: "Mug", Quantity: 1, UnitPriceCents: 1250, LineTotalCents: 1250},
				{ProductID: pen, SKU: "SKU-PEN", Name: "Pen", Quantity: 4, UnitPriceCents: 99, LineTotalCents: 396},
			}, v.Items, "duplicate lines are merged")
			require.Equal(t, v, h.get(v.ID), "the answer is the stored order")
			placed := h.outbox(v.ID)["order.placed"]
			require.Equal(t, v.ID, placed.OrderID)
			require.Equal(t, h.user+"@example.test", placed.Email)
			require.Equal(t, v.Items, placed.Items)
		})

		t.Run("an empty request checks out the cart", func(t *testing.T) {
			h := newHarness(t, d)
			h.cart.Set(h.user, &cartv1.CartItem{ProductId: mug, Quantity: 2})
			h.cart.Set(h.other, &cartv1.CartItem{ProductId: pen, Quantity: 9})
			v := h.place(h.customer(), app.PlaceOrder{IdempotencyKey: "cart", ShippingAddress: address(), PaymentToken: visa})
			require.Equal(t, int64(2500), v.TotalCents, "the caller's own cart, read with the caller's token")
			require.Len(t, v.Items, 1)

			_, err := h.orders.PlaceOrder(h.as(h.admin, auth.RoleAdmin), app.PlaceOrder{
				IdempotencyKey: "empty", ShippingAddress: address(), PaymentToken: visa,
			})
			require.ErrorIs(t, err, domain.ErrCartEmpty)
			require.EqualError(t, err, "cart is empty")

			h.cart.SetDown(true)
			_, err = h.orders.PlaceOrder(h.as(h.other, auth.RoleCustomer), app.PlaceOrder{
				IdempotencyKey: "down", ShippingAddress: address(), PaymentToken: visa,
			})
			require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
		})

		t.Run("orders say whether they checked out the cart", func(t *testing.T) {
			h := newHarness(t, d)
			h.cart.Set(h.user, &cartv1.CartItem{ProductId: mug, Quantity: 2})
			fromCart := h.settle(h.place(h.customer(), app.PlaceOrder{IdempotencyKey: "cart", ShippingAddress: address(), PaymentToken: visa}).ID)
			buyNow := h.settle(h.place(h.customer(), order(visa, domain.ItemInput{ProductID: mug, Quantity: 1})).ID)
			for _, tc := range []struct {
				id   string
				want bool
			}{{fromCart.ID, true}, {buyNow.ID, false}} {
				require.Equal(t, domain.StatusConfirmed, h.get(tc.id).Status)
				evs, err := h.repo.Events(t.Context(), tc.id)
				require.NoError(t, err)
				require.Equal(t, tc.want, evs[0].Data.(domain.OrderPlacedData).FromCart)
				out := h.outbox(tc.id)
				require.Equal(t, tc.want, out["order.placed"].FromCart)
				require.Equal(t, tc.want, out["order.confirmed"].FromCart, "the cart acts on order.confirmed only with from_cart")
			}

			// The flag is in the payload even when false, for consumers.
			var payload string
			require.NoError(t, h.db.QueryRowContext(t.Context(), `SELECT payload FROM outbox WHERE event_id = $1`,
				buyNow.ID+":order.confirmed").Scan(&payload))
			require.Contains(t, payload, `"from_cart":false`)
		})

		t.Run("the payment token is checked before anything is written", func(t *testing.T) {
			h := newHarness(t, d)
			ctx := h.customer()
			cmd := order("tok_unknownCard", domain.ItemInput{ProductID: mug, Quantity: 1})
			_, err := h.orders.PlaceOrder(ctx, cmd)
			require.ErrorIs(t, err, domain.ErrPaymentTokenUnknown)
			require.Equal(t, apperr.Invalid, apperr.KindOf(err))
			require.EqualError(t, err, "payment_token is not a card the payment provider knows")

			// Payments unable to answer: retry later, nothing is kept.
			known := order(visa, domain.ItemInput{ProductID: mug, Quantity: 1})
			h.pay.Block("CheckPaymentToken")
			_, err = h.orders.PlaceOrder(ctx, known)
			require.ErrorIs(t, err, app.ErrPaymentsDown)
			require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
			require.EqualError(t, err, "payments is unavailable, retry later")
			h.pay.Unblock("CheckPaymentToken")
			h.pay.FailNext("CheckPaymentToken", 1, codes.Internal)
			_, err = h.orders.PlaceOrder(ctx, known)
			require.Equal(t, apperr.Unavailable, apperr.KindOf(err))

			page, err := h.orders.ListOrders(ctx, app.ListOrders{})
			require.NoError(t, err)
			require.Empty(t, page.Orders, "no order was created")
			var outbox int
			require.NoError(t, h.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM outbox WHERE payload LIKE $1`, "%"+h.user+"%").Scan(&outbox))
			require.Zero(t, outbox, "nothing was announced")
			require.Zero(t, h.inv.Calls("ReserveStock"))
			require.Zero(t, h.pay.Calls("Authorize"))

			// The key was not used up: the same request succeeds once
			// payments answers, and a retry of it does not ask again.
			v := h.place(ctx, known)
			require.Equal(t, domain.StatusPending, v.Status)
			checks := h.pay.Calls("CheckPaymentToken")
			h.pay.SetDown(true)
			again, err := h.orders.PlaceOrder(ctx, known)
			require.NoError(t, err)
			require.Equal(t, v.ID, again.ID)
			require.Equal(t, checks, h.pay.Calls("CheckPaymentToken"))
		})

		t.Run("idempotency key", func(t *testing.T) {
			h := newHarness(t, d)
			ctx := h.customer()
			cmd := app.PlaceOrder{IdempotencyKey: "once", ShippingAddress: address(), PaymentToken: visa,
				Items: []domain.ItemInput{{ProductID: mug, Quantity: 1}}}
			first := h.place(ctx, cmd)
			h.settle(first.ID)

			// The same request again: the same order, in its current state,
			// without reading prices again.
			calls := h.catalog.Calls("BatchGetProducts")
			again, err := h.orders.PlaceOrder(ctx, cmd)
			require.NoError(t, err)
			require.Equal(t, first.ID, again.ID)
			require.Equal(t, domain.StatusConfirmed, again.Status)
			require.Equal(t, calls, h.catalog.Calls("BatchGetProducts"))

			// The same request in another form is the same request.
			reordered := cmd
			reordered.Items = []domain.ItemInput{{ProductID: " " + mug, Quantity: 1}}
			reordered.IdempotencyKey = " once "
			again, err = h.orders.PlaceOrder(ctx, reordered)
			require.NoError(t, err)
			require.Equal(t, first.ID, again.ID)

			changed := cmd
			changed.Items = []domain.ItemInput{{ProductID: mug, Quantity: 2}}
			_, err = h.orders.PlaceOrder(ctx, changed)
			require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused)
			require.Equal(t, apperr.Unprocessable, apperr.KindOf(err))
			require.EqualError(t, err, "Idempotency-Key was already used with a different request")

			other, err := h.orders.PlaceOrder(h.as(h.other, auth.RoleCustomer), cmd)
			require.NoError(t, err)
			require.NotEqual(t, first.ID, other.ID, "keys are per user")

			for _, key := range []string{"", "   ", strings.Repeat("k", 256)} {
				bad := cmd
				bad.IdempotencyKey = key
				_, err = h.orders.PlaceOrder(ctx, bad)
				require.ErrorIs(t, err, domain.ErrIdempotencyKeyRequired)
			}
		})

		t.Run("concurrent requests with one key make one order", func(t *testing.T) {
			h := newHarness(t, d)
			ctx := h.customer()
			cmd := app.PlaceOrder{IdempotencyKey: "race", ShippingAddress: address(), PaymentToken: visa,
				Items: []domain.ItemInput{{ProductID: mug, Quantity: 1}}}
			const racers = 6
			ids := make([]string, racers)
			errs := make([]error, racers)
			var wg sync.WaitGroup
			for i := range racers {
				wg.Go(func() {
					v, err := h.orders.PlaceOrder(ctx, cmd)
					ids[i], errs[i] = v.ID, err
				})
			}
			wg.Wait()
			for i := range racers {
				require.NoError(t, errs[i])
				require.Equal(t, ids[0], ids[i])
			}
			page, err := h.orders.ListOrders(ctx, app.ListOrders{})
			require.NoError(t, err)
			require.Len(t, page.Orders, 1)
		})

		t.Run("validation", func(t *testing.T) {
			h := newHarness(t, d)
			ctx := h.customer()
			valid := func() app.PlaceOrder {
				return app.PlaceOrder{IdempotencyKey: uuid.NewString(), ShippingAddress: address(), PaymentToken: visa,
					Items: []domain.ItemInput{{ProductID: mug, Quantity: 1}}}
			}
			tests := []struct {
				name string
				edit func(*app.PlaceOrder)
				kind apperr.Kind
				msg  string
			}{
				{"zero quantity", func(c *app.PlaceOrder) { c.Items[0].Quantity = 0 }, apperr.Invalid, "items[0].quantity must be between 1 and 100"},
				{"negative quantity", func(c *app.PlaceOrder) { c.Items[0].Quantity = -1 }, apperr.Invalid, "items[0].quantity must be between 1 and 100"},
				{"huge quantity", func(c *app.PlaceOrder) { c.Items[0].Quantity = 1 << 31 }, apperr.Invalid, "items[0].quantity must be between 1 and 100"},
				{"unknown product", func(c *app.PlaceOrder) { c.Items = append(c.Items, domain.ItemInput{ProductID: "nope", Quantity: 1}) },
					apperr.Invalid, "unknown product nope"},
				{"mixed currencies", func(c *app.PlaceOrder) { c.Items = append(c.Items, domain.ItemInput{ProductID: hat, Quantity: 1}) },
					apperr.Invalid, "all items must be priced in the same currency"},
				{"total too large", func(c *app.PlaceOrder) { c.Items = []domain.ItemInput{{ProductID: car, Quantity: 22}} },
					apperr.Invalid, "order total too large"},
				{"no address", func(c *app.PlaceOrder) { c.ShippingAddress = nil }, apperr.Invalid, "shipping_address is required"},
				{"bad country", func(c *app.PlaceOrder) { c.ShippingAddress.Country = "uk" }, apperr.Invalid,
					"shipping_address.country must be a two-letter upper-case ISO 3166-1 code"},
				{"no payment token", func(c *app.PlaceOrder) { c.PaymentToken = "" }, apperr.Invalid, "payment_token is required"},
				{"malformed payment token", func(c *app.PlaceOrder) { c.PaymentToken = "4242 4242 4242 4242" }, apperr.Invalid, "payment_token is malformed"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cmd := valid()
					tt.edit(&cmd)
					_, err := h.orders.PlaceOrder(ctx, cmd)
					require.Error(t, err)
					require.Equal(t, tt.kind, apperr.KindOf(err))
					require.Equal(t, tt.msg, err.Error())
				})
			}
			page, err := h.orders.ListOrders(ctx, app.ListOrders{})
			require.NoError(t, err)
			require.Empty(t, page.Orders, "nothing invalid was stored")

			_, err = h.orders.PlaceOrder(t.Context(), valid())
			require.ErrorIs(t, err, auth.ErrMissingToken)

			h.catalog.SetDown(true)
			_, err = h.orders.PlaceOrder(ctx, valid())
			require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
			h.catalog.FailNext("BatchGetProducts", 1, codes.Internal)
			h.catalog.SetDown(false)
			_, err = h.orders.PlaceOrder(ctx, valid())
			require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
		})
	})
}

func TestOwnership(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		owner, stranger := h.customer(), h.as(h.other, auth.RoleCustomer)
		adminCtx := h.as(h.admin, auth.RoleAdmin)
		mine := h.settle(h.place(owner, order(visa, domain.ItemInput{ProductID: mug, Quantity: 1})).ID)
		theirs := h.place(stranger, order(visa, domain.ItemInput{ProductID: pen, Quantity: 1}))

		_, err := h.orders.GetOrder(stranger, mine.ID)
		require.ErrorIs(t, err, domain.ErrNotFound)
		_, err = h.orders.ListOrderEvents(stranger, mine.ID)
		require.ErrorIs(t, err, domain.ErrNotFound)
		_, err = h.orders.CancelOrder(stranger, mine.ID, "")
		require.ErrorIs(t, err, domain.ErrNotFound)
		_, err = h.orders.GetOrder(owner, uuid.NewString())
		require.ErrorIs(t, err, domain.ErrNotFound, "unknown looks the same as someone else's")
		_, err = h.orders.GetOrder(owner, "not-an-id")
		require.ErrorIs(t, err, domain.ErrNotFound)
		require.Equal(t, domain.StatusConfirmed, h.get(mine.ID).Status, "the stranger's cancel changed nothing")

		got, err := h.orders.GetOrder(owner, mine.ID)
		require.NoError(t, err)
		require.Equal(t, mine, got)
		evs, err := h.orders.ListOrderEvents(owner, mine.ID)
		require.NoError(t, err)
		require.Equal(t, confirmedPath, typesOf(evs))

		page, err := h.orders.ListOrders(owner, app.ListOrders{})
		require.NoError(t, err)
		require.Equal(t, []string{mine.ID}, viewIDs(page.Orders))

		got, err = h.orders.GetOrder(adminCtx, theirs.ID)
		require.NoError(t, err)
		require.Equal(t, theirs.ID, got.ID)
		_, err = h.orders.ListOrderEvents(adminCtx, theirs.ID)
		require.NoError(t, err)
		all, err := h.orders.ListOrders(adminCtx, app.ListOrders{PageSize: 100})
		require.NoError(t, err)
		require.Contains(t, viewIDs(all.Orders), mine.ID)
		require.Contains(t, viewIDs(all.Orders), theirs.ID)

		v, err := h.orders.CancelOrder(adminCtx, theirs.ID, "")
		require.NoError(t, err)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, "cancelled by an administrator", v.Reason)

		_, err = h.orders.GetOrder(t.Context(), mine.ID)
		require.ErrorIs(t, err, auth.ErrMissingToken)
	})
}

func TestListOrders(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		ctx := h.customer()
		var placed []string
		for range 5 {
			v := h.place(ctx, app.PlaceOrder{IdempotencyKey: uuid.NewString(), ShippingAddress: address(), PaymentToken: visa,
				Items: []domain.ItemInput{{ProductID: pen, Quantity: 1}}})
			placed = append([]string{v.ID}, placed...) // newest first
		}
		var seen []string
		token := ""
		for {
			page, err := h.orders.ListOrders(ctx, app.ListOrders{PageSize: 2, PageToken: token})
			require.NoError(t, err)
			require.LessOrEqual(t, len(page.Orders), 2)
			seen = append(seen, viewIDs(page.Orders)...)
			if page.NextPageToken == "" {
				break
			}
			token = page.NextPageToken
		}
		require.Equal(t, placed, seen, "every order once, newest first")

		first, err := h.orders.ListOrders(ctx, app.ListOrders{PageSize: 2})
		require.NoError(t, err)
		_, err = h.orders.ListOrders(h.as(h.other, auth.RoleCustomer), app.ListOrders{PageToken: first.NextPageToken})
		require.ErrorIs(t, err, app.ErrInvalidPageToken, "a token is bound to whose list it pages")
		forged := first.NextPageToken[:len(first.NextPageToken)-2] + "xx"
		_, err = h.orders.ListOrders(ctx, app.ListOrders{PageToken: forged})
		require.ErrorIs(t, err, app.ErrInvalidPageToken)
		_, err = h.orders.ListOrders(ctx, app.ListOrders{PageToken: "garbage"})
		require.ErrorIs(t, err, app.ErrInvalidPageToken)
		for _, size := range []int{-1, 101} {
			_, err = h.orders.ListOrders(ctx, app.ListOrders{PageSize: size})
			require.ErrorIs(t, err, app.ErrPageSize)
		}
		page, err := h.orders.ListOrders(ctx, app.ListOrders{PageSize: 100})
		require.NoError(t, err)
		require.Len(t, page.Orders, 5)
		require.Empty(t, page.NextPageToken)
	})
}

func typesOf(evs []domain.Event) []domain.EventType {
	out := make([]domain.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type()
	}
	return out
}

func viewIDs(vs []domain.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}

func TestIdempotencyKeysAreForgottenAfterTheirTTL(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		req := app.PlaceOrder{
			IdempotencyKey: "ttl", ShippingAddress: address(), PaymentToken: visa,
			Items: []domain.ItemInput{{ProductID: mug, Quantity: 1}},
		}
		first := h.place(h.customer(), req)

		h.clock.Advance(app.DefaultIdempotencyKeyTTL - time.Minute)
		n, err := h.orders.ForgetIdempotencyKeys(t.Context())
		require.NoError(t, err)
		require.Zero(t, n, "within the TTL the key is kept")
		require.Equal(t, first.ID, h.place(h.customer(), req).ID, "a retry within the TTL is the same order")

		h.clock.Advance(2 * time.Minute)
		n, err = h.orders.ForgetIdempotencyKeys(t.Context())
		require.NoError(t, err)
		require.Positive(t, n)
		again := h.place(h.customer(), req)
		require.NotEqual(t, first.ID, again.ID, "after the TTL the key places a new order")
		require.Equal(t, first, h.get(first.ID), "the first order itself is untouched")
	})
}
