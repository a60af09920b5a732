package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/payments/adapters"
	"github.com/mercato-dev/mercato/internal/payments/app"
	"github.com/mercato-dev/mercato/internal/payments/domain"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// TestPayments runs the use cases against the real repository on every
// engine, with the fake provider.
func TestPayments(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, url string)
	}{
		{"each token's outcome", testTokenOutcomes},
		{"unknown token leaves nothing", testUnknownToken},
		{"checking a token holds and stores nothing", testCheckPaymentToken},
		{"invalid requests", testInvalidRequests},
		{"only services and admins change payments", testAuthorizeNeedsService},
		{"authorize twice is once", testAuthorizeIdempotent},
		{"key reused with a different request", testKeyReuse},
		{"crash after the provider approved", testAuthorizeCrashWindow},
		{"capture void refund twice is once", testOperationsIdempotent},
		{"invalid transitions", testInvalidTransitions},
		{"concurrent captures of one payment", testConcurrentCaptures},
		{"one capture per order", testOneCapturePerOrder},
		{"failure rate one", testFailureRateOne},
		{"failure rate zero", testFailureRateZero},
		{"latency honours cancellation", testLatencyCancellation},
		{"an answer is recorded after the caller gave up", testRecordAfterCancel},
		{"provider outage during capture", testCaptureOutage},
		{"list payments ownership", testListPayments},
		{"transitions are counted", testTransitionsCounted},
	}
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, engine.URL) })
			}
		})
	}
}

type fixture struct {
	db       *db.DB
	repo     *adapters.PaymentSQLRepository
	provider *adapters.FakeProvider
	payments *app.Payments
	recorder *countingRecorder
	service  context.Context
	admin    context.Context
}

// newFixture empties the engine's database, which every subtest shares.
func newFixture(t *testing.T, url string, cfg adapters.FakeProviderConfig) *fixture {
	t.Helper()
	d := dbtest.Open(t, url)
	require.NoError(t, payments.MigrateDB(t.Context(), d))
	for _, table := range []string{"payments", "outbox"} {
		_, err := d.ExecContext(t.Context(), "DELETE FROM "+table)
		require.NoError(t, err)
	}
	f := &fixture{
		db:       d,
		repo:     adapters.NewPaymentSQLRepository(d, events.NewOutbox(d)),
		provider: adapters.NewFakeProvider(cfg),
		recorder: &countingRecorder{counts: map[string]int{}},
		service:  auth.WithPrincipal(t.Context(), auth.Principal{UserID: "orders", Role: auth.RoleService}),
		admin:    auth.WithPrincipal(t.Context(), auth.Principal{UserID: newID(t), Role: auth.RoleAdmin}),
	}
	f.payments = app.NewPayments(f.repo, f.provider, f.recorder)
	return f
}

// withProvider returns use cases over the same database with another provider.
func (f *fixture) withProvider(p app.Provider) *app.Payments {
	return app.NewPayments(f.repo, p, f.recorder)
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

func customer(ctx context.Context, userID string) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{UserID: userID, Role: auth.RoleCustomer})
}

func request(t *testing.T, token string) domain.AuthorizeInput {
	order := newID(t)
	return domain.AuthorizeInput{
		IdempotencyKey: "order/" + order, OrderID: order, UserID: newID(t),
		AmountCents: 4200, Currency: "EUR", PaymentToken: token,
	}
}

func (f *fixture) authorize(t *testing.T, in domain.AuthorizeInput) domain.Payment {
	t.Helper()
	p, err := f.payments.Authorize(f.service, in)
	require.NoError(t, err)
	return p
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.db.QueryRowContext(t.Context(), query, args...).Scan(&n))
	return n
}

func (f *fixture) events(t *testing.T, subject string) int {
	t.Helper()
	return f.count(t, `SELECT COUNT(*) FROM outbox WHERE subject = $1`, subject)
}

func (f *fixture) stored(t *testing.T, id string) domain.Payment {
	t.Helper()
	p, err := f.repo.Get(t.Context(), id)
	require.NoError(t, err)
	return p
}

