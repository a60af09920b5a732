package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/orders/orderstest"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// scenario is one way a checkout can go. run places (and maybe cancels)
// an order and drives it to a terminal state; want is the outcome.
type scenario struct {
	name string
	run  func(h *harness) string
	want outcome
	// noCrashMatrix: a crash changes what the saga may assume, so the
	// outcome legitimately differs (see TestAmbiguousAuthorization).
	noCrashMatrix bool
	// noDoubled: the scenario's fault is a one-off that a doubled call
	// consumes, so the saga legitimately takes another path.
	noDoubled bool
	// altEvents are other event streams a crash may legitimately lead to,
	// with the same effects on the neighbours.
	altEvents [][]domain.EventType
}

// sameEffects compares a run's outcome with the reference, accepting the
// scenario's alternative event streams.
func (sc scenario) sameEffects(t *testing.T, want, got outcome) {
	t.Helper()
	for _, alt := range sc.altEvents {
		if slices.Equal(got.Events, alt) {
			got.Events = want.Events
		}
	}
	require.Equal(t, want, got)
}

var (
	placedReservedAuthorized = types(domain.OrderPlaced, domain.StockReserved, domain.PaymentAuthorized)
	confirmedPath            = append(slices.Clone(placedReservedAuthorized),
		domain.StockCommitted, domain.PaymentCaptured, domain.OrderConfirmed)
)

func twoMugs(token string) app.PlaceOrder {
	return order(token, domain.ItemInput{ProductID: mug, Quantity: 2})
}

