package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
)

// stuckMessage is the log line of an order crossing the stuck threshold.
const stuckMessage = "order stuck: its saga has recorded nothing for longer than the threshold"

// logLines collects JSON log lines; safe for concurrent use.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many lines say msg about the order id.
func (l *logLines) count(t *testing.T, msg, id string) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	lines := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for lines.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(lines.Bytes(), &rec))
		if rec["msg"] == msg && rec["order_id"] == id {
			n++
		}
	}
	require.NoError(t, lines.Err())
	return n
}

// metric returns the value of the gauge or counter name with exactly the
// labels given, 0 when there is no such series.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			match := true
			for k, v := range labels {
				match = match && got[k] == v
			}
			if !match {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestNeedsAttention: payments refusing both to refund and to void a
// captured payment leaves the order in needs_attention, for good: it is
// never cancelled while the buyer's money may be kept. The owner and
// admins read it at once, it is counted, and listed for admins with what
// payments said.
func TestNeedsAttention(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		reg := prometheus.NewRegistry()
		h := newHarness(t, d, withSaga(app.SagaConfig{Registerer: reg}))
		ctx := t.Context()
		adminCtx := h.as(h.admin, auth.RoleAdmin)
		id := h.settle(h.place(h.customer(), twoMugs(visa)).ID).ID
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Zero(t, metric(t, reg, "mercato_orders_needs_attention", nil))

		h.pay.Refuse("Refund")
		h.pay.Refuse("Void")
		h.cancel(h.customer(), id, "")
		v := h.settle(id)
		require.Equal(t, domain.StatusNeedsAttention, v.Status)
		require.Equal(t, domain.ReasonPaymentNotReturned, v.Reason)
		require.False(t, v.Refunded)

		start := time.Now()
		got, err := h.orders.WaitForOrder(h.customer(), id, app.MaxOrderWait)
		require.NoError(t, err)
		require.Less(t, time.Since(start), app.MaxOrderWait/2, "a waiting read answers at once, as for a finished order")
		require.Equal(t, domain.StatusNeedsAttention, got.Status)
		require.Equal(t, domain.ReasonPaymentNotReturned, got.Reason)
		got, err = h.orders.GetOrder(adminCtx, id)
		require.NoError(t, err)
		require.Equal(t, domain.StatusNeedsAttention, got.Status)

		evs, err := h.orders.ListOrderEvents(h.customer(), id)
		require.NoError(t, err)
		require.Equal(t, domain.OrderNeedsAttentionData{
			Reason: domain.ReasonPaymentNotReturned, Step: domain.StepRefundPayment, PaymentID: v.PaymentID,
		}, evs[len(evs)-1].Data)

		_, err = h.orders.CancelOrder(h.customer(), id, "again")
		require.ErrorIs(t, err, domain.ErrNeedsAttention)

		// Payments accepting again changes nothing by itself: the saga is
		// over, what is left is an operator's.
		h.pay.Unrefuse("Refund")
		h.pay.Unrefuse("Void")
		h.clock.Advance(time.Hour)
		p, err := h.saga.Drive(ctx, id)
		require.NoError(t, err)
		require.False(t, p.Ran)
		require.Equal(t, domain.StatusNeedsAttention, h.get(id).Status)
		require.Equal(t, []string{"captured"}, statuses(h.pay.Payments(id)))

		require.Equal(t, 1.0, metric(t, reg, "mercato_orders_saga_outcomes_total",
			map[string]string{"status": "needs_attention", "reason": "payment_not_returned"}))
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Equal(t, 1.0, metric(t, reg, "mercato_orders_needs_attention", nil))

		page, err := h.orders.ListStuckOrders(adminCtx, app.ListOrders{})
		require.NoError(t, err)
		require.Len(t, page.Orders, 1)
		listed := page.Orders[0]
		require.Equal(t, id, listed.Order.ID)
		require.Equal(t, domain.StatusNeedsAttention, listed.Order.Status)
		require.Equal(t, domain.StepDone, listed.Step)
		require.True(t, listed.NextAttemptAt.IsZero(), "nothing is due")
		require.Contains(t, listed.LastError, "payments refused both")
		require.Contains(t, listed.LastError, "injected refusal of Refund")
		require.Empty(t, page.NextPageToken)

		_, err = h.orders.ListStuckOrders(h.customer(), app.ListOrders{})
		require.ErrorIs(t, err, auth.ErrForbidden)
		_, err = h.orders.ListStuckOrders(t.Context(), app.ListOrders{})
		require.ErrorIs(t, err, auth.ErrMissingToken)
	})
}

