package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

var (
	placedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	deadline = placedAt.Add(30 * time.Second)
	early    = placedAt.Add(time.Second)
	late     = deadline.Add(time.Second)
)

func placed() domain.EventData {
	return domain.OrderPlacedData{
		OrderID: "o1", UserID: "u1", Email: "u1@example.test",
		Items:      []domain.Item{{ProductID: "p1", SKU: "SKU-1", Name: "Mug", Quantity: 2, UnitPriceCents: 500, LineTotalCents: 1000}},
		TotalCents: 1000, Currency: "EUR", PaymentToken: "tok_visa",
		ShippingAddress: domain.Address{Name: "A", Line1: "B", City: "C", PostalCode: "1", Country: "DE"},
		PlacedAt:        placedAt, DeadlineAt: deadline,
	}
}

var (
	reserved    = domain.StockReservedData{}
	authorized  = domain.PaymentAuthorizedData{PaymentID: "pay1", AmountCents: 1000}
	committed   = domain.StockCommittedData{}
	captured    = domain.PaymentCapturedData{PaymentID: "pay1"}
	confirmed   = domain.OrderConfirmedData{}
	released    = domain.StockReleasedData{}
	voided      = domain.PaymentVoidedData{PaymentID: "pay1"}
	refunded    = domain.PaymentRefundedData{PaymentID: "pay1"}
	restocked   = domain.StockRestockedData{}
	declined    = domain.PaymentDeclinedData{PaymentID: "pay1", DeclineCode: "card_declined", Reason: domain.DeclinedReason("card_declined")}
	tokenReject = domain.PaymentDeclinedData{Reason: domain.ReasonTokenNotKnown}
	timedOut    = domain.CancellationRequestedData{Reason: domain.ReasonTimedOut, By: domain.RequestedBySystem}
	userCancel  = domain.CancellationRequestedData{Reason: "changed my mind", By: "u1"}
	userRefund  = domain.RefundRequestedData{Reason: "broken", By: "u1"}
	notReturned = domain.OrderNeedsAttentionData{Reason: domain.ReasonPaymentNotReturned, Step: domain.StepRefundPayment, PaymentID: "pay1"}
)

func build(t *testing.T, data ...domain.EventData) domain.Order {
	t.Helper()
	events := make([]domain.Event, len(data))
	for i, d := range data {
		events[i] = domain.Event{Version: int64(i + 1), OccurredAt: placedAt.Add(time.Duration(i) * time.Millisecond), Data: d}
	}
	o, err := domain.Rebuild(events)
	require.NoError(t, err)
	return o
}