type countingRecorder struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *countingRecorder) Transition(from, to domain.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[string(from)+"->"+string(to)]++
}

func (r *countingRecorder) get(from, to domain.Status) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[string(from)+"->"+string(to)]
}

// lossyProvider forwards calls to the fake but, while lose is set, reports
// a failure after the fake acted: a lost response or a crash before the
// outcome was recorded.
type lossyProvider struct {
	*adapters.FakeProvider
	lose bool
}

var errLost = errors.New("connection reset after the provider acted")

func (p *lossyProvider) Authorize(ctx context.Context, req app.ProviderAuthorization) (app.ProviderResult, error) {
	res, err := p.FakeProvider.Authorize(ctx, req)
	if err == nil && p.lose {
		return app.ProviderResult{}, errLost
	}
	return res, err
}

func (p *lossyProvider) Capture(ctx context.Context, ref, key string) error {
	err := p.FakeProvider.Capture(ctx, ref, key)
	if err == nil && p.lose {
		return errLost
	}
	return err
}

func testTokenOutcomes(t *testing.T, url string) {
	tests := []struct {
		token, status, brand, decline, subject string
	}{
		{adapters.TokenVisa, "authorized", "visa", "", domain.SubjectAuthorized},
		{adapters.TokenMastercard, "authorized", "mastercard", "", domain.SubjectAuthorized},
		{adapters.TokenChargeDeclined, "declined", "visa", "card_declined", domain.SubjectDeclined},
		{adapters.TokenInsufficientFunds, "declined", "visa", "insufficient_funds", domain.SubjectDeclined},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			f := newFixture(t, url, adapters.FakeProviderConfig{})
			in := request(t, tt.token)
			p := f.authorize(t, in)
			require.Equal(t, domain.Status(tt.status), p.Status)
			require.Equal(t, tt.brand, p.CardBrand)
			require.Equal(t, tt.decline, p.DeclineCode)
			require.Equal(t, in.OrderID, p.OrderID)
			require.Equal(t, in.UserID, p.UserID)
			require.Equal(t, int64(4200), p.AmountCents)
			require.Equal(t, "EUR", p.Currency)
			_, err := uuid.Parse(p.ID)
			require.NoError(t, err)
			require.Equal(t, p, f.stored(t, p.ID), "what is returned is what is stored")
			require.Equal(t, 1, f.events(t, tt.subject))

			// The token is nowhere in the row.
			require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments WHERE
				id LIKE $1 OR order_id LIKE $1 OR user_id LIKE $1 OR currency LIKE $1 OR status LIKE $1 OR
				decline_code LIKE $1 OR card_brand LIKE $1 OR provider_ref LIKE $1 OR
				idempotency_key LIKE $1 OR request_hash LIKE $1 OR pending_op LIKE $1`, "%"+tt.token+"%"))
		})
	}
}

func testUnknownToken(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	in := request(t, "tok_stolenCardNumber")
	_, err := f.payments.Authorize(f.service, in)
	require.ErrorIs(t, err, domain.ErrUnknownPaymentToken)
	require.Equal(t, apperr.Invalid, apperr.KindOf(err))
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments`))
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM outbox`))

	// Nothing was kept, so the key may be used with a corrected request.
	in.PaymentToken = adapters.TokenVisa
	require.Equal(t, domain.StatusAuthorized, f.authorize(t, in).Status)
}

func testCheckPaymentToken(t *testing.T, url string) {
	// The check is a lookup: neither a slow nor a failing provider holds
	// it up, so orders can still be accepted while the saga waits.
	f := newFixture(t, url, adapters.FakeProviderConfig{Latency: time.Hour, FailureRate: 1})
	f.provider.SetDown(true)
	for token, brand := range map[string]string{
		adapters.TokenVisa: "visa", adapters.TokenMastercard: "mastercard",
		// Known cards whose charges are declined: only an authorization
		// finds that out.
		adapters.TokenChargeDeclined: "visa", adapters.TokenInsufficientFunds: "visa",
	} {
		m, err := f.payments.CheckPaymentToken(f.service, token)
		require.NoError(t, err, token)
		require.Equal(t, domain.PaymentMethod{CardBrand: brand}, m)
	}
	m, err := f.payments.CheckPaymentToken(f.admin, adapters.TokenVisa)
	require.NoError(t, err, "an admin may act like a service")
	require.Equal(t, "visa", m.CardBrand)

	_, err = f.payments.CheckPaymentToken(f.service, "tok_unknownCard")
	require.ErrorIs(t, err, domain.ErrUnknownPaymentToken)
	require.Equal(t, apperr.Invalid, apperr.KindOf(err))
	require.EqualError(t, err, "unknown payment token")
	calls := f.provider.Calls(adapters.OpCheckToken)
	require.Equal(t, 6, calls)

	for token, want := range map[string]error{
		"":                       domain.ErrPaymentTokenRequired,
		"tok visa":               domain.ErrPaymentTokenInvalid,
		"tok_\x00":               domain.ErrPaymentTokenInvalid,
		strings.Repeat("t", 256): domain.ErrPaymentTokenInvalid,
	} {
		_, err := f.payments.CheckPaymentToken(f.service, token)
		require.ErrorIs(t, err, want, "%q", token)
	}
	require.Equal(t, calls, f.provider.Calls(adapters.OpCheckToken), "a malformed token never reaches the provider")

	_, err = f.payments.CheckPaymentToken(customer(t.Context(), newID(t)), adapters.TokenVisa)
	require.ErrorIs(t, err, auth.ErrNotService)
	_, err = f.payments.CheckPaymentToken(t.Context(), adapters.TokenVisa)
	require.ErrorIs(t, err, auth.ErrMissingToken)

	require.Zero(t, f.provider.Calls(adapters.OpAuthorize))
	require.Zero(t, f.provider.Holds())
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments`))
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM outbox`))
}

func testInvalidRequests(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	for name, change := range map[string]func(*domain.AuthorizeInput){
		"no key":        func(in *domain.AuthorizeInput) { in.IdempotencyKey = "" },
		"bad order":     func(in *domain.AuthorizeInput) { in.OrderID = "nope" },
		"zero amount":   func(in *domain.AuthorizeInput) { in.AmountCents = 0 },
		"huge amount":   func(in *domain.AuthorizeInput) { in.AmountCents = 100_000_001 },
		"bad currency":  func(in *domain.AuthorizeInput) { in.Currency = "BTC" },
		"missing token": func(in *domain.AuthorizeInput) { in.PaymentToken = "" },
	} {
		in := request(t, adapters.TokenVisa)
		change(&in)
		_, err := f.payments.Authorize(f.service, in)
		require.Equal(t, apperr.Invalid, apperr.KindOf(err), name)
	}
	require.Zero(t, f.provider.Calls(adapters.OpAuthorize))
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments`))

	_, err := f.payments.Capture(f.service, "")
	require.ErrorIs(t, err, domain.ErrPaymentIDRequired)
	_, err = f.payments.Capture(f.service, "not-a-payment")
	require.ErrorIs(t, err, domain.ErrNotFound)
	_, err = f.payments.Void(f.service, newID(t))
	require.ErrorIs(t, err, domain.ErrNotFound)
}

