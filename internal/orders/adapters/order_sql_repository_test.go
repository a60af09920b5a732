package adapters_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestOrderRepository runs one suite against every engine.
func TestOrderRepository(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Run("create and load", func(t *testing.T) { testCreateLoad(t, newFixture(t, engine.URL)) })
			t.Run("append is optimistic", func(t *testing.T) { testAppendConcurrency(t, newFixture(t, engine.URL)) })
			t.Run("read model in step", func(t *testing.T) { testReadModel(t, newFixture(t, engine.URL)) })
			t.Run("idempotency key race", func(t *testing.T) { testIdempotencyRace(t, newFixture(t, engine.URL)) })
			t.Run("leases", func(t *testing.T) { testLeases(t, newFixture(t, engine.URL)) })
			t.Run("forget idempotency keys", func(t *testing.T) { testForgetIdempotencyKeys(t, newFixture(t, engine.URL)) })
			t.Run("retries", func(t *testing.T) { testRetries(t, newFixture(t, engine.URL)) })
			t.Run("list pages", func(t *testing.T) { testList(t, newFixture(t, engine.URL)) })
		})
	}
}

type fixture struct {
	db   *db.DB
	repo *adapters.OrderSQLRepository
	now  time.Time
}

// newFixture gives each subtest empty tables: the subtests of an engine
// share its database.
func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	d := dbtest.Open(t, url)
	require.NoError(t, orders.MigrateDB(t.Context(), d))
	for _, table := range []string{"order_events", "orders", "idempotency_keys", "outbox"} {
		_, err := d.ExecContext(t.Context(), "DELETE FROM "+table)
		require.NoError(t, err)
	}
	return &fixture{
		db: d, repo: adapters.NewOrderSQLRepository(d, events.NewOutbox(d)),
		now: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
	}
}

func (f *fixture) place(t *testing.T, userID, key string) (domain.Order, []domain.Event) {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	placed := domain.PlaceOrder{
		OrderID: id.String(), UserID: userID, Email: userID + "@example.test",
		Items:      []domain.Item{{ProductID: "p1", SKU: "SKU-1", Name: "Mug", Quantity: 2, UnitPriceCents: 500, LineTotalCents: 1000}},
		TotalCents: 1000, Currency: "EUR", PaymentToken: "tok_visa",
		ShippingAddress: domain.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", Country: "GB"},
		PlacedAt:        f.now, Deadline: 30 * time.Second,
	}.Placed()
	var o domain.Order
	require.NoError(t, o.Apply(placed))
	out := []events.Event{{ID: o.ID + ":order.placed", Subject: "order.placed", Payload: []byte(`{}`)}}
	err = f.repo.Create(t.Context(), app.IdempotencyRecord{UserID: userID, Key: key, RequestHash: "h", OrderID: o.ID},
		o, []domain.Event{placed}, out, app.SagaWrite{Now: f.now, Step: o.NextStep(f.now, false)})
	require.NoError(t, err)
	return o, []domain.Event{placed}
}

// next applies data to o as the saga would and returns the appended event.
func next(t *testing.T, o *domain.Order, at time.Time, data domain.EventData) domain.Event {
	t.Helper()
	ev := domain.Event{Version: o.Version + 1, OccurredAt: at, Data: data}
	require.NoError(t, o.Apply(ev))
	return ev
}