var scenarios = []scenario{
	{
		name: "happy path",
		run: func(h *harness) string {
			return h.settle(h.place(h.customer(), twoMugs(visa)).ID).ID
		},
		want: outcome{
			Status: domain.StatusConfirmed, Events: confirmedPath,
			Stock: orderstest.StockLevel{OnHand: initial - 2, Sold: 2}, Reservation: "committed",
			Payments: []string{"captured"}, Captures: 1, Subjects: []string{"order.confirmed", "order.placed"},
		},
	},
	{
		name: "out of stock",
		run: func(h *harness) string {
			h.inv.SetOnHand("SKU-MUG", 1)
			return h.settle(h.place(h.customer(), twoMugs(visa)).ID).ID
		},
		want: outcome{
			Status: domain.StatusRejected, Reason: "out of stock: SKU-MUG",
			Events: types(domain.OrderPlaced, domain.OrderRejected),
			Stock:  orderstest.StockLevel{OnHand: 1}, Subjects: []string{"order.placed", "order.rejected"},
		},
	},
	{
		name: "payment declined",
		run: func(h *harness) string {
			return h.settle(h.place(h.customer(), twoMugs(decline)).ID).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "payment declined: card_declined",
			Events: types(domain.OrderPlaced, domain.StockReserved, domain.PaymentDeclined, domain.StockReleased, domain.OrderCancelled),
			Stock:  orderstest.StockLevel{OnHand: initial}, Reservation: "released",
			Payments: []string{"declined"}, Subjects: []string{"order.cancelled", "order.placed"},
		},
	},
	{
		// Placing checks the token; one the provider stops knowing before
		// the authorization is still refused then.
		name: "payment token revoked after placing",
		run: func(h *harness) string {
			id := h.place(h.customer(), twoMugs("tok_mastercard")).ID
			h.pay.Revoke("tok_mastercard")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "payment token not recognised",
			Events: types(domain.OrderPlaced, domain.StockReserved, domain.PaymentDeclined, domain.StockReleased, domain.OrderCancelled),
			Stock:  orderstest.StockLevel{OnHand: initial}, Reservation: "released",
			Subjects: []string{"order.cancelled", "order.placed"},
		},
	},
	{
		name: "payments down for a while, then back",
		run: func(h *harness) string {
			id := h.place(h.customer(), twoMugs(visa)).ID
			h.pay.SetDown(true)
			for range 4 {
				p := h.untilRetry(id)
				require.False(h.t, p.Terminal)
				h.clock.Set(p.RetryAt)
			}
			h.pay.SetDown(false)
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusConfirmed, Events: confirmedPath,
			Stock: orderstest.StockLevel{OnHand: initial - 2, Sold: 2}, Reservation: "committed",
			Payments: []string{"captured"}, Captures: 1, Subjects: []string{"order.confirmed", "order.placed"},
		},
	},
	{
		name: "payments down past the deadline",
		run: func(h *harness) string {
			id := h.place(h.customer(), twoMugs(visa)).ID
			h.pay.SetDown(true)
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "checkout timed out",
			Events: types(domain.OrderPlaced, domain.StockReserved, domain.CancellationRequested, domain.StockReleased, domain.OrderCancelled),
			Stock:  orderstest.StockLevel{OnHand: initial}, Reservation: "released",
			Subjects: []string{"order.cancelled", "order.placed"},
		},
		noCrashMatrix: true,
	},
	{
		name: "cancel a pending order",
		run: func(h *harness) string {
			h.inv.Block("CommitReservation")
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			v := h.cancel(h.customer(), id, "changed my mind")
			require.Contains(h.t, []domain.Status{domain.StatusPending, domain.StatusCancelled}, v.Status)
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "changed my mind",
			Events: append(slices.Clone(placedReservedAuthorized),
				domain.CancellationRequested, domain.StockReleased, domain.PaymentVoided, domain.OrderCancelled),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "released",
			Payments: []string{"voided"}, Subjects: []string{"order.cancelled", "order.placed"},
		},
	},
	{
		name: "cancel a confirmed order",
		run: func(h *harness) string {
			id := h.settle(h.place(h.customer(), twoMugs(visa)).ID).ID
			h.cancel(h.customer(), id, "")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "cancelled by customer", Refunded: true,
			Events: append(slices.Clone(confirmedPath),
				domain.RefundRequested, domain.PaymentRefunded, domain.StockRestocked, domain.OrderCancelled),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
			Payments: []string{"refunded"}, Captures: 1,
			Subjects: []string{"order.cancelled", "order.confirmed", "order.placed", "order.refunded"},
		},
	},
	{
		// Past the stock commit a cancellation is a refund: the checkout
		// is finished (the capture in progress, the confirmation, which
		// is not announced), then refunded and restocked.
		name: "cancel while a capture is in progress",
		run: func(h *harness) string {
			h.pay.StallNext("Capture", 1)
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			h.cancel(h.customer(), id, "changed my mind")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "changed my mind", Refunded: true,
			Events: append(slices.Clone(placedReservedAuthorized), domain.StockCommitted, domain.RefundRequested,
				domain.PaymentCaptured, domain.OrderConfirmed, domain.PaymentRefunded, domain.StockRestocked, domain.OrderCancelled),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
			Payments: []string{"refunded"}, Captures: 1,
			Subjects: []string{"order.cancelled", "order.placed", "order.refunded"},
		},
		noDoubled: true,
	},
	{
		name: "capture refused after the stock commit",
		run: func(h *harness) string {
			h.inv.Block("CommitReservation")
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			h.pay.Refuse("Capture")
			h.inv.Unblock("CommitReservation")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "payment capture failed",
			Events: append(slices.Clone(placedReservedAuthorized), domain.StockCommitted,
				domain.CancellationRequested, domain.StockRestocked, domain.PaymentVoided, domain.OrderCancelled),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
			Payments: []string{"voided"}, Subjects: []string{"order.cancelled", "order.placed"},
		},
	},
	{
		// An authorization that lapsed can be neither captured, voided nor
		// refunded. Orders cannot tell from payments' refusals that it
		// holds nothing any more, so it does not cancel the order as if
		// the money were back: an operator looks at it.
		name: "authorization lapsed before the capture",
		run: func(h *harness) string {
			h.inv.Block("CommitReservation")
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			h.pay.Expire(h.get(id).PaymentID)
			h.inv.Unblock("CommitReservation")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusNeedsAttention, Reason: domain.ReasonPaymentNotReturned,
			Events: append(slices.Clone(placedReservedAuthorized), domain.StockCommitted,
				domain.CancellationRequested, domain.StockRestocked, domain.OrderNeedsAttention),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
			Payments: []string{"expired"}, Subjects: []string{"order.placed"},
		},
	},
	{
		// Undoing a pending order gives the stock back first; payments
		// then refusing both to void and to refund leaves the order
		// needing attention, never cancelled with the hold on the card.
		name: "cancel a pending order, payments refuse to void and refund",
		run: func(h *harness) string {
			h.inv.Block("CommitReservation")
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			h.pay.Refuse("Void")
			h.pay.Refuse("Refund")
			v := h.cancel(h.customer(), id, "changed my mind")
			require.Contains(h.t, []domain.Status{domain.StatusPending, domain.StatusNeedsAttention}, v.Status)
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusNeedsAttention, Reason: domain.ReasonPaymentNotReturned,
			Events: append(slices.Clone(placedReservedAuthorized),
				domain.CancellationRequested, domain.StockReleased, domain.OrderNeedsAttention),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "released",
			Payments: []string{"authorized"}, Subjects: []string{"order.placed"},
		},
	},
	{
		// A confirmed order is refunded before it is restocked: when
		// payments refuses both the refund and the void, the money and
		// the goods stay where they are, and an operator takes over.
		name: "refund a confirmed order, payments refuse to refund and void",
		run: func(h *harness) string {
			id := h.settle(h.place(h.customer(), twoMugs(visa)).ID).ID
			h.pay.Refuse("Refund")
			h.pay.Refuse("Void")
			h.cancel(h.customer(), id, "")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusNeedsAttention, Reason: domain.ReasonPaymentNotReturned,
			Events: append(slices.Clone(confirmedPath), domain.RefundRequested, domain.OrderNeedsAttention),
			Stock:  orderstest.StockLevel{OnHand: initial - 2, Sold: 2}, Reservation: "committed",
			Payments: []string{"captured"}, Captures: 1, Subjects: []string{"order.confirmed", "order.placed"},
		},
	},
	{
		name: "reservation expired before the commit",
		run: func(h *harness) string {
			h.inv.Block("CommitReservation")
			id := h.place(h.customer(), twoMugs(visa)).ID
			require.False(h.t, h.untilRetry(id).Terminal)
			h.inv.Expire(id)
			h.inv.Unblock("CommitReservation")
			return h.settle(id).ID
		},
		want: outcome{
			Status: domain.StatusCancelled, Reason: "stock reservation expired",
			Events: append(slices.Clone(placedReservedAuthorized),
				domain.CancellationRequested, domain.StockReleased, domain.PaymentVoided, domain.OrderCancelled),
			Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "expired",
			Payments: []string{"voided"}, Subjects: []string{"order.cancelled", "order.placed"},
		},
	},
}