// TestRetriesPastThePivotNeverStop: once the stock is committed, a capture
// that keeps failing is retried for as long as it takes, the delays
// doubling up to the cap and staying there, far past the saga deadline.
// When payments is back, the order is confirmed.
func TestRetriesPastThePivotNeverStop(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		h.pay.Block("Capture")
		placed := h.place(h.customer(), twoMugs(visa))
		want := app.DefaultBaseBackoff
		capped := 0
		for n := 1; n <= 40; n++ {
			p := h.untilRetry(placed.ID)
			require.False(t, p.Terminal, "attempt %d", n)
			_, st, err := h.repo.Load(t.Context(), placed.ID)
			require.NoError(t, err)
			require.Equal(t, domain.StepCapturePayment, st.Step)
			require.Equal(t, n, st.Attempts)
			delay := p.RetryAt.Sub(h.clock.Now())
			require.GreaterOrEqual(t, delay, want/2, "attempt %d", n)
			require.LessOrEqual(t, delay, want, "attempt %d", n)
			if want == app.DefaultDecidedBackoff {
				capped++
			}
			h.clock.Set(p.RetryAt)
			want = min(2*want, app.DefaultDecidedBackoff)
		}
		require.Greater(t, capped, 20, "the delays reach the cap and stay there")
		require.Greater(t, h.clock.Now().Sub(placed.CreatedAt), time.Hour, "retried far past the deadline")
		require.Equal(t, domain.StatusPending, h.get(placed.ID).Status)

		h.pay.Unblock("Capture")
		require.Equal(t, domain.StatusConfirmed, h.settle(placed.ID).Status)
		require.Equal(t, 1, h.pay.Captures(placed.ID))
	})
}

// TestRetriesBeforeThePivotStopAtTheDeadline: before the stock commit a
// failing step is retried quickly (at most MaxBackoff apart) and never
// past the deadline, at which the order is undone.
func TestRetriesBeforeThePivotStopAtTheDeadline(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d)
		h.pay.Block("Authorize")
		id := h.place(h.customer(), twoMugs(visa)).ID
		o, _, err := h.repo.Load(t.Context(), id)
		require.NoError(t, err)
		retries := 0
		for {
			p := h.untilRetry(id)
			if p.Terminal {
				break
			}
			retries++
			require.LessOrEqual(t, p.RetryAt.Sub(h.clock.Now()), app.DefaultMaxBackoff)
			require.False(t, p.RetryAt.After(o.DeadlineAt), "never scheduled past the deadline")
			h.clock.Set(p.RetryAt)
		}
		require.Greater(t, retries, 10)
		v := h.get(id)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.Equal(t, domain.ReasonTimedOut, v.Reason)
	})
}

