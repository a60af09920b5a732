package adapters_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/payments/adapters"
	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestPaymentSQLRepository runs one suite against every engine.
func TestPaymentSQLRepository(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			t.Run("begin authorization is unique per key", func(t *testing.T) { testBeginAuthorization(t, newFixture(t, engine.URL)) })
			t.Run("complete authorization records once", func(t *testing.T) { testCompleteAuthorization(t, newFixture(t, engine.URL)) })
			t.Run("abandon removes only pending", func(t *testing.T) { testAbandon(t, newFixture(t, engine.URL)) })
			t.Run("operations claim and complete", func(t *testing.T) { testOperations(t, newFixture(t, engine.URL)) })
			t.Run("one capture per order", func(t *testing.T) { testOneCapturePerOrder(t, newFixture(t, engine.URL)) })
			t.Run("one capture per order under races", func(t *testing.T) { testOneCapturePerOrderRacing(t, newFixture(t, engine.URL)) })
			t.Run("schema refuses impossible rows", func(t *testing.T) { testSchemaChecks(t, newFixture(t, engine.URL)) })
			t.Run("list by order", func(t *testing.T) { testListByOrder(t, newFixture(t, engine.URL)) })
		})
	}
}

type fixture struct {
	db   *db.DB
	repo *adapters.PaymentSQLRepository
}

// newFixture empties the engine's database, which every subtest shares.
func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	d := dbtest.Open(t, url)
	require.NoError(t, payments.MigrateDB(t.Context(), d))
	for _, table := range []string{"payments", "outbox"} {
		_, err := d.ExecContext(t.Context(), "DELETE FROM "+table)
		require.NoError(t, err)
	}
	return &fixture{db: d, repo: adapters.NewPaymentSQLRepository(d, events.NewOutbox(d))}
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

func pendingPayment(t *testing.T, orderID string) domain.Payment {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return domain.Payment{
		ID: newID(t), OrderID: orderID, UserID: newID(t), AmountCents: 2500, Currency: "EUR",
		Status: domain.StatusPending, IdempotencyKey: "key-" + newID(t), RequestHash: "hash",
		CreatedAt: now, UpdatedAt: now,
	}
}

// authorized stores an authorized payment of orderID.
func (f *fixture) authorized(t *testing.T, orderID string) domain.Payment {
	t.Helper()
	p, created, err := f.repo.BeginAuthorization(t.Context(), pendingPayment(t, orderID))
	require.NoError(t, err)
	require.True(t, created)
	p.Status, p.CardBrand, p.ProviderRef = domain.StatusAuthorized, "visa", "fake_auth_"+p.ID
	p.UpdatedAt = p.UpdatedAt.Add(time.Millisecond)
	_, recorded, err := f.repo.CompleteAuthorization(t.Context(), p, event(p))
	require.NoError(t, err)
	require.True(t, recorded)
	return p
}

func event(p domain.Payment) events.Event {
	payload, err := domain.EventPayload(p)
	if err != nil {
		panic(err)
	}
	return events.Event{ID: domain.EventID(p.ID, p.Status), Subject: domain.Subject(p.Status), Payload: payload}
}