// TestSagaPaths walks every path event by event and checks the step the
// aggregate decides after each one.
func TestSagaPaths(t *testing.T) {
	type stage struct {
		event domain.EventData // nil: only placed
		now   time.Time
		doubt bool
		want  domain.Step
	}
	tests := []struct {
		name       string
		stages     []stage
		wantStatus domain.Status
		wantReason string
		refunded   bool
		outcome    string
	}{
		{
			name: "happy path",
			stages: []stage{
				{nil, early, false, domain.StepReserveStock},
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{captured, early, false, domain.StepConfirm},
				{confirmed, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusConfirmed, outcome: "confirmed",
		},
		{
			name: "out of stock",
			stages: []stage{
				{nil, early, false, domain.StepReserveStock},
				{domain.OrderRejectedData{Reason: domain.OutOfStockReason("SKU-1"), SKU: "SKU-1"}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusRejected, wantReason: "out of stock: SKU-1", outcome: "out_of_stock",
		},
		{
			name: "payment declined",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{declined, early, false, domain.StepReleaseStock},
				{released, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "payment declined: card_declined"}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "payment declined: card_declined", outcome: "payment_declined",
		},
		{
			name: "payment token not recognised",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{tokenReject, early, true, domain.StepReleaseStock},
				{released, early, true, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonTokenNotKnown}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonTokenNotKnown, outcome: "payment_token",
		},
		{
			name: "timeout before the reservation",
			stages: []stage{
				{nil, late, false, domain.StepTimeOut},
				{timedOut, late, false, domain.StepReleaseStock},
				{released, late, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonTimedOut}, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonTimedOut, outcome: "timeout",
		},
		{
			name: "timeout while authorizing with the outcome unknown",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{nil, late, true, domain.StepTimeOut},
				{timedOut, late, true, domain.StepReleaseStock},
				{released, late, true, domain.StepResolvePayment},
				{nil, late, false, domain.StepCancel},
				{authorized, late, false, domain.StepVoidPayment},
				{voided, late, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonTimedOut}, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonTimedOut, outcome: "timeout",
		},
		{
			name: "timeout after the authorization",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, late, false, domain.StepTimeOut},
				{timedOut, late, false, domain.StepReleaseStock},
				{released, late, false, domain.StepVoidPayment},
				{voided, late, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonTimedOut}, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonTimedOut, outcome: "timeout",
		},
		{
			name: "the deadline no longer matters once the stock is sold",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, late, false, domain.StepCapturePayment},
				{captured, late, false, domain.StepConfirm},
				{confirmed, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusConfirmed, outcome: "confirmed",
		},
		{
			name: "capture fails after the commit",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{domain.CancellationRequestedData{Reason: domain.ReasonCaptureFailed, By: domain.RequestedBySystem}, early, false, domain.StepRestockStock},
				{restocked, early, false, domain.StepVoidPayment},
				{voided, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonCaptureFailed}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonCaptureFailed, outcome: "capture_failed",
		},
		{
			name: "customer cancels a pending order before anything happened",
			stages: []stage{
				{userCancel, early, false, domain.StepReleaseStock},
				{released, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "changed my mind"}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "changed my mind", outcome: "requested",
		},
		{
			name: "customer cancels an authorized order",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{userCancel, early, false, domain.StepReleaseStock},
				{released, early, false, domain.StepVoidPayment},
				{voided, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "changed my mind"}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "changed my mind", outcome: "requested",
		},
		{
			name: "customer cancels between capture and confirmation",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{captured, early, false, domain.StepConfirm},
				{userCancel, early, false, domain.StepRestockStock},
				{restocked, early, false, domain.StepRefundPayment},
				{refunded, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "changed my mind", Refunded: true}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "changed my mind", refunded: true, outcome: "requested",
		},
		{
			name: "customer cancels after the stock commit: finished, then refunded",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{userRefund, late, false, domain.StepCapturePayment},
				{captured, late, false, domain.StepConfirm},
				{confirmed, late, false, domain.StepRefundPayment},
				{refunded, late, false, domain.StepRestockStock},
				{restocked, late, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "broken", Refunded: true}, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "broken", refunded: true, outcome: "refunded",
		},
		{
			name: "refund requested after the commit, then the capture is refused",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{userRefund, early, false, domain.StepCapturePayment},
				{domain.CancellationRequestedData{Reason: domain.ReasonCaptureFailed, By: domain.RequestedBySystem}, early, false, domain.StepRestockStock},
				{restocked, early, false, domain.StepVoidPayment},
				{voided, early, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: domain.ReasonCaptureFailed}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: domain.ReasonCaptureFailed, outcome: "capture_failed",
		},
		{
			name: "refund of a confirmed order",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{captured, early, false, domain.StepConfirm},
				{confirmed, early, false, domain.StepDone},
				{userRefund, late, false, domain.StepRefundPayment},
				{refunded, late, false, domain.StepRestockStock},
				{restocked, late, false, domain.StepCancel},
				{domain.OrderCancelledData{Reason: "broken", Refunded: true}, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusCancelled, wantReason: "broken", refunded: true, outcome: "refunded",
		},
		{
			// Payments refusing both to refund and to void: the saga ends
			// without cancelling, the stock still sold, the money kept.
			name: "refund of a confirmed order that cannot be returned",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{committed, early, false, domain.StepCapturePayment},
				{captured, early, false, domain.StepConfirm},
				{confirmed, early, false, domain.StepDone},
				{userRefund, late, false, domain.StepRefundPayment},
				{notReturned, late, false, domain.StepDone},
			},
			wantStatus: domain.StatusNeedsAttention, wantReason: domain.ReasonPaymentNotReturned, outcome: "payment_not_returned",
		},
		{
			name: "cancellation of a pending order whose authorization cannot be voided",
			stages: []stage{
				{reserved, early, false, domain.StepAuthorizePayment},
				{authorized, early, false, domain.StepCommitStock},
				{userCancel, early, false, domain.StepReleaseStock},
				{released, early, false, domain.StepVoidPayment},
				{domain.OrderNeedsAttentionData{Reason: domain.ReasonPaymentNotReturned, Step: domain.StepVoidPayment}, early, false, domain.StepDone},
			},
			wantStatus: domain.StatusNeedsAttention, wantReason: domain.ReasonPaymentNotReturned, outcome: "payment_not_returned",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := []domain.EventData{placed()}
			var o domain.Order
			for i, s := range tt.stages {
				if s.event != nil {
					events = append(events, s.event)
				}
				o = build(t, events...)
				require.Equal(t, tt.stages[i].want, o.NextStep(s.now, s.doubt), "stage %d (after %T)", i, s.event)
				if s.want == domain.StepCancel && i+1 < len(tt.stages) {
					// The aggregate computes the cancellation itself; it must
					// match what the table appends next.
					if next, ok := tt.stages[i+1].event.(domain.OrderCancelledData); ok {
						require.Equal(t, next, o.CancelledData())
					}
				}
			}
			require.Equal(t, tt.wantStatus, o.Status)
			require.Equal(t, tt.wantReason, o.Reason)
			require.Equal(t, tt.refunded, o.Refunded)
			require.True(t, o.Terminal())
			require.Equal(t, tt.outcome, o.OutcomeClass())
			require.Equal(t, int64(len(events)), o.Version)
		})
	}
}

func TestApplyRejectsInvalidTransitions(t *testing.T) {
	tests := []struct {
		name   string
		before []domain.EventData
		next   domain.EventData
	}{
		{"event before placement", nil, reserved},
		{"placed twice", []domain.EventData{placed()}, placed()},
		{"commit without a reservation", []domain.EventData{placed()}, committed},
		{"capture without an authorization", []domain.EventData{placed(), reserved}, captured},
		{"reserve twice", []domain.EventData{placed(), reserved}, reserved},
		{"confirm before capture", []domain.EventData{placed(), reserved, authorized, committed}, confirmed},
		{"confirm while cancelling", []domain.EventData{placed(), reserved, authorized, committed, captured, userCancel}, confirmed},
		{"reject after the reservation", []domain.EventData{placed(), reserved}, domain.OrderRejectedData{Reason: "x"}},
		{"cancel while stock is held", []domain.EventData{placed(), reserved, userCancel}, domain.OrderCancelledData{}},
		{"cancel while money is held", []domain.EventData{placed(), reserved, authorized, userCancel, released}, domain.OrderCancelledData{}},
		{"cancel without a request", []domain.EventData{placed()}, domain.OrderCancelledData{}},
		{"request cancellation twice", []domain.EventData{placed(), userCancel}, userCancel},
		{"anything after rejection", []domain.EventData{placed(), domain.OrderRejectedData{Reason: "x"}}, userCancel},
		{"anything after cancellation", []domain.EventData{placed(), userCancel, released, domain.OrderCancelledData{Reason: "x"}}, userRefund},
		{"refund a pending order", []domain.EventData{placed()}, userRefund},
		{"refund before the stock commit", []domain.EventData{placed(), reserved, authorized}, userRefund},
		{"refund while being undone", []domain.EventData{placed(), reserved, authorized, committed, timedOut}, userRefund},
		{"cancel before the confirmation of a refund", []domain.EventData{placed(), reserved, authorized, committed, userRefund, captured},
			domain.OrderCancelledData{Reason: "broken", Refunded: true}},
		{"release sold stock", []domain.EventData{placed(), reserved, authorized, committed, userCancel}, released},
		{"void without a payment", []domain.EventData{placed(), userCancel}, voided},
		{"refund request twice", []domain.EventData{placed(), reserved, authorized, committed, captured, confirmed, userRefund}, userRefund},
		{"needs attention while moving forward", []domain.EventData{placed(), reserved, authorized}, notReturned},
		{"needs attention of a confirmed order", []domain.EventData{placed(), reserved, authorized, committed, captured, confirmed}, notReturned},
		{"needs attention with no money held", []domain.EventData{placed(), reserved, userCancel, released}, notReturned},
		{"needs attention once the payment is back", []domain.EventData{placed(), reserved, authorized, userCancel, released, voided}, notReturned},
		{"anything after needs attention", []domain.EventData{placed(), reserved, authorized, userCancel, released, notReturned}, voided},
		{"cancel after needs attention", []domain.EventData{placed(), reserved, authorized, userCancel, released, notReturned},
			domain.OrderCancelledData{Reason: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o domain.Order
			if len(tt.before) > 0 {
				o = build(t, tt.before...)
			}
			before := o
			err := o.Apply(domain.Event{Version: o.Version + 1, OccurredAt: late, Data: tt.next})
			require.ErrorIs(t, err, domain.ErrInvalidTransition)
			require.Equal(t, before, o, "a refused event must leave the order unchanged")
		})
	}

	t.Run("version gap", func(t *testing.T) {
		o := build(t, placed())
		err := o.Apply(domain.Event{Version: 3, OccurredAt: late, Data: reserved})
		require.ErrorIs(t, err, domain.ErrInvalidTransition)
	})
	t.Run("empty stream", func(t *testing.T) {
		_, err := domain.Rebuild(nil)
		require.ErrorIs(t, err, domain.ErrNotFound)
	})
}

func TestRequestCancellation(t *testing.T) {
	tests := []struct {
		name    string
		events  []domain.EventData
		want    domain.EventType
		wantErr error
	}{
		{"pending", []domain.EventData{placed(), reserved}, domain.CancellationRequested, nil},
		{"pending, authorized", []domain.EventData{placed(), reserved, authorized}, domain.CancellationRequested, nil},
		// Past the pivot the order is finished, then refunded.
		{"pending with the stock sold", []domain.EventData{placed(), reserved, authorized, committed}, domain.RefundRequested, nil},
		{"pending, captured", []domain.EventData{placed(), reserved, authorized, committed, captured}, domain.RefundRequested, nil},
		{"refund already requested while pending", []domain.EventData{placed(), reserved, authorized, committed, userRefund}, "", domain.ErrCancellationRequested},
		{"capture failed after the commit", []domain.EventData{placed(), reserved, authorized, committed,
			domain.CancellationRequestedData{Reason: domain.ReasonCaptureFailed, By: domain.RequestedBySystem}}, "", domain.ErrCancellationRequested},
		{"confirmed", []domain.EventData{placed(), reserved, authorized, committed, captured, confirmed}, domain.RefundRequested, nil},
		{"already requested", []domain.EventData{placed(), userCancel}, "", domain.ErrCancellationRequested},
		{"timed out", []domain.EventData{placed(), timedOut}, "", domain.ErrCancellationRequested},
		{"being undone after a decline", []domain.EventData{placed(), reserved, declined}, "", domain.ErrCancellationRequested},
		{"refund already requested", []domain.EventData{placed(), reserved, authorized, committed, captured, confirmed, userRefund}, "", domain.ErrCancellationRequested},
		{"cancelled", []domain.EventData{placed(), userCancel, released, domain.OrderCancelledData{Reason: "x"}}, "", domain.ErrAlreadyCancelled},
		{"rejected", []domain.EventData{placed(), domain.OrderRejectedData{Reason: "x"}}, "", domain.ErrRejectedCannotCancel},
		{"needs attention", []domain.EventData{placed(), reserved, authorized, committed, captured, confirmed, userRefund, notReturned},
			"", domain.ErrNeedsAttention},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := build(t, tt.events...).RequestCancellation("u1", "why")
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, d.EventType())
		})
	}
}

func TestEventDataRoundTrip(t *testing.T) {
	all := []domain.EventData{
		placed(), domain.StockReservedData{ExpiresAt: late}, authorized, committed, captured, confirmed,
		domain.OrderRejectedData{Reason: "out of stock: X", SKU: "X"}, declined, userCancel,
		domain.StockReleasedData{Note: "n"}, voided, userRefund, refunded, restocked,
		domain.OrderCancelledData{Reason: "r", Refunded: true}, notReturned,
	}
	require.Len(t, all, len(domain.EventTypes), "every event type is covered")
	for _, d := range all {
		raw, err := domain.EncodeEventData(d)
		require.NoError(t, err)
		back, err := domain.DecodeEventData(d.EventType(), raw)
		require.NoError(t, err)
		require.Equal(t, d, back)
		require.True(t, domain.KnownEventType(string(d.EventType())))
	}
	_, err := domain.DecodeEventData("Nope", []byte(`{}`))
	require.Error(t, err)
	_, err = domain.DecodeEventData(domain.OrderPlaced, []byte(`not json`))
	require.Error(t, err)
	require.False(t, errors.Is(err, domain.ErrNotFound))
}
