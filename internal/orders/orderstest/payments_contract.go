package orderstest

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/app"
)

// PaymentsUnderTest is a payments service the contract runs against.
type PaymentsUnderTest struct {
	// Payments is orders' client of it: the gRPC adapter orders runs.
	Payments app.Payments
	// Interrupt runs call, one Capture, Void or Refund (method), so that
	// the operation is begun at the card provider but its answer never
	// comes (a provider outage, a lost answer), and returns call's error.
	// The operation is then left in progress, as after a crash.
	Interrupt func(t *testing.T, method string, call func() error) error
}

// Test card tokens both the fake and the real provider know.
const (
	tokenVisa              = "tok_visa"
	tokenChargeDeclined    = "tok_chargeDeclined"
	tokenInsufficientFunds = "tok_insufficientFunds"
	// tokenUnknown is well formed, but no provider knows it.
	tokenUnknown = "tok_neverIssued"
)

// RunPaymentsContract checks that a payments service behaves as the
// checkout saga relies on. newPayments is called once; the cases share
// it, each with orders and keys of its own.
func RunPaymentsContract(t *testing.T, newPayments func(t *testing.T) PaymentsUnderTest) {
	p := newPayments(t)
	c := paymentsContract{pay: p.Payments, interrupt: p.Interrupt}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"authorize holds the amount", c.authorizeHolds},
		{"authorize is idempotent by key", c.authorizeIsIdempotent},
		{"the same key for another request is refused", c.keyReused},
		{"declined cards answer a declined payment, not an error", c.declined},
		{"an unknown card token is refused as such", c.unknownToken},
		{"an order is captured once", c.captureOnce},
		{"void releases an authorization for good", c.voidReleases},
		{"refund returns a capture for good", c.refundReturns},
		{"void of a capture and refund of an authorization are conflicts", c.wrongUndo},
		{"a declined payment cannot be captured or voided", c.declinedIsFinal},
		{"unknown payment ids are not found", c.unknownPayments},
		{"a capture in progress blocks void and refund until it is finished", c.captureInProgress},
		{"a void in progress refuses a capture as retryable", c.voidInProgress},
	} {
		t.Run(tc.name, tc.run)
	}
}

type paymentsContract struct {
	pay       app.Payments
	interrupt func(t *testing.T, method string, call func() error) error
}

// authorization returns a request for a new order of a new user. Ids are
// UUIDs, as orders sends them.
func authorization(token string) app.Authorization {
	order := uuid.NewString()
	return app.Authorization{
		IdempotencyKey: "order-" + order, OrderID: order, UserID: uuid.NewString(),
		AmountCents: 2599, Currency: "EUR", PaymentToken: token,
	}
}

// authorize authorizes and requires the payment to be authorized.
func (c paymentsContract) authorize(t *testing.T, a app.Authorization) app.Payment {
	t.Helper()
	p, err := c.pay.Authorize(t.Context(), a)
	require.NoError(t, err)
	require.Equal(t, app.PaymentAuthorized, p.Status)
	require.NotEmpty(t, p.ID)
	return p
}

func (c paymentsContract) authorizeHolds(t *testing.T) {
	p := c.authorize(t, authorization(tokenVisa))
	require.Empty(t, p.DeclineCode)
	require.NoError(t, c.pay.Capture(t.Context(), p.ID), "an authorization can be captured")
}

func (c paymentsContract) authorizeIsIdempotent(t *testing.T) {
	a := authorization(tokenVisa)
	first := c.authorize(t, a)
	require.Equal(t, first, c.authorize(t, a), "a repeat answers the first authorization")

	// Resolving an authorization whose answer was lost repeats it, also
	// once the payment moved on.
	require.NoError(t, c.pay.Capture(t.Context(), first.ID))
	again, err := c.pay.Authorize(t.Context(), a)
	require.NoError(t, err)
	require.Equal(t, app.Payment{ID: first.ID, Status: app.PaymentCaptured}, again)
}

func (c paymentsContract) keyReused(t *testing.T) {
	a := authorization(tokenVisa)
	c.authorize(t, a)
	other := a
	other.AmountCents++
	_, err := c.pay.Authorize(t.Context(), other)
	requireClass(t, err, app.ErrInvalidRequest)
	require.NotErrorIs(t, err, app.ErrPaymentTokenRejected)
}

func (c paymentsContract) declined(t *testing.T) {
	for token, code := range map[string]string{tokenChargeDeclined: "card_declined", tokenInsufficientFunds: "insufficient_funds"} {
		a := authorization(token)
		p, err := c.pay.Authorize(t.Context(), a)
		require.NoError(t, err, token)
		require.Equal(t, app.PaymentDeclined, p.Status, token)
		require.Equal(t, code, p.DeclineCode, token)
		require.NotEmpty(t, p.ID, "a decline is a payment, with an id")
		again, err := c.pay.Authorize(t.Context(), a)
		require.NoError(t, err)
		require.Equal(t, p, again, "a repeated decline is the same payment")
		require.NoError(t, c.pay.CheckPaymentToken(t.Context(), token), "a declined card is still a known card")
	}
}

func (c paymentsContract) unknownToken(t *testing.T) {
	err := c.pay.CheckPaymentToken(t.Context(), tokenUnknown)
	require.ErrorIs(t, err, app.ErrPaymentTokenRejected)
	requireClass(t, err, app.ErrInvalidRequest)
	require.NoError(t, c.pay.CheckPaymentToken(t.Context(), tokenVisa))

	a := authorization(tokenUnknown)
	_, err = c.pay.Authorize(t.Context(), a)
	require.ErrorIs(t, err, app.ErrPaymentTokenRejected)
	requireClass(t, err, app.ErrInvalidRequest)
	// Nothing was kept under the key: the same key with a known card
	// authorizes.
	a.PaymentToken = tokenVisa
	c.authorize(t, a)
}