func (f *fixture) outboxCount(t *testing.T, subject string) int {
	t.Helper()
	var n int
	require.NoError(t, f.db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM outbox WHERE subject = $1`, subject).Scan(&n))
	return n
}

// finish moves p through op as the use case would, without a provider.
func (f *fixture) finish(t *testing.T, p domain.Payment, op domain.Operation) (domain.Payment, bool) {
	t.Helper()
	p.Status, p.PendingOp, p.UpdatedAt = op.Target(), "", p.UpdatedAt.Add(time.Millisecond)
	recorded, err := f.repo.CompleteOperation(t.Context(), p, op, event(p))
	require.NoError(t, err)
	return p, recorded
}

func testBeginAuthorization(t *testing.T, f *fixture) {
	p := pendingPayment(t, newID(t))
	stored, created, err := f.repo.BeginAuthorization(t.Context(), p)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, p, stored)

	got, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, p, got)

	// Same key, another attempt: the first payment comes back.
	again := pendingPayment(t, p.OrderID)
	again.IdempotencyKey, again.RequestHash = p.IdempotencyKey, "other"
	stored, created, err = f.repo.BeginAuthorization(t.Context(), again)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, p, stored)

	// Racing attempts with one key: exactly one creates.
	key := "race-" + newID(t)
	const racers = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		creates int
		ids     = map[string]bool{}
	)
	for range racers {
		wg.Go(func() {
			q := pendingPayment(t, p.OrderID)
			q.IdempotencyKey = key
			stored, created, err := f.repo.BeginAuthorization(context.WithoutCancel(t.Context()), q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("begin authorization: %v", err)
				return
			}
			if created {
				creates++
			}
			ids[stored.ID] = true
		})
	}
	wg.Wait()
	require.Equal(t, 1, creates)
	require.Len(t, ids, 1)

	_, err = f.repo.Get(t.Context(), newID(t))
	require.ErrorIs(t, err, domain.ErrNotFound)
}

func testCompleteAuthorization(t *testing.T, f *fixture) {
	p, _, err := f.repo.BeginAuthorization(t.Context(), pendingPayment(t, newID(t)))
	require.NoError(t, err)

	declined := p
	declined.Status, declined.DeclineCode, declined.CardBrand, declined.ProviderRef =
		domain.StatusDeclined, "card_declined", "visa", "fake_auth_1"
	declined.UpdatedAt = p.UpdatedAt.Add(time.Second)
	got, recorded, err := f.repo.CompleteAuthorization(t.Context(), declined, event(declined))
	require.NoError(t, err)
	require.True(t, recorded)
	require.Equal(t, declined, got)

	stored, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, declined, stored)
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectDeclined))

	// A second recording (another attempt) writes nothing and returns the first.
	approved := declined
	approved.Status, approved.DeclineCode = domain.StatusAuthorized, ""
	got, recorded, err = f.repo.CompleteAuthorization(t.Context(), approved, event(approved))
	require.NoError(t, err)
	require.False(t, recorded)
	require.Equal(t, declined, got)
	require.Zero(t, f.outboxCount(t, domain.SubjectAuthorized))
}

func testAbandon(t *testing.T, f *fixture) {
	pending, _, err := f.repo.BeginAuthorization(t.Context(), pendingPayment(t, newID(t)))
	require.NoError(t, err)
	require.NoError(t, f.repo.AbandonAuthorization(t.Context(), pending.ID))
	_, err = f.repo.Get(t.Context(), pending.ID)
	require.ErrorIs(t, err, domain.ErrNotFound)

	// The key is free again.
	retry := pendingPayment(t, pending.OrderID)
	retry.IdempotencyKey = pending.IdempotencyKey
	_, created, err := f.repo.BeginAuthorization(t.Context(), retry)
	require.NoError(t, err)
	require.True(t, created)

	done := f.authorized(t, newID(t))
	require.NoError(t, f.repo.AbandonAuthorization(t.Context(), done.ID))
	_, err = f.repo.Get(t.Context(), done.ID)
	require.NoError(t, err, "a recorded payment is never abandoned")
}

func testOperations(t *testing.T, f *fixture) {
	p := f.authorized(t, newID(t))

	// Refund needs a captured payment: nothing is claimed.
	claimed, err := f.repo.BeginOperation(t.Context(), p.ID, domain.OpRefund)
	require.NoError(t, err)
	require.False(t, claimed)

	claimed, err = f.repo.BeginOperation(t.Context(), p.ID, domain.OpCapture)
	require.NoError(t, err)
	require.True(t, claimed)
	stored, err := f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, domain.OpCapture, stored.PendingOp)
	require.Equal(t, domain.StatusAuthorized, stored.Status)

	// While a capture is in progress no other operation begins.
	claimed, err = f.repo.BeginOperation(t.Context(), p.ID, domain.OpVoid)
	require.NoError(t, err)
	require.False(t, claimed)

	captured, recorded := f.finish(t, p, domain.OpCapture)
	require.True(t, recorded)
	_, recorded = f.finish(t, p, domain.OpCapture)
	require.False(t, recorded, "a capture is recorded once")
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectCaptured))

	stored, err = f.repo.Get(t.Context(), p.ID)
	require.NoError(t, err)
	require.Equal(t, captured, stored)

	// Completing an operation that was never begun records nothing.
	_, recorded = f.finish(t, captured, domain.OpRefund)
	require.False(t, recorded)

	claimed, err = f.repo.BeginOperation(t.Context(), p.ID, domain.OpRefund)
	require.NoError(t, err)
	require.True(t, claimed)
	refunded, recorded := f.finish(t, captured, domain.OpRefund)
	require.True(t, recorded)
	require.Equal(t, domain.StatusRefunded, refunded.Status)
	require.Equal(t, 1, f.outboxCount(t, domain.SubjectRefunded))
}

func testOneCapturePerOrder(t *testing.T, f *fixture) {
	order := newID(t)
	first, second := f.authorized(t, order), f.authorized(t, order)

	claimed, err := f.repo.BeginOperation(t.Context(), first.ID, domain.OpCapture)
	require.NoError(t, err)
	require.True(t, claimed)

	// Being captured already holds the order's slot.
	_, err = f.repo.BeginOperation(t.Context(), second.ID, domain.OpCapture)
	require.ErrorIs(t, err, domain.ErrOrderCaptured)

	captured, recorded := f.finish(t, first, domain.OpCapture)
	require.True(t, recorded)
	_, err = f.repo.BeginOperation(t.Context(), second.ID, domain.OpCapture)
	require.ErrorIs(t, err, domain.ErrOrderCaptured)

	// A refund does not free it: the order was captured once.
	_, err = f.repo.BeginOperation(t.Context(), first.ID, domain.OpRefund)
	require.NoError(t, err)
	_, recorded = f.finish(t, captured, domain.OpRefund)
	require.True(t, recorded)
	_, err = f.repo.BeginOperation(t.Context(), second.ID, domain.OpCapture)
	require.ErrorIs(t, err, domain.ErrOrderCaptured)

	// The other payment can still be voided, and another order captured.
	claimed, err = f.repo.BeginOperation(t.Context(), second.ID, domain.OpVoid)
	require.NoError(t, err)
	require.True(t, claimed)
	other := f.authorized(t, newID(t))
	claimed, err = f.repo.BeginOperation(t.Context(), other.ID, domain.OpCapture)
	require.NoError(t, err)
	require.True(t, claimed)

	// Even a direct write cannot put two captured payments on one order.
	third := f.authorized(t, order)
	_, err = f.db.ExecContext(t.Context(), `UPDATE payments SET status = 'captured' WHERE id = $1`, third.ID)
	require.True(t, db.IsUniqueViolation(err), "got %v", err)
}

func testOneCapturePerOrderRacing(t *testing.T, f *fixture) {
	order := newID(t)
	const racers = 6
	ps := make([]domain.Payment, racers)
	for i := range ps {
		ps[i] = f.authorized(t, order)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		winners   int
		conflicts int
	)
	for _, p := range ps {
		wg.Go(func() {
			claimed, err := f.repo.BeginOperation(context.WithoutCancel(t.Context()), p.ID, domain.OpCapture)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && claimed:
				winners++
			case errors.Is(err, domain.ErrOrderCaptured):
				conflicts++
			default:
				t.Errorf("begin capture: claimed=%v err=%v", claimed, err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, winners)
	require.Equal(t, racers-1, conflicts)
}

func testSchemaChecks(t *testing.T, f *fixture) {
	p := f.authorized(t, newID(t))
	for _, stmt := range []string{
		`UPDATE payments SET status = 'settled' WHERE id = $1`,
		`UPDATE payments SET pending_op = 'refund' WHERE id = $1`, // refund needs captured
		`UPDATE payments SET amount_cents = 0 WHERE id = $1`,
	} {
		_, err := f.db.ExecContext(t.Context(), stmt, p.ID)
		require.Error(t, err, stmt)
	}
}

func testListByOrder(t *testing.T, f *fixture) {
	order := newID(t)
	first := f.authorized(t, order)
	second := f.authorized(t, order)
	_, _, err := f.repo.BeginAuthorization(t.Context(), pendingPayment(t, order)) // pending: never listed
	require.NoError(t, err)
	f.authorized(t, newID(t)) // another order

	all, err := f.repo.ListByOrder(t.Context(), order, "")
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, first.ID, all[0].ID, "oldest first")
	require.Equal(t, second.ID, all[1].ID)

	mine, err := f.repo.ListByOrder(t.Context(), order, second.UserID)
	require.NoError(t, err)
	require.Len(t, mine, 1)
	require.Equal(t, second.ID, mine[0].ID)

	none, err := f.repo.ListByOrder(t.Context(), order, newID(t))
	require.NoError(t, err)
	require.Empty(t, none)
}