// TestStuckOrders: an order whose saga records nothing for the threshold
// is logged once per crossing (not on every retry, and by one replica),
// counted by the step it waits for and listed for admins; once it moves on
// it is neither.
func TestStuckOrders(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		logs := &logLines{}
		reg := prometheus.NewRegistry()
		h := newHarness(t, d, withLogs(logs), withSaga(app.SagaConfig{Registerer: reg, StuckAfter: time.Minute}))
		ctx := t.Context()
		adminCtx := h.as(h.admin, auth.RoleAdmin)
		stuck := func() float64 {
			return metric(t, reg, "mercato_orders_stuck", map[string]string{"step": string(domain.StepCapturePayment)})
		}
		listed := func() []app.StuckOrder {
			page, err := h.orders.ListStuckOrders(adminCtx, app.ListOrders{})
			require.NoError(t, err)
			return page.Orders
		}

		h.pay.Block("Capture")
		id := h.place(h.customer(), twoMugs(visa)).ID
		p := h.untilRetry(id)
		since := h.get(id).UpdatedAt
		for !h.clock.Now().After(since.Add(time.Minute)) {
			require.NoError(t, h.saga.CheckStuck(ctx))
			require.Zero(t, logs.count(t, stuckMessage, id), "not stuck yet")
			require.Zero(t, stuck())
			require.Empty(t, listed())
			h.clock.Set(p.RetryAt)
			p = h.untilRetry(id)
		}
		for range 5 {
			require.NoError(t, h.saga.CheckStuck(ctx))
			h.clock.Set(p.RetryAt)
			p = h.untilRetry(id)
		}
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Equal(t, 1, logs.count(t, stuckMessage, id), "logged once, however often it is retried")
		require.Equal(t, 1.0, stuck())
		l := listed()
		require.Len(t, l, 1)
		require.Equal(t, id, l[0].Order.ID)
		require.Equal(t, domain.StatusPending, l[0].Order.Status)
		require.Equal(t, domain.StepCapturePayment, l[0].Step)
		require.Greater(t, l[0].Attempts, 5)
		require.False(t, l[0].NextAttemptAt.IsZero())
		require.Contains(t, l[0].LastError, "capture payment")

		// Another replica finds it marked already.
		other := app.NewSaga(h.repo, h.repo, nil, nil, slog.New(slog.NewJSONHandler(logs, nil)),
			app.SagaConfig{InstanceID: "other-replica", Now: h.clock.Now, StuckAfter: time.Minute})
		require.NoError(t, other.CheckStuck(ctx))
		require.Equal(t, 1, logs.count(t, stuckMessage, id), "noticed by one replica")

		// A cancellation is recorded, so the order waits anew (for the
		// capture it still needs before its refund); a minute later it
		// crosses the threshold again, which is logged again.
		h.cancel(h.customer(), id, "")
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Zero(t, stuck())
		h.clock.Advance(time.Minute + time.Second)
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Equal(t, 2, logs.count(t, stuckMessage, id), "a new crossing is logged")
		require.Equal(t, 1.0, stuck())

		h.pay.Unblock("Capture")
		v := h.settle(id)
		require.Equal(t, domain.StatusCancelled, v.Status)
		require.True(t, v.Refunded)
		require.NoError(t, h.saga.CheckStuck(ctx))
		require.Zero(t, stuck())
		require.Empty(t, listed())
		require.Equal(t, 2, logs.count(t, stuckMessage, id))
	})
}

// TestListStuckOrdersPages pages through the stuck orders, newest first.
func TestListStuckOrdersPages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, withSaga(app.SagaConfig{StuckAfter: time.Minute}))
		adminCtx := h.as(h.admin, auth.RoleAdmin)
		h.pay.Block("Capture")
		var ids []string
		for i := range 3 {
			cmd := twoMugs(visa)
			cmd.IdempotencyKey = string(rune('a' + i))
			id := h.place(h.customer(), cmd).ID
			require.False(t, h.untilRetry(id).Terminal)
			ids = append([]string{id}, ids...) // newest first
		}
		h.clock.Advance(2 * time.Minute)

		var seen []string
		token := ""
		for range len(ids) {
			page, err := h.orders.ListStuckOrders(adminCtx, app.ListOrders{PageSize: 1, PageToken: token})
			require.NoError(t, err)
			require.Len(t, page.Orders, 1)
			seen = append(seen, page.Orders[0].Order.ID)
			token = page.NextPageToken
		}
		require.Equal(t, ids, seen)
		require.Empty(t, token, "the last page says so")

		_, err := h.orders.ListStuckOrders(adminCtx, app.ListOrders{PageToken: "made-up"})
		require.ErrorIs(t, err, app.ErrInvalidPageToken)
	})
}