func (c paymentsContract) captureOnce(t *testing.T) {
	a := authorization(tokenVisa)
	p := c.authorize(t, a)
	require.NoError(t, c.pay.Capture(t.Context(), p.ID))
	require.NoError(t, c.pay.Capture(t.Context(), p.ID), "capturing again changes nothing")

	// A second authorization of the same order (another key) may exist,
	// but it cannot be captured too.
	second := a
	second.IdempotencyKey += "-again"
	q := c.authorize(t, second)
	require.NotEqual(t, p.ID, q.ID)
	requireClass(t, c.pay.Capture(t.Context(), q.ID), app.ErrConflict)
	require.NoError(t, c.pay.Void(t.Context(), q.ID))
}

func (c paymentsContract) voidReleases(t *testing.T) {
	p := c.authorize(t, authorization(tokenVisa))
	require.NoError(t, c.pay.Void(t.Context(), p.ID))
	require.NoError(t, c.pay.Void(t.Context(), p.ID), "voiding again changes nothing")
	requireClass(t, c.pay.Capture(t.Context(), p.ID), app.ErrConflict)
	requireClass(t, c.pay.Refund(t.Context(), p.ID), app.ErrConflict)
}

func (c paymentsContract) refundReturns(t *testing.T) {
	p := c.authorize(t, authorization(tokenVisa))
	require.NoError(t, c.pay.Capture(t.Context(), p.ID))
	require.NoError(t, c.pay.Refund(t.Context(), p.ID))
	require.NoError(t, c.pay.Refund(t.Context(), p.ID), "refunding again changes nothing")
	requireClass(t, c.pay.Void(t.Context(), p.ID), app.ErrConflict)
	requireClass(t, c.pay.Capture(t.Context(), p.ID), app.ErrConflict)
}

func (c paymentsContract) wrongUndo(t *testing.T) {
	// The saga undoes by trying one and falling back to the other, so the
	// wrong one must be a plain conflict, not something to retry.
	authorized := c.authorize(t, authorization(tokenVisa))
	requireClass(t, c.pay.Refund(t.Context(), authorized.ID), app.ErrConflict)
	require.NoError(t, c.pay.Void(t.Context(), authorized.ID))

	captured := c.authorize(t, authorization(tokenVisa))
	require.NoError(t, c.pay.Capture(t.Context(), captured.ID))
	err := c.pay.Void(t.Context(), captured.ID)
	requireClass(t, err, app.ErrConflict)
	require.NotErrorIs(t, err, app.ErrCaptureInProgress)
	require.NoError(t, c.pay.Refund(t.Context(), captured.ID))
}

func (c paymentsContract) declinedIsFinal(t *testing.T) {
	p, err := c.pay.Authorize(t.Context(), authorization(tokenChargeDeclined))
	require.NoError(t, err)
	require.Equal(t, app.PaymentDeclined, p.Status)
	requireClass(t, c.pay.Capture(t.Context(), p.ID), app.ErrConflict)
	requireClass(t, c.pay.Void(t.Context(), p.ID), app.ErrConflict)
}

func (c paymentsContract) unknownPayments(t *testing.T) {
	id := uuid.NewString()
	requireClass(t, c.pay.Capture(t.Context(), id), app.ErrNotFound)
	requireClass(t, c.pay.Void(t.Context(), id), app.ErrNotFound)
	requireClass(t, c.pay.Refund(t.Context(), id), app.ErrNotFound)
}

// requireTransient requires err to be a failure to retry: the call did not
// answer (unavailable, or its outcome unknown).
func requireTransient(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, app.ErrConflict)
	require.NotErrorIs(t, err, app.ErrInvalidRequest)
	require.NotErrorIs(t, err, app.ErrNotFound)
}

func (c paymentsContract) captureInProgress(t *testing.T) {
	p := c.authorize(t, authorization(tokenVisa))
	requireTransient(t, c.interrupt(t, "Capture", func() error { return c.pay.Capture(t.Context(), p.ID) }))

	for _, undo := range []func() error{
		func() error { return c.pay.Void(t.Context(), p.ID) },
		func() error { return c.pay.Refund(t.Context(), p.ID) },
	} {
		err := undo()
		require.ErrorIs(t, err, app.ErrCaptureInProgress)
		requireClass(t, err, app.ErrUnavailable)
	}
	// Finishing the capture unblocks the payment, which is then refunded.
	require.NoError(t, c.pay.Capture(t.Context(), p.ID))
	require.NoError(t, c.pay.Refund(t.Context(), p.ID))
}

func (c paymentsContract) voidInProgress(t *testing.T) {
	p := c.authorize(t, authorization(tokenVisa))
	requireTransient(t, c.interrupt(t, "Void", func() error { return c.pay.Void(t.Context(), p.ID) }))

	err := c.pay.Capture(t.Context(), p.ID)
	requireClass(t, err, app.ErrUnavailable)
	require.NotErrorIs(t, err, app.ErrCaptureInProgress)
	// Retrying the void finishes it; the capture is then refused for good.
	require.NoError(t, c.pay.Void(t.Context(), p.ID))
	requireClass(t, c.pay.Capture(t.Context(), p.ID), app.ErrConflict)
}