func testAuthorizeNeedsService(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	p := f.authorize(t, request(t, adapters.TokenVisa))
	shopper := customer(t.Context(), p.UserID)

	_, err := f.payments.Authorize(shopper, request(t, adapters.TokenVisa))
	require.ErrorIs(t, err, auth.ErrNotService)
	_, err = f.payments.Authorize(t.Context(), request(t, adapters.TokenVisa))
	require.ErrorIs(t, err, auth.ErrMissingToken)
	for _, change := range []func(context.Context, string) (domain.Payment, error){
		f.payments.Capture, f.payments.Void, f.payments.Refund,
	} {
		_, err := change(shopper, p.ID)
		require.ErrorIs(t, err, auth.ErrNotService)
	}
	require.Equal(t, domain.StatusAuthorized, f.stored(t, p.ID).Status)

	// An admin may act like a service.
	in := request(t, adapters.TokenVisa)
	q, err := f.payments.Authorize(f.admin, in)
	require.NoError(t, err)
	q, err = f.payments.Capture(f.admin, q.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusCaptured, q.Status)
}

func testAuthorizeIdempotent(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	in := request(t, adapters.TokenVisa)
	first := f.authorize(t, in)
	second := f.authorize(t, in)
	require.Equal(t, first, second)
	require.Equal(t, 1, f.provider.Calls(adapters.OpAuthorize), "the replay does not reach the provider")
	require.Equal(t, 1, f.count(t, `SELECT COUNT(*) FROM payments`))
	require.Equal(t, 1, f.events(t, domain.SubjectAuthorized))

	// A stored decline is replayed too.
	declined := request(t, adapters.TokenChargeDeclined)
	d1 := f.authorize(t, declined)
	d2 := f.authorize(t, declined)
	require.Equal(t, d1, d2)
	require.Equal(t, domain.StatusDeclined, d2.Status)
	require.Equal(t, 2, f.provider.Calls(adapters.OpAuthorize))
	require.Equal(t, 1, f.events(t, domain.SubjectDeclined))

	// Racing replays produce one payment and one hold.
	racing := request(t, adapters.TokenMastercard)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	for range 8 {
		wg.Go(func() {
			p, err := f.payments.Authorize(context.WithoutCancel(f.service), racing)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("authorize: %v", err)
				return
			}
			if p.Status != domain.StatusAuthorized {
				t.Errorf("status %s", p.Status)
			}
			ids[p.ID] = true
		})
	}
	wg.Wait()
	require.Len(t, ids, 1)
	require.Equal(t, 3, f.provider.Holds())
	require.Equal(t, 2, f.events(t, domain.SubjectAuthorized))
}