func (f *fixture) outboxSubjects(t *testing.T) []string {
	t.Helper()
	rows, err := f.db.QueryContext(t.Context(), `SELECT subject FROM outbox ORDER BY subject`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func testCreateLoad(t *testing.T, f *fixture) {
	ctx := t.Context()
	o, evs := f.place(t, "u1", "k1")

	loaded, st, err := f.repo.Load(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, o, loaded, "the stream rebuilds the same order")
	require.Equal(t, domain.StepReserveStock, st.Step)
	require.Equal(t, app.PaymentAttemptNone, st.PaymentAttempt)

	stored, err := f.repo.Events(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, evs, stored)

	v, err := f.repo.Get(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, o.View(), v)

	rec, found, err := f.repo.FindIdempotencyKey(ctx, "u1", "k1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, o.ID, rec.OrderID)
	_, found, err = f.repo.FindIdempotencyKey(ctx, "u2", "k1")
	require.NoError(t, err)
	require.False(t, found, "keys are per user")
	require.Equal(t, []string{"order.placed"}, f.outboxSubjects(t))

	_, _, err = f.repo.Load(ctx, uuid.NewString())
	require.ErrorIs(t, err, domain.ErrNotFound)
	_, err = f.repo.Get(ctx, uuid.NewString())
	require.ErrorIs(t, err, domain.ErrNotFound)
}

func testAppendConcurrency(t *testing.T, f *fixture) {
	ctx := t.Context()
	o, _ := f.place(t, "u1", "k1")

	// Two writers decide from version 1 at once: one reserves stock, the
	// other records a cancellation. Exactly one may win.
	a, b := o, o
	evA := next(t, &a, f.now.Add(time.Second), domain.StockReservedData{})
	evB := next(t, &b, f.now.Add(time.Second), domain.CancellationRequestedData{Reason: "x", By: "u1"})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, w := range []struct {
		o  domain.Order
		ev domain.Event
	}{{a, evA}, {b, evB}} {
		wg.Go(func() {
			errs[i] = f.repo.Append(ctx, w.o, 1, []domain.Event{w.ev}, nil, app.SagaWrite{Now: f.now, Step: w.o.NextStep(f.now, false)})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else {
			require.ErrorIs(t, err, domain.ErrConcurrentModification)
		}
	}
	require.Equal(t, 1, wins, "exactly one append at version 1 succeeds: %v", errs)

	stored, err := f.repo.Events(ctx, o.ID)
	require.NoError(t, err)
	require.Len(t, stored, 2)
	v, err := f.repo.Get(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, int64(2), v.Version)

	// A stale writer is refused, and leaves nothing behind.
	stale := o
	ev := next(t, &stale, f.now, domain.OrderRejectedData{Reason: "out of stock: SKU-1"})
	err = f.repo.Append(ctx, stale, 1, []domain.Event{ev}, []events.Event{{ID: o.ID + ":order.rejected", Subject: "order.rejected", Payload: []byte(`{}`)}},
		app.SagaWrite{Now: f.now, Step: domain.StepDone})
	require.ErrorIs(t, err, domain.ErrConcurrentModification)
	require.Equal(t, []string{"order.placed"}, f.outboxSubjects(t), "the outbox row of a refused append is rolled back")
}

func testReadModel(t *testing.T, f *fixture) {
	ctx := t.Context()
	o, _ := f.place(t, "u1", "k1")
	at := f.now
	steps := []domain.EventData{
		domain.StockReservedData{ExpiresAt: f.now.Add(3 * time.Minute)},
		domain.PaymentAuthorizedData{PaymentID: "pay-1", AmountCents: 1000},
		domain.StockCommittedData{},
		domain.PaymentCapturedData{PaymentID: "pay-1"},
		domain.OrderConfirmedData{},
	}
	for _, data := range steps {
		at = at.Add(10 * time.Millisecond)
		before := o.Version
		ev := next(t, &o, at, data)
		var out []events.Event
		if data.EventType() == domain.OrderConfirmed {
			out = []events.Event{{ID: o.ID + ":order.confirmed", Subject: "order.confirmed", Payload: []byte(`{}`)}}
		}
		attempt := app.PaymentAttemptArmed
		require.NoError(t, f.repo.Append(ctx, o, before, []domain.Event{ev}, out,
			app.SagaWrite{Now: at, Step: o.NextStep(at, false), LeaseOwner: "r1", LeaseUntil: at.Add(time.Minute), PaymentAttempt: &attempt}))

		v, err := f.repo.Get(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, o.View(), v, "after %s", data.EventType())
		loaded, st, err := f.repo.Load(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, o, loaded)
		require.Equal(t, o.NextStep(at, false), st.Step)
		require.Equal(t, attempt, st.PaymentAttempt)
	}
	v, err := f.repo.Get(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusConfirmed, v.Status)
	require.Equal(t, "pay-1", v.PaymentID)
	require.Equal(t, []string{"order.confirmed", "order.placed"}, f.outboxSubjects(t))

	n, err := f.repo.CountInFlight(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a confirmed order is not in flight")
	owned, err := f.repo.ReleaseLeases(ctx, "r1")
	require.NoError(t, err)
	require.Zero(t, owned, "a finished order keeps no lease")
}

func testIdempotencyRace(t *testing.T, f *fixture) {
	ctx := t.Context()
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	ids := make([]string, racers)
	for i := range racers {
		wg.Go(func() {
			id := uuid.NewString()
			ids[i] = id
			placed := domain.PlaceOrder{OrderID: id, UserID: "u1", Items: []domain.Item{}, Currency: "EUR", PlacedAt: f.now, Deadline: time.Second}.Placed()
			var o domain.Order
			if err := o.Apply(placed); err != nil {
				errs[i] = err
				return
			}
			errs[i] = f.repo.Create(ctx, app.IdempotencyRecord{UserID: "u1", Key: "same", RequestHash: "h", OrderID: id},
				o, []domain.Event{placed}, nil, app.SagaWrite{Now: f.now, Step: domain.StepReserveStock})
		})
	}
	wg.Wait()
	var winner string
	for i, err := range errs {
		if err == nil {
			require.Empty(t, winner, "only one request creates an order")
			winner = ids[i]
		} else {
			require.ErrorIs(t, err, app.ErrIdempotencyKeyTaken)
		}
	}
	require.NotEmpty(t, winner)
	list, err := f.repo.List(ctx, "u1", "", 100)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, winner, list[0].ID)
	for _, id := range ids {
		if id != winner {
			evs, err := f.repo.Events(ctx, id)
			require.NoError(t, err)
			require.Empty(t, evs, "a losing request leaves no events")
		}
	}
}

func testForgetIdempotencyKeys(t *testing.T, f *fixture) {
	ctx := t.Context()
	old, _ := f.place(t, "u1", "old")
	f.now = f.now.Add(time.Hour)
	recent, _ := f.place(t, "u1", "recent")

	n, err := f.repo.ForgetIdempotencyKeys(ctx, f.now.Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "a key recorded exactly at the cut-off is kept")

	n, err = f.repo.ForgetIdempotencyKeys(ctx, f.now.Add(-time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	_, found, err := f.repo.FindIdempotencyKey(ctx, "u1", "old")
	require.NoError(t, err)
	require.False(t, found, "the old key is forgotten")
	rec, found, err := f.repo.FindIdempotencyKey(ctx, "u1", "recent")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, recent.ID, rec.OrderID)

	o, _, err := f.repo.Load(ctx, old.ID)
	require.NoError(t, err, "the order itself stays")
	require.Equal(t, old.ID, o.ID)
}

func testLeases(t *testing.T, f *fixture) {
	ctx := t.Context()
	o, _ := f.place(t, "u1", "k1")
	now := f.now.Add(time.Millisecond)

	due, err := f.repo.Due(ctx, now, 10)
	require.NoError(t, err)
	require.Equal(t, []string{o.ID}, due)

	st, ok, err := f.repo.Claim(ctx, o.ID, "r1", now, now.Add(30*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	_, want, err := f.repo.Load(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, want, st, "the claim returns the bookkeeping a load reads")
	require.Equal(t, "r1", st.LeaseOwner)
	_, ok, err = f.repo.Claim(ctx, o.ID, "r2", now.Add(time.Second), now.Add(31*time.Second))
	require.NoError(t, err)
	require.False(t, ok, "a live lease keeps other replicas out")
	_, ok, err = f.repo.Claim(ctx, o.ID, "r1", now.Add(time.Second), now.Add(31*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "the holder may claim again")
	due, err = f.repo.Due(ctx, now.Add(time.Second), 10)
	require.NoError(t, err)
	require.Empty(t, due, "a leased order is not due")

	_, ok, err = f.repo.Claim(ctx, o.ID, "r2", now.Add(32*time.Second), now.Add(62*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "an expired lease can be taken over")

	n, err := f.repo.ReleaseLeases(ctx, "r2")
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	_, ok, err = f.repo.Claim(ctx, o.ID, "r3", now.Add(33*time.Second), now.Add(63*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "released leases are free at once")

	_, ok, err = f.repo.Claim(ctx, o.ID, "r1", f.now.Add(-time.Second), now)
	require.NoError(t, err)
	require.False(t, ok, "a step that is not due yet is not claimed")

	// A finished order is never claimed.
	done, _ := f.place(t, "u1", "k2")
	ev := next(t, &done, now, domain.OrderRejectedData{Reason: "out of stock"})
	require.NoError(t, f.repo.Append(ctx, done, 1, []domain.Event{ev}, nil, app.SagaWrite{Now: now, Step: domain.StepDone}))
	_, ok, err = f.repo.Claim(ctx, done.ID, "r1", now.Add(time.Hour), now.Add(2*time.Hour))
	require.NoError(t, err)
	require.False(t, ok)
}

func testRetries(t *testing.T, f *fixture) {
	ctx := t.Context()
	o, _ := f.place(t, "u1", "k1")
	now := f.now.Add(time.Millisecond)
	_, ok, err := f.repo.Claim(ctx, o.ID, "r1", now, now.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)

	retryAt := now.Add(200 * time.Millisecond)
	require.NoError(t, f.repo.ScheduleRetry(ctx, o.ID, "r1", 1, app.Retry{
		Attempts: 3, NextAttemptAt: retryAt, PaymentAttempt: app.PaymentAttemptUncertain,
	}))
	_, st, err := f.repo.Load(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, 3, st.Attempts)
	require.True(t, retryAt.Equal(st.NextAttemptAt))
	require.Equal(t, app.PaymentAttemptUncertain, st.PaymentAttempt)
	require.Empty(t, st.LeaseOwner, "a scheduled retry drops the lease")

	due, err := f.repo.Due(ctx, now.Add(100*time.Millisecond), 10)
	require.NoError(t, err)
	require.Empty(t, due, "not due before the retry time")
	due, err = f.repo.Due(ctx, retryAt, 10)
	require.NoError(t, err)
	require.Equal(t, []string{o.ID}, due)

	// A newer event makes its step due at once; a late retry for the old
	// version must not push it back, but still records the payment doubt.
	ev := next(t, &o, now, domain.CancellationRequestedData{Reason: "x", By: "u1"})
	require.NoError(t, f.repo.Append(ctx, o, 1, []domain.Event{ev}, nil, app.SagaWrite{Now: now, Step: o.NextStep(now, false)}))
	require.NoError(t, f.repo.ScheduleRetry(ctx, o.ID, "r1", 1, app.Retry{
		Attempts: 4, NextAttemptAt: now.Add(time.Hour), PaymentAttempt: app.PaymentAttemptArmed,
	}))
	_, st, err = f.repo.Load(ctx, o.ID)
	require.NoError(t, err)
	require.Zero(t, st.Attempts)
	require.True(t, now.Equal(st.NextAttemptAt))
	require.Equal(t, app.PaymentAttemptArmed, st.PaymentAttempt)
	require.Equal(t, domain.StepReleaseStock, st.Step)

	require.NoError(t, f.repo.SetPaymentAttempt(ctx, o.ID, app.PaymentAttemptNone))
	_, st, err = f.repo.Load(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, app.PaymentAttemptNone, st.PaymentAttempt)
}

func testList(t *testing.T, f *fixture) {
	ctx := t.Context()
	var mine []string
	for i := range 5 {
		o, _ := f.place(t, "u1", fmt.Sprintf("k%d", i))
		mine = append(mine, o.ID)
		f.place(t, "u2", fmt.Sprintf("k%d", i))
	}
	page, err := f.repo.List(ctx, "u1", "", 3)
	require.NoError(t, err)
	require.Equal(t, []string{mine[4], mine[3], mine[2]}, ids(page), "newest first")
	page, err = f.repo.List(ctx, "u1", mine[2], 3)
	require.NoError(t, err)
	require.Equal(t, []string{mine[1], mine[0]}, ids(page))
	all, err := f.repo.List(ctx, "", "", 100)
	require.NoError(t, err)
	require.Len(t, all, 10)
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i-1].ID, all[i].ID)
	}
	n, err := f.repo.CountInFlight(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
}

func ids(vs []domain.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.ID
	}
	return out
}