// TestSagaScenarios runs every scenario once and checks what a user, the
// neighbours and the event consumers see.
func TestSagaScenarios(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				h := newHarness(t, d)
				id := sc.run(h)
				require.Equal(t, sc.want, h.outcome(id, "SKU-MUG"))
			})
		}
	})
}

// TestTwiceIsOnce checks that every step and every compensation can run
// twice without changing anything the second time:
//   - with every neighbour call delivered twice, the outcome is the one of
//     a clean run;
//   - with the process "crashing" at each durable point in turn (after a
//     neighbour call but before its event is recorded, so the call is made
//     again; and right after the record, so it must not be), then
//     restarting, the outcome is the one of a clean run: same events, same
//     stock, the same single payment, at most one capture;
//   - driving a finished order again calls nobody and appends nothing.
func TestTwiceIsOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				ref := newHarness(t, d)
				refID := sc.run(ref)
				want := ref.outcome(refID, "SKU-MUG")
				require.Equal(t, sc.want, want)

				t.Run("calls delivered twice", func(t *testing.T) {
					if sc.noDoubled {
						t.Skip("the scenario's fault is a one-off a doubled call consumes")
					}
					h := newHarness(t, d, doubled())
					require.Equal(t, want, h.outcome(sc.run(h), "SKU-MUG"))
				})

				t.Run("finished order driven again", func(t *testing.T) {
					calls := func() []int {
						return []int{
							ref.inv.Calls("ReserveStock"), ref.inv.Calls("CommitReservation"),
							ref.inv.Calls("ReleaseReservation"), ref.inv.Calls("RestockOrder"),
							ref.pay.Calls("Authorize"), ref.pay.Calls("Capture"), ref.pay.Calls("Void"), ref.pay.Calls("Refund"),
						}
					}
					before := calls()
					p, err := ref.saga.Drive(t.Context(), refID)
					require.NoError(t, err)
					require.False(t, p.Ran)
					ref.clock.Advance(time.Hour)
					p, err = ref.saga.Drive(t.Context(), refID)
					require.NoError(t, err)
					require.False(t, p.Ran)
					require.Equal(t, before, calls())
					require.Equal(t, want, ref.outcome(refID, "SKU-MUG"))
				})

				if sc.noCrashMatrix {
					return
				}
				points := slices.Compact(slices.Sorted(slices.Values(ref.crash.points())))
				require.NotEmpty(t, points)
				for _, point := range points {
					t.Run("crash at "+point, func(t *testing.T) {
						h := newHarness(t, d, crashAt(point))
						id := sc.run(h)
						require.Equal(t, 1, h.restarts, "the crash happened once")
						sc.sameEffects(t, want, h.outcome(id, "SKU-MUG"))
					})
				}
			})
		}
	})
}