func testKeyReuse(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	in := request(t, adapters.TokenVisa)
	p := f.authorize(t, in)
	for name, change := range map[string]func(*domain.AuthorizeInput){
		"amount":   func(in *domain.AuthorizeInput) { in.AmountCents++ },
		"order":    func(in *domain.AuthorizeInput) { in.OrderID = newID(t) },
		"user":     func(in *domain.AuthorizeInput) { in.UserID = newID(t) },
		"currency": func(in *domain.AuthorizeInput) { in.Currency = "USD" },
		"token":    func(in *domain.AuthorizeInput) { in.PaymentToken = adapters.TokenMastercard },
	} {
		other := in
		change(&other)
		_, err := f.payments.Authorize(f.service, other)
		require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused, name)
		require.Equal(t, apperr.Unprocessable, apperr.KindOf(err))
	}
	require.Equal(t, 1, f.provider.Calls(adapters.OpAuthorize))
	require.Equal(t, p, f.stored(t, p.ID))

	// Only the key is compared, not its spelling of the same request.
	same := in
	same.Currency = "eur"
	require.Equal(t, p, f.authorize(t, same))
}

func testAuthorizeCrashWindow(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	lossy := &lossyProvider{FakeProvider: f.provider, lose: true}
	in := request(t, adapters.TokenVisa)

	_, err := f.withProvider(lossy).Authorize(f.service, in)
	require.ErrorIs(t, err, errLost)
	require.Equal(t, 1, f.provider.Holds(), "the provider approved")
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments WHERE status <> 'pending'`))
	_, err = f.payments.ListPayments(f.admin, in.OrderID)
	require.ErrorIs(t, err, domain.ErrPaymentsNotFound, "a pending authorization is not shown")

	// The retry (here by a restarted process) reaches the provider again
	// and gets the same authorization back, not a second hold.
	p := f.authorize(t, in)
	require.Equal(t, domain.StatusAuthorized, p.Status)
	require.Equal(t, 1, f.provider.Holds())
	require.Equal(t, 2, f.provider.Calls(adapters.OpAuthorize))
	require.Equal(t, 1, f.events(t, domain.SubjectAuthorized))
	require.Equal(t, p, f.authorize(t, in))
}

func testOperationsIdempotent(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})

	captured := f.authorize(t, request(t, adapters.TokenVisa))
	c1, err := f.payments.Capture(f.service, captured.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusCaptured, c1.Status)
	c2, err := f.payments.Capture(f.service, captured.ID)
	require.NoError(t, err)
	require.Equal(t, c1, c2)
	require.Equal(t, c1, f.stored(t, captured.ID))

	r1, err := f.payments.Refund(f.service, captured.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusRefunded, r1.Status)
	r2, err := f.payments.Refund(f.service, captured.ID)
	require.NoError(t, err)
	require.Equal(t, r1, r2)

	voided := f.authorize(t, request(t, adapters.TokenVisa))
	v1, err := f.payments.Void(f.service, voided.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusVoided, v1.Status)
	v2, err := f.payments.Void(f.service, voided.ID)
	require.NoError(t, err)
	require.Equal(t, v1, v2)

	for _, subject := range []string{domain.SubjectCaptured, domain.SubjectRefunded, domain.SubjectVoided} {
		require.Equal(t, 1, f.events(t, subject), subject)
	}
	for _, op := range []string{adapters.OpCapture, adapters.OpRefund, adapters.OpVoid} {
		require.Equal(t, 1, f.provider.Calls(op), "a replayed %s does not reach the provider", op)
	}
}

func testInvalidTransitions(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	authorized := f.authorize(t, request(t, adapters.TokenVisa))
	declined := f.authorize(t, request(t, adapters.TokenInsufficientFunds))
	captured := f.authorize(t, request(t, adapters.TokenVisa))
	_, err := f.payments.Capture(f.service, captured.ID)
	require.NoError(t, err)
	voided := f.authorize(t, request(t, adapters.TokenVisa))
	_, err = f.payments.Void(f.service, voided.ID)
	require.NoError(t, err)
	refunded := f.authorize(t, request(t, adapters.TokenVisa))
	_, err = f.payments.Capture(f.service, refunded.ID)
	require.NoError(t, err)
	_, err = f.payments.Refund(f.service, refunded.ID)
	require.NoError(t, err)

	type change func(context.Context, string) (domain.Payment, error)
	tests := []struct {
		name string
		p    domain.Payment
		op   change
		want error
	}{
		{"refund an authorized payment", authorized, f.payments.Refund, domain.ErrNotCapturedVoid},
		{"capture a declined payment", declined, f.payments.Capture, domain.ErrDeclined},
		{"void a declined payment", declined, f.payments.Void, domain.ErrDeclined},
		{"refund a declined payment", declined, f.payments.Refund, domain.ErrDeclined},
		{"void a captured payment", captured, f.payments.Void, domain.ErrCapturedRefund},
		{"capture a voided payment", voided, f.payments.Capture, domain.ErrVoided},
		{"refund a voided payment", voided, f.payments.Refund, domain.ErrVoided},
		{"capture a refunded payment", refunded, f.payments.Capture, domain.ErrRefunded},
		{"void a refunded payment", refunded, f.payments.Void, domain.ErrRefunded},
	}
	for _, tt := range tests {
		before := f.stored(t, tt.p.ID)
		_, err := tt.op(f.service, tt.p.ID)
		require.ErrorIs(t, err, tt.want, tt.name)
		require.Equal(t, apperr.Conflict, apperr.KindOf(err), tt.name)
		require.Equal(t, before, f.stored(t, tt.p.ID), tt.name)
	}
	require.Equal(t, "payment is captured; refund it instead", domain.ErrCapturedRefund.Error())
}

func testConcurrentCaptures(t *testing.T, url string) {
	// The latency keeps every racer's provider call in flight together.
	f := newFixture(t, url, adapters.FakeProviderConfig{Latency: 20 * time.Millisecond})
	p := f.authorize(t, request(t, adapters.TokenVisa))
	const racers = 8
	var wg sync.WaitGroup
	results := make([]domain.Payment, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { results[i], errs[i] = f.payments.Capture(context.WithoutCancel(f.service), p.ID) })
	}
	wg.Wait()
	for i := range racers {
		require.NoError(t, errs[i])
		require.Equal(t, domain.StatusCaptured, results[i].Status)
	}
	require.Equal(t, 1, f.events(t, domain.SubjectCaptured), "exactly one capture recorded")
	require.Equal(t, 1, f.recorder.get(domain.StatusAuthorized, domain.StatusCaptured))
	require.Equal(t, domain.StatusCaptured, f.stored(t, p.ID).Status)
}

func testOneCapturePerOrder(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{Latency: 20 * time.Millisecond})
	first := request(t, adapters.TokenVisa)
	second := first
	second.IdempotencyKey = first.IdempotencyKey + "/retry-with-another-card"
	second.PaymentToken = adapters.TokenMastercard
	a, b := f.authorize(t, first), f.authorize(t, second)
	require.NotEqual(t, a.ID, b.ID)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{a.ID, b.ID} {
		wg.Go(func() { _, errs[i] = f.payments.Capture(context.WithoutCancel(f.service), id) })
	}
	wg.Wait()
	var won, lost int
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, domain.ErrOrderCaptured):
			lost++
		default:
			t.Fatalf("capture: %v", err)
		}
	}
	require.Equal(t, 1, won)
	require.Equal(t, 1, lost)
	require.Equal(t, 1, f.events(t, domain.SubjectCaptured))
	require.Equal(t, 1, f.count(t, `SELECT COUNT(*) FROM payments WHERE order_id = $1 AND status = 'captured'`, first.OrderID))

	// The loser holds nothing in progress and can be voided.
	loser := a
	if errs[1] != nil {
		loser = b
	}
	v, err := f.payments.Void(f.service, loser.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusVoided, v.Status)
}

func testFailureRateOne(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{FailureRate: 1, Seed: 7})
	for range 5 {
		in := request(t, adapters.TokenVisa)
		_, err := f.payments.Authorize(f.service, in)
		require.ErrorIs(t, err, domain.ErrProviderUnavailable)
		require.Equal(t, apperr.Unavailable, apperr.KindOf(err))
		_, err = f.payments.ListPayments(f.admin, in.OrderID)
		require.ErrorIs(t, err, domain.ErrPaymentsNotFound)
	}
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM payments WHERE status <> 'pending'`))
	require.Zero(t, f.count(t, `SELECT COUNT(*) FROM outbox`))
	require.Zero(t, f.provider.Holds())
}

