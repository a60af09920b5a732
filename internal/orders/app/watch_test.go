package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

func TestWaitForOrderAnswersWhenTheOutcomeIsReached(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, realTime(), withSaga(app.SagaConfig{Workers: 2, PollInterval: 20 * time.Millisecond}))
		entered, release := h.pay.HoldNext("Capture")
		t.Cleanup(release)
		runCtx, stop := context.WithCancel(t.Context())
		runDone := make(chan error, 1)
		go func() { runDone <- h.saga.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-runDone; err != nil {
				t.Errorf("saga run: %v", err)
			}
		})

		id := h.place(h.customer(), twoMugs(visa)).ID
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the saga never reached the capture")
		}

		// With the capture held, a short wait ends with the order still pending.
		v, err := h.orders.WaitForOrder(h.customer(), id, time.Second)
		require.NoError(t, err)
		require.Equal(t, domain.StatusPending, v.Status)

		// A waiting reader is answered as soon as the order is confirmed,
		// well before its wait runs out.
		answered := make(chan domain.View, 1)
		go func() {
			v, err := h.orders.WaitForOrder(h.customer(), id, 10*time.Second)
			if err == nil {
				answered <- v
			}
			close(answered)
		}()
		release()
		start := time.Now()
		select {
		case v, ok := <-answered:
			require.True(t, ok, "the wait failed")
			require.Equal(t, domain.StatusConfirmed, v.Status)
			require.Less(t, time.Since(start), 5*time.Second)
		case <-time.After(9 * time.Second):
			t.Fatal("the waiting reader was not answered when the order was confirmed")
		}
	})
}

func TestWaitForOrderChecksItsArguments(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, realTime())
		id := h.place(h.customer(), twoMugs(visa)).ID
		_, err := h.orders.WaitForOrder(h.customer(), id, app.MaxOrderWait+time.Second)
		require.ErrorIs(t, err, app.ErrWaitOutOfRange)
		_, err = h.orders.WaitForOrder(h.customer(), id, -time.Second)
		require.ErrorIs(t, err, app.ErrWaitOutOfRange)
		_, err = h.orders.WaitForOrder(h.as("01900000-0000-7000-8000-00000000beef", auth.RoleCustomer), id, time.Second)
		require.ErrorIs(t, err, domain.ErrNotFound, "waiting does not reveal another user's order")
	})
}