// TestCancelConflicts checks the answers to cancelling what cannot be.
func TestCancelConflicts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		ctx := h.customer()

		cancelled := h.place(ctx, order("tok_visa", domain.ItemInput{ProductID: mug, Quantity: 1})).ID
		require.Equal(t, domain.StatusCancelled, h.cancel(ctx, cancelled, "").Status, "cancelled inline")
		_, err := h.orders.CancelOrder(ctx, cancelled, "")
		require.ErrorIs(t, err, domain.ErrAlreadyCancelled)
		require.EqualError(t, err, "order is already cancelled")

		h.inv.SetOnHand("SKU-PEN", 0)
		rejected := h.settle(h.place(ctx, order("tok_mastercard", domain.ItemInput{ProductID: pen, Quantity: 1})).ID).ID
		_, err = h.orders.CancelOrder(ctx, rejected, "")
		require.ErrorIs(t, err, domain.ErrRejectedCannotCancel)
		require.EqualError(t, err, "order was rejected and cannot be cancelled")

		// Inventory down: the first cancellation is recorded but cannot
		// finish yet; a second one is refused.
		h.inv.SetOnHand("SKU-PEN", 5)
		pending := h.place(ctx, app.PlaceOrder{IdempotencyKey: "pending", Items: []domain.ItemInput{{ProductID: pen, Quantity: 1}},
			ShippingAddress: address(), PaymentToken: visa}).ID
		h.inv.SetDown(true)
		v := h.cancel(ctx, pending, "too slow")
		require.Equal(t, domain.StatusPending, v.Status)
		before := h.eventTypes(pending)
		_, err = h.orders.CancelOrder(ctx, pending, "again")
		require.ErrorIs(t, err, domain.ErrCancellationRequested)
		require.Equal(t, before, h.eventTypes(pending), "a refused cancellation records nothing")
		require.EqualError(t, err, "cancellation already requested")
		h.inv.SetDown(false)
		v = h.settle(pending)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, "too slow", v.Reason)
		require.Equal(t, orderstest.StockLevel{OnHand: 5}, h.inv.Stock("SKU-PEN"))
	})
}

// TestAmbiguousAuthorization: an authorization whose answer was lost may
// exist. When the checkout then times out, the saga asks payments (by
// repeating the idempotent authorization) and voids what it finds, so no
// money stays held for a cancelled order.
func TestAmbiguousAuthorization(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		h.pay.LoseNext("Authorize", 1)
		id := h.place(h.customer(), twoMugs(visa)).ID
		p := h.untilRetry(id)
		require.False(t, p.Terminal)
		require.Equal(t, []string{"authorized"}, statuses(h.pay.Payments(id)), "the lost call took effect")
		h.clock.Set(p.RetryAt)

		h.pay.SetDown(true)
		for !slices.Contains(h.eventTypes(id), domain.StockReleased) {
			p := h.untilRetry(id)
			require.False(t, p.Terminal, "the order cannot finish while the authorization is unresolved")
			h.clock.Set(p.RetryAt)
		}
		h.pay.SetDown(false)
		v := h.settle(id)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, "checkout timed out", v.Reason)
		require.Equal(t, []string{"voided"}, statuses(h.pay.Payments(id)))
		require.Equal(t, types(domain.OrderPlaced, domain.StockReserved, domain.CancellationRequested, domain.StockReleased,
			domain.PaymentAuthorized, domain.PaymentVoided, domain.OrderCancelled), h.eventTypes(id))
		require.Equal(t, orderstest.StockLevel{OnHand: initial}, h.inv.Stock("SKU-MUG"))
	})
}