func testFailureRateZero(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{FailureRate: 0, Seed: 7})
	for range 30 {
		require.Equal(t, domain.StatusAuthorized, f.authorize(t, request(t, adapters.TokenVisa)).Status)
	}
	require.Equal(t, 30, f.events(t, domain.SubjectAuthorized))
}

func testLatencyCancellation(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{Latency: time.Hour})
	in := request(t, adapters.TokenVisa)
	ctx, cancel := context.WithTimeout(f.service, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.payments.Authorize(ctx, in)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 10*time.Second, "the latency gave way to the deadline")
	require.Zero(t, f.provider.Holds())

	// The caller retries with the same key once the provider is fast again.
	fast := f.withProvider(adapters.NewFakeProvider(adapters.FakeProviderConfig{}))
	p, err := fast.Authorize(f.service, in)
	require.NoError(t, err)
	require.Equal(t, domain.StatusAuthorized, p.Status)
	require.Equal(t, 1, f.count(t, `SELECT COUNT(*) FROM payments`))
}

// cancellingProvider cancels the caller's context as the provider answers.
type cancellingProvider struct {
	*adapters.FakeProvider
	cancel context.CancelFunc
}

func (p cancellingProvider) Authorize(ctx context.Context, req app.ProviderAuthorization) (app.ProviderResult, error) {
	res, err := p.FakeProvider.Authorize(ctx, req)
	p.cancel()
	return res, err
}

