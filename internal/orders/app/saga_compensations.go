package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// release gives the hold back. Inventory refusing means the reservation
// was committed after all (a commit whose answer was lost), so it is
// restocked instead, or that nothing is held any more.
func (s *Saga) release(ctx context.Context, o domain.Order, now time.Time) (domain.EventData, error) {
	err := s.inv.Release(ctx, o.ID)
	switch {
	case err == nil:
		return domain.StockReleasedData{}, nil
	case errors.Is(err, ErrNotFound):
		return domain.StockReleasedData{Note: "inventory held nothing for the order"}, nil
	case isTransient(err):
		// A hold expires by itself. Past its expiry there is nothing left
		// to release, which bounds how long an inventory outage can keep
		// an order from finishing.
		expiry := o.StockExpiresAt
		if expiry.IsZero() {
			expiry = o.DeadlineAt.Add(s.cfg.ReservationTTL)
		}
		if now.After(expiry.Add(holdExpiryMargin)) {
			s.log.WarnContext(ctx, "inventory unreachable past the hold's expiry, treating the stock as released",
				"order_id", o.ID, "error", err.Error())
			return domain.StockReleasedData{Note: "the hold expired while inventory was unreachable"}, nil
		}
		return nil, fmt.Errorf("release stock: %w", err)
	}
	err = s.inv.Restock(ctx, o.ID)
	switch {
	case err == nil:
		return domain.StockRestockedData{Note: "the reservation had been committed"}, nil
	case isTransient(err):
		return nil, fmt.Errorf("restock after a refused release: %w", err)
	}
	return domain.StockReleasedData{Note: "inventory held nothing for the order"}, nil
}

// restock puts a sold order's stock back on hand.
func (s *Saga) restock(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.inv.Restock(ctx, o.ID)
	switch {
	case err == nil:
		return domain.StockRestockedData{}, nil
	case isTransient(err):
		return nil, fmt.Errorf("restock: %w", err)
	}
	s.log.ErrorContext(ctx, "inventory refused to restock a sold order", "order_id", o.ID, "error", err.Error())
	return domain.StockRestockedData{Note: "inventory had nothing to restock"}, nil
}

// compensationRefusedError says a compensation cannot complete: the
// neighbour refused every way of making it (refused, not unavailable), so
// retrying would change nothing and the order needs an operator.
type compensationRefusedError struct{ err error }

func (e *compensationRefusedError) Error() string { return e.err.Error() }

func (e *compensationRefusedError) Unwrap() error { return e.err }

// paymentNotReturned is the error of a payment that payments refused both
// to void and to refund.
func paymentNotReturned(first, second error) error {
	return &compensationRefusedError{err: fmt.Errorf("payments refused both: %w; %w", first, second)}
}

// void cancels the authorization. Payments refusing means it was captured
// after all (a capture whose answer was lost), so it is refunded instead.
// Refusing that too leaves the money where it is: the order needs
// attention, it is never cancelled with the payment kept.
func (s *Saga) void(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.pay.Void(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentVoidedData{PaymentID: o.PaymentID}, nil
	case errors.Is(err, ErrCaptureInProgress):
		// A capture whose answer was lost blocks the payment until it is
		// finished; it is then refunded like any capture.
		if err := s.pay.Capture(ctx, o.PaymentID); err != nil {
			return nil, fmt.Errorf("finish the capture in progress: %w: %w", ErrUnavailable, err)
		}
		return domain.PaymentCapturedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("void payment: %w", err)
	}
	voidErr := err
	err = s.pay.Refund(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentRefundedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("refund after a refused void: %w", err)
	}
	return nil, paymentNotReturned(voidErr, err)
}

// refund returns a captured payment; if payments refuses (it was never
// captured) the authorization is voided instead. Refusing that too, the
// order needs attention.
func (s *Saga) refund(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.pay.Refund(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentRefundedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("refund payment: %w", err)
	}
	refundErr := err
	err = s.pay.Void(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentVoidedData{PaymentID: o.PaymentID, Note: "the payment had not been captured"}, nil
	case isTransient(err):
		return nil, fmt.Errorf("void after a refused refund: %w", err)
	}
	return nil, paymentNotReturned(refundErr, err)
}