// TestPaymentRefused: payments refusing the authorization for a reason
// other than the token (an amount above its limit, say) cancels the order
// as a failed payment.
func TestPaymentRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		h.pay.FailNext("Authorize", 1, codes.InvalidArgument)
		v := h.settle(h.place(h.customer(), twoMugs(visa)).ID)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, "payment failed", v.Reason)
		require.Equal(t, orderstest.StockLevel{OnHand: initial}, h.inv.Stock("SKU-MUG"))
	})
}

// TestInventoryDownDuringCompensation: a hold expires by itself, so an
// inventory outage delays a cancellation only until the hold's expiry.
func TestInventoryDownDuringCompensation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		h.inv.Block("CommitReservation")
		id := h.place(h.customer(), twoMugs(visa)).ID
		require.False(t, h.untilRetry(id).Terminal)
		h.inv.SetDown(true)
		require.Equal(t, domain.StatusPending, h.cancel(h.customer(), id, "").Status)
		v := h.settle(id)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, []string{"voided"}, statuses(h.pay.Payments(id)))
		evs, err := h.repo.Events(t.Context(), id)
		require.NoError(t, err)
		released := evs[len(evs)-3].Data.(domain.StockReleasedData)
		require.Equal(t, "the hold expired while inventory was unreachable", released.Note)
	})
}

// TestExecutor runs the real executor (workers, wake-ups, polling) with
// the real clock.
func TestExecutor(t *testing.T) {
	for name, d := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("many orders for few units: exactly that many confirmed", func(t *testing.T) {
				testOversell(t, d)
			})
			t.Run("a restart resumes every order in flight", func(t *testing.T) {
				testResume(t, d)
			})
			t.Run("cancellations racing the saga", func(t *testing.T) {
				testCancelRace(t, d)
			})
		})
	}
}

// TestExecutorOutlivesAFailedWrite fails the saga's bookkeeping write once,
// as a database restart mid-run does: the order stays leased to this
// instance, which takes it up again at once rather than when the lease
// expires, long past the checkout's deadline.
func TestExecutorOutlivesAFailedWrite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		store := &failOnceStore{}
		h := newHarness(t, d, realTime(),
			withSaga(app.SagaConfig{Workers: 2, PollInterval: 20 * time.Millisecond, Lease: time.Hour}),
			withSagaStore(func(s app.SagaRepository) app.SagaRepository { store.SagaRepository = s; return store }))
		runCtx, stop := context.WithCancel(t.Context())
		runDone := make(chan error, 1)
		go func() { runDone <- h.saga.Run(runCtx) }()

		// Inventory down makes the reservation fail, and recording its
		// retry is the write that fails.
		h.inv.SetDown(true)
		id := h.place(h.customer(), twoMugs(visa)).ID
		require.Eventually(t, store.failed, 10*time.Second, 10*time.Millisecond)
		h.inv.SetDown(false)
		require.Eventually(t, func() bool {
			v, err := h.repo.Get(t.Context(), id)
			return err == nil && v.Status == domain.StatusConfirmed
		}, 10*time.Second, 10*time.Millisecond)
		stop()
		require.NoError(t, <-runDone)
	})
}

// failOnceStore fails the first ScheduleRetry.
type failOnceStore struct {
	app.SagaRepository
	mu   sync.Mutex
	done bool
}

func (f *failOnceStore) ScheduleRetry(ctx context.Context, id, owner string, version int64, r app.Retry) error {
	f.mu.Lock()
	first := !f.done
	f.done = true
	f.mu.Unlock()
	if first {
		return errors.New("database is restarting")
	}
	return f.SagaRepository.ScheduleRetry(ctx, id, owner, version, r)
}

func (f *failOnceStore) failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