func (p cancellingProvider) Capture(ctx context.Context, ref, key string) error {
	err := p.FakeProvider.Capture(ctx, ref, key)
	p.cancel()
	return err
}

func testRecordAfterCancel(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	ctx, cancel := context.WithCancel(f.service)
	p, err := f.withProvider(cancellingProvider{f.provider, cancel}).Authorize(ctx, request(t, adapters.TokenVisa))
	require.NoError(t, err)
	require.Equal(t, domain.StatusAuthorized, f.stored(t, p.ID).Status)

	ctx, cancel = context.WithCancel(f.service)
	p, err = f.withProvider(cancellingProvider{f.provider, cancel}).Capture(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusCaptured, f.stored(t, p.ID).Status)
	require.Equal(t, 1, f.events(t, domain.SubjectCaptured))
}

func testCaptureOutage(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	p := f.authorize(t, request(t, adapters.TokenVisa))

	f.provider.SetDown(true)
	_, err := f.payments.Capture(f.service, p.ID)
	require.ErrorIs(t, err, domain.ErrProviderUnavailable)
	require.Equal(t, domain.StatusAuthorized, f.stored(t, p.ID).Status)

	// The capture was begun, so it must be finished: no void meanwhile.
	_, err = f.payments.Void(f.service, p.ID)
	require.ErrorIs(t, err, domain.ErrCaptureInProgress)

	f.provider.SetDown(false)
	c, err := f.payments.Capture(f.service, p.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusCaptured, c.Status)
	require.Empty(t, f.stored(t, p.ID).PendingOp)
	require.Equal(t, 1, f.events(t, domain.SubjectCaptured))

	// A capture that took effect but whose answer was lost is finished by
	// the retry, once.
	q := f.authorize(t, request(t, adapters.TokenVisa))
	lossy := &lossyProvider{FakeProvider: f.provider, lose: true}
	_, err = f.withProvider(lossy).Capture(f.service, q.ID)
	require.ErrorIs(t, err, errLost)
	c, err = f.payments.Capture(f.service, q.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusCaptured, c.Status)
	require.Equal(t, 2, f.events(t, domain.SubjectCaptured))
}

