package domain_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/payments/domain"
)

const (
	orderID = "01912345-6789-7abc-8def-0123456789ab"
	userID  = "01912345-6789-7abc-8def-ba9876543210"
)

func validInput() domain.AuthorizeInput {
	return domain.AuthorizeInput{
		IdempotencyKey: "order-" + orderID, OrderID: orderID, UserID: userID,
		AmountCents: 1999, Currency: "EUR", PaymentToken: "tok_visa",
	}
}

func TestAuthorizeInputNormalize(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*domain.AuthorizeInput)
		want   error
	}{
		{"valid", func(*domain.AuthorizeInput) {}, nil},
		{"no key", func(in *domain.AuthorizeInput) { in.IdempotencyKey = "" }, domain.ErrIdempotencyKeyRequired},
		{"key with space", func(in *domain.AuthorizeInput) { in.IdempotencyKey = "a b" }, domain.ErrIdempotencyKeyInvalid},
		{"key too long", func(in *domain.AuthorizeInput) { in.IdempotencyKey = strings.Repeat("k", 256) }, domain.ErrIdempotencyKeyInvalid},
		{"key of 255", func(in *domain.AuthorizeInput) { in.IdempotencyKey = strings.Repeat("k", 255) }, nil},
		{"no order", func(in *domain.AuthorizeInput) { in.OrderID = "" }, domain.ErrOrderIDRequired},
		{"order not a uuid", func(in *domain.AuthorizeInput) { in.OrderID = "order-1" }, domain.ErrOrderIDInvalid},
		{"no user", func(in *domain.AuthorizeInput) { in.UserID = "" }, domain.ErrUserIDRequired},
		{"user not a uuid", func(in *domain.AuthorizeInput) { in.UserID = "alice" }, domain.ErrUserIDInvalid},
		{"zero amount", func(in *domain.AuthorizeInput) { in.AmountCents = 0 }, domain.ErrAmountNotPositive},
		{"negative amount", func(in *domain.AuthorizeInput) { in.AmountCents = -5 }, domain.ErrAmountNotPositive},
		{"largest amount", func(in *domain.AuthorizeInput) { in.AmountCents = domain.MaxAmountCents }, nil},
		{"amount too high", func(in *domain.AuthorizeInput) { in.AmountCents = domain.MaxAmountCents + 1 }, domain.ErrAmountTooHigh},
		{"unknown currency", func(in *domain.AuthorizeInput) { in.Currency = "XBT" }, domain.ErrCurrencyUnknown},
		{"no currency", func(in *domain.AuthorizeInput) { in.Currency = "" }, domain.ErrCurrencyUnknown},
		{"no token", func(in *domain.AuthorizeInput) { in.PaymentToken = "" }, domain.ErrPaymentTokenRequired},
		{"token with newline", func(in *domain.AuthorizeInput) { in.PaymentToken = "tok\n" }, domain.ErrPaymentTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			_, err := in.Normalize()
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestNormalizeCanonicalises(t *testing.T) {
	in := validInput()
	in.OrderID, in.UserID, in.Currency = strings.ToUpper(orderID), "{"+userID+"}", " eur "
	got, err := in.Normalize()
	require.NoError(t, err)
	require.Equal(t, orderID, got.OrderID)
	require.Equal(t, userID, got.UserID)
	require.Equal(t, "EUR", got.Currency)

	want, err := validInput().Normalize()
	require.NoError(t, err)
	require.Equal(t, want.RequestHash(), got.RequestHash(), "spellings of the same request hash alike")
}

func TestRequestHashCoversEveryFieldButTheKey(t *testing.T) {
	base := validInput()
	sameKeyOtherKey := base
	sameKeyOtherKey.IdempotencyKey = "another-key"
	require.Equal(t, base.RequestHash(), sameKeyOtherKey.RequestHash())

	changes := map[string]func(*domain.AuthorizeInput){
		"order":    func(in *domain.AuthorizeInput) { in.OrderID = "01912345-6789-7abc-8def-000000000000" },
		"user":     func(in *domain.AuthorizeInput) { in.UserID = "01912345-6789-7abc-8def-000000000000" },
		"amount":   func(in *domain.AuthorizeInput) { in.AmountCents++ },
		"currency": func(in *domain.AuthorizeInput) { in.Currency = "USD" },
		"token":    func(in *domain.AuthorizeInput) { in.PaymentToken = "tok_mastercard" },
	}
	for name, change := range changes {
		in := base
		change(&in)
		require.NotEqual(t, base.RequestHash(), in.RequestHash(), name)
	}
	require.NotContains(t, base.RequestHash(), base.PaymentToken)
}

func TestCheck(t *testing.T) {
	type want struct {
		done bool
		err  error
	}
	ops := []domain.Operation{domain.OpCapture, domain.OpVoid, domain.OpRefund}
	table := []struct {
		status  domain.Status
		pending domain.Operation
		want    map[domain.Operation]want
	}{
		{domain.StatusPending, "", map[domain.Operation]want{
			domain.OpCapture: {err: domain.ErrNotFound},
			domain.OpVoid:    {err: domain.ErrNotFound},
			domain.OpRefund:  {err: domain.ErrNotFound},
		}},
		{domain.StatusAuthorized, "", map[domain.Operation]want{
			domain.OpCapture: {},
			domain.OpVoid:    {},
			domain.OpRefund:  {err: domain.ErrNotCapturedVoid},
		}},
		{domain.StatusAuthorized, domain.OpCapture, map[domain.Operation]want{
			domain.OpCapture: {},
			domain.OpVoid:    {err: domain.ErrCaptureInProgress},
			domain.OpRefund:  {err: domain.ErrCaptureInProgress},
		}},
		{domain.StatusAuthorized, domain.OpVoid, map[domain.Operation]want{
			domain.OpCapture: {err: domain.ErrVoidInProgress},
			domain.OpVoid:    {},
			domain.OpRefund:  {err: domain.ErrVoidInProgress},
		}},
		{domain.StatusDeclined, "", map[domain.Operation]want{
			domain.OpCapture: {err: domain.ErrDeclined},
			domain.OpVoid:    {err: domain.ErrDeclined},
			domain.OpRefund:  {err: domain.ErrDeclined},
		}},
		{domain.StatusCaptured, "", map[domain.Operation]want{
			domain.OpCapture: {done: true},
			domain.OpVoid:    {err: domain.ErrCapturedRefund},
			domain.OpRefund:  {},
		}},
		{domain.StatusCaptured, domain.OpRefund, map[domain.Operation]want{
			domain.OpCapture: {done: true},
			domain.OpVoid:    {err: domain.ErrRefundInProgress},
			domain.OpRefund:  {},
		}},
		{domain.StatusVoided, "", map[domain.Operation]want{
			domain.OpCapture: {err: domain.ErrVoided},
			domain.OpVoid:    {done: true},
			domain.OpRefund:  {err: domain.ErrVoided},
		}},
		{domain.StatusRefunded, "", map[domain.Operation]want{
			domain.OpCapture: {err: domain.ErrRefunded},
			domain.OpVoid:    {err: domain.ErrRefunded},
			domain.OpRefund:  {done: true},
		}},
	}
	for _, row := range table {
		for _, op := range ops {
			t.Run(string(row.status)+"/"+string(row.pending)+"/"+string(op), func(t *testing.T) {
				done, err := domain.Payment{Status: row.status, PendingOp: row.pending}.Check(op)
				w := row.want[op]
				require.ErrorIs(t, err, w.err)
				require.Equal(t, w.done, done)
			})
		}
	}
}

func TestEvents(t *testing.T) {
	p := domain.Payment{
		ID: "p1", OrderID: orderID, UserID: userID, AmountCents: 500, Currency: "EUR",
		Status: domain.StatusCaptured, CardBrand: "visa", ProviderRef: "ref", IdempotencyKey: "k",
	}
	require.Equal(t, domain.SubjectCaptured, domain.Subject(p.Status))
	require.Equal(t, domain.EventID("p1", domain.StatusCaptured), domain.EventID("p1", domain.StatusCaptured))
	require.NotEqual(t, domain.EventID("p1", domain.StatusCaptured), domain.EventID("p1", domain.StatusRefunded))
	require.NotEqual(t, domain.EventID("p1", domain.StatusCaptured), domain.EventID("p2", domain.StatusCaptured))

	b, err := domain.EventPayload(p)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, map[string]any{
		"payment_id": "p1", "order_id": orderID, "user_id": userID,
		"amount_cents": float64(500), "currency": "EUR", "status": "captured",
	}, got, "no card data, no provider reference, no key")
}