func testOversell(t *testing.T, d *db.DB) {
	const (
		shoppers = 24
		units    = 7
	)
	h := newHarness(t, d, realTime(), withSaga(app.SagaConfig{Workers: 8, PollInterval: 20 * time.Millisecond}))
	h.inv.SetOnHand("SKU-PEN", units)
	ctx := t.Context()
	runDone := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { runDone <- h.saga.Run(runCtx) }()

	var wg sync.WaitGroup
	ids := make([]string, shoppers)
	for i := range shoppers {
		wg.Go(func() {
			who := fmt.Sprintf("shopper-%d", i)
			v, err := h.orders.PlaceOrder(h.as(who, auth.RoleCustomer), app.PlaceOrder{
				IdempotencyKey: "k", Items: []domain.ItemInput{{ProductID: pen, Quantity: 1}},
				ShippingAddress: address(), PaymentToken: visa,
			})
			if err == nil {
				ids[i] = v.ID
			}
		})
	}
	wg.Wait()
	require.NotContains(t, ids, "", "every order was placed")

	statusOf := func() (map[domain.Status]int, error) {
		n := map[domain.Status]int{}
		for _, id := range ids {
			v, err := h.repo.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			n[v.Status]++
		}
		return n, nil
	}
	require.Eventually(t, func() bool {
		n, err := statusOf()
		return err == nil && n[domain.StatusPending] == 0
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-runDone)

	counts, err := statusOf()
	require.NoError(t, err)
	require.Equal(t, units, counts[domain.StatusConfirmed])
	require.Equal(t, shoppers-units, counts[domain.StatusRejected])
	require.Equal(t, orderstest.StockLevel{OnHand: 0, Sold: units}, h.inv.Stock("SKU-PEN"), "never oversold: on_hand + sold = initial")
	captures := 0
	for _, id := range ids {
		captures += h.pay.Captures(id)
		v, err := h.repo.Get(ctx, id)
		require.NoError(t, err)
		if v.Status == domain.StatusConfirmed {
			require.Equal(t, 1, h.pay.Captures(id), "every capture belongs to a confirmed order")
		}
	}
	require.Equal(t, units, captures)
	inFlight, err := h.repo.CountInFlight(ctx)
	require.NoError(t, err)
	require.Zero(t, inFlight)
}

func testResume(t *testing.T, d *db.DB) {
	h := newHarness(t, d, realTime(), withSaga(app.SagaConfig{Workers: 4, PollInterval: 20 * time.Millisecond}))
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		// Placed while no executor runs, as if the process died right
		// after answering.
		v, err := h.orders.PlaceOrder(h.customer(), app.PlaceOrder{
			IdempotencyKey: fmt.Sprintf("resume-%d", i), Items: []domain.ItemInput{{ProductID: mug, Quantity: 1}},
			ShippingAddress: address(), PaymentToken: visa,
		})
		require.NoError(t, err)
		ids = append(ids, v.ID)
	}
	// One was leased by this replica before "the crash": a restart takes
	// it back at once instead of waiting for the lease to expire.
	_, claimed, err := h.repo.Claim(ctx, ids[0], "test-replica", time.Now(), time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.True(t, claimed)

	h.restart()
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- h.saga.Run(runCtx) }()
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if v, err := h.repo.Get(ctx, id); err != nil || v.Status != domain.StatusConfirmed {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-runDone)
	for _, id := range ids {
		require.Equal(t, 1, h.pay.Captures(id))
	}
}