func testListPayments(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	in := request(t, adapters.TokenChargeDeclined)
	declined := f.authorize(t, in)
	retry := in
	retry.IdempotencyKey, retry.PaymentToken = in.IdempotencyKey+"/2", adapters.TokenVisa
	approved := f.authorize(t, retry)

	owner := customer(t.Context(), in.UserID)
	ps, err := f.payments.ListPayments(owner, in.OrderID)
	require.NoError(t, err)
	require.Equal(t, []domain.Payment{declined, approved}, ps)

	for name, ctx := range map[string]context.Context{"admin": f.admin, "service": f.service} {
		ps, err = f.payments.ListPayments(ctx, in.OrderID)
		require.NoError(t, err, name)
		require.Len(t, ps, 2, name)
	}

	_, err = f.payments.ListPayments(customer(t.Context(), newID(t)), in.OrderID)
	require.ErrorIs(t, err, domain.ErrPaymentsNotFound, "another user's order is not found")
	_, err = f.payments.ListPayments(owner, newID(t))
	require.ErrorIs(t, err, domain.ErrPaymentsNotFound)
	_, err = f.payments.ListPayments(owner, "")
	require.ErrorIs(t, err, domain.ErrOrderIDRequired)
	_, err = f.payments.ListPayments(owner, "'; DROP TABLE payments; --")
	require.ErrorIs(t, err, domain.ErrOrderIDInvalid)
	_, err = f.payments.ListPayments(t.Context(), in.OrderID)
	require.ErrorIs(t, err, auth.ErrMissingToken)
}

func testTransitionsCounted(t *testing.T, url string) {
	f := newFixture(t, url, adapters.FakeProviderConfig{})
	for i := range 3 {
		p := f.authorize(t, request(t, adapters.TokenVisa))
		_, err := f.payments.Capture(f.service, p.ID)
		require.NoError(t, err, fmt.Sprint(i))
	}
	f.authorize(t, request(t, adapters.TokenChargeDeclined))
	require.Equal(t, 3, f.recorder.get(domain.StatusPending, domain.StatusAuthorized))
	require.Equal(t, 1, f.recorder.get(domain.StatusPending, domain.StatusDeclined))
	require.Equal(t, 3, f.recorder.get(domain.StatusAuthorized, domain.StatusCaptured))
}