func testCancelRace(t *testing.T, d *db.DB) {
	const shoppers = 12
	h := newHarness(t, d, realTime(), withSaga(app.SagaConfig{Workers: 8, PollInterval: 20 * time.Millisecond}))
	h.inv.SetOnHand("SKU-PEN", 2*shoppers) // enough for all: none is rejected
	ctx := t.Context()
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- h.saga.Run(runCtx) }()

	var wg sync.WaitGroup
	ids := make([]string, shoppers)
	errs := make([]error, shoppers)
	for i := range shoppers {
		wg.Go(func() {
			who := h.as(fmt.Sprintf("racer-%d-%s", i, h.user), auth.RoleCustomer)
			v, err := h.orders.PlaceOrder(who, app.PlaceOrder{
				IdempotencyKey: "k", Items: []domain.ItemInput{{ProductID: pen, Quantity: 2}},
				ShippingAddress: address(), PaymentToken: visa,
			})
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = v.ID
			// Whatever the saga has done by now, pending or confirmed,
			// the cancellation is accepted.
			_, errs[i] = h.orders.CancelOrder(who, v.ID, "raced")
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if v, err := h.repo.Get(ctx, id); err != nil || v.Status != domain.StatusCancelled {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-runDone)

	require.Equal(t, orderstest.StockLevel{OnHand: 2 * shoppers}, h.inv.Stock("SKU-PEN"), "every unit is back")
	for _, id := range ids {
		v := h.get(id)
		require.Equal(t, "raced", v.Reason)
		for _, p := range h.pay.Payments(id) {
			require.Contains(t, []string{"voided", "refunded"}, p.Status, "no money stays held")
			require.Equal(t, v.Refunded, p.Status == "refunded")
		}
		o, _, err := h.repo.Load(ctx, id)
		require.NoError(t, err)
		require.True(t, o.Terminal())
	}
}

// TestCancelDuringSlowStep cancels an order while the executor waits for a
// neighbour that is slow to answer. The request is recorded at once,
// without waiting for the step, and the saga honours it when the step
// returns. Before the stock commit is recorded (the pivot) the order is
// compensated: the stock released (restocked, had the commit in flight
// landed) and the authorization voided, nothing captured. Past the pivot
// the request is a refund: the checkout is finished, then refunded.
func TestCancelDuringSlowStep(t *testing.T) {
	// cancelBound is how long a cancellation may take while a step is
	// held indefinitely: only its own reads and writes.
	const cancelBound = 2 * time.Second
	tests := []struct {
		name   string
		held   func(h *harness) (<-chan struct{}, func())
		events []domain.EventType
		want   outcome
	}{
		{
			name: "authorization",
			held: func(h *harness) (<-chan struct{}, func()) { return h.pay.HoldNext("Authorize") },
			want: outcome{
				Status: domain.StatusCancelled, Reason: "changed my mind",
				Events: types(domain.OrderPlaced, domain.StockReserved, domain.CancellationRequested, domain.StockReleased,
					domain.PaymentAuthorized, domain.PaymentVoided, domain.OrderCancelled),
				Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "released",
				Payments: []string{"voided"}, Subjects: []string{"order.cancelled", "order.placed"},
			},
		},
		{
			name: "stock commit",
			held: func(h *harness) (<-chan struct{}, func()) { return h.inv.HoldNext("CommitReservation") },
			want: outcome{
				Status: domain.StatusCancelled, Reason: "changed my mind",
				Events: append(slices.Clone(placedReservedAuthorized), domain.CancellationRequested,
					domain.StockRestocked, domain.PaymentVoided, domain.OrderCancelled),
				Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
				Payments: []string{"voided"}, Subjects: []string{"order.cancelled", "order.placed"},
			},
		},
		{
			name: "capture",
			held: func(h *harness) (<-chan struct{}, func()) { return h.pay.HoldNext("Capture") },
			want: outcome{
				Status: domain.StatusCancelled, Reason: "changed my mind", Refunded: true,
				Events: append(slices.Clone(placedReservedAuthorized), domain.StockCommitted, domain.RefundRequested,
					domain.PaymentCaptured, domain.OrderConfirmed, domain.PaymentRefunded, domain.StockRestocked, domain.OrderCancelled),
				Stock: orderstest.StockLevel{OnHand: initial}, Reservation: "restocked",
				Payments: []string{"refunded"}, Captures: 1,
				Subjects: []string{"order.cancelled", "order.placed", "order.refunded"},
			},
		},
	}
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, d, realTime(), withSaga(app.SagaConfig{Workers: 2, PollInterval: 20 * time.Millisecond}))
				entered, release := tt.held(h)
				t.Cleanup(release)
				runCtx, stop := context.WithCancel(t.Context())
				runDone := make(chan error, 1)
				go func() { runDone <- h.saga.Run(runCtx) }()

				id := h.place(h.customer(), twoMugs(visa)).ID
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the saga never reached the held step")
				}

				ctx, cancel := context.WithTimeout(h.customer(), 10*time.Second)
				defer cancel()
				start := time.Now()
				v, err := h.orders.CancelOrder(ctx, id, "changed my mind")
				took := time.Since(start)
				require.NoError(t, err)
				require.Less(t, took, cancelBound, "the cancellation waited for the held step")
				require.Equal(t, domain.StatusPending, v.Status, "the step is still running")
				evs := h.eventTypes(id)
				require.True(t, slices.Contains(evs, domain.CancellationRequested) || slices.Contains(evs, domain.RefundRequested),
					"recorded before the step returned: %v", evs)
				_, err = h.orders.CancelOrder(h.customer(), id, "again")
				require.ErrorIs(t, err, domain.ErrCancellationRequested)

				release()
				require.Eventually(t, func() bool {
					o, _, err := h.repo.Load(t.Context(), id)
					return err == nil && o.Terminal()
				}, 15*time.Second, 10*time.Millisecond)
				stop()
				require.NoError(t, <-runDone)
				require.Equal(t, tt.want, h.outcome(id, "SKU-MUG"))
			})
		}
	})
}

func statuses(ps []orderstest.PaymentRecord) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Status)
	}
	return out
}
