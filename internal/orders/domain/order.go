// Package domain holds the order aggregate: an order is the fold of its
// event stream, and the same fold decides the checkout saga's next step.
// Nothing here does I/O; time comes in as an argument.
package domain

import (
	"fmt"
	"time"
)

// Status is what a client sees of an order.
type Status string

// The order statuses. Rejected and cancelled are terminal; confirmed is
// terminal unless a refund is requested. Needs attention is terminal for
// the saga: undoing the order could not return its payment, and an
// operator resolves it by hand.
const (
	StatusPending        Status = "pending"
	StatusConfirmed      Status = "confirmed"
	StatusRejected       Status = "rejected"
	StatusCancelled      Status = "cancelled"
	StatusNeedsAttention Status = "needs_attention"
)

// StockState is what inventory holds for the order, as far as the stream
// records it.
type StockState int

// The stock states.
const (
	StockStateNone StockState = iota
	StockStateHeld
	StockStateSold
	StockStateReleased
	StockStateRestocked
)

// PaymentState is where the order's payment stands, as far as the stream
// records it.
type PaymentState int

// The payment states.
const (
	PaymentStateNone PaymentState = iota
	PaymentStateAuthorized
	PaymentStateDeclined
	PaymentStateCaptured
	PaymentStateVoided
	PaymentStateRefunded
)

// Reasons the saga gives when it ends an order by itself. Client-chosen
// cancellation reasons are free text.
const (
	ReasonTimedOut          = "checkout timed out"
	ReasonCaptureFailed     = "payment capture failed"
	ReasonReservationLost   = "stock reservation expired"
	ReasonTokenNotKnown     = "payment token not recognised"
	ReasonPaymentFailed     = "payment failed"
	ReasonReservationFailed = "stock could not be reserved"
	ReasonCustomerCancelled = "cancelled by customer"
	ReasonAdminCancelled    = "cancelled by an administrator"
	// ReasonPaymentNotReturned: payments refused both to refund and to
	// void the order's payment, so it may still hold the buyer's money.
	ReasonPaymentNotReturned = "the payment could not be returned: payments refused both refund and void"
)

// OutOfStockReason is the rejection reason for a sku inventory could not hold.
func OutOfStockReason(sku string) string {
	if sku == "" {
		return "out of stock"
	}
	return "out of stock: " + sku
}

// DeclinedReason is the cancellation reason for a declined payment.
func DeclinedReason(code string) string {
	if code == "" {
		return "payment declined"
	}
	return "payment declined: " + code
}

// Request is a recorded wish to cancel or refund.
type Request struct {
	Reason string
	// By is the requesting user's id, or RequestedBySystem.
	By string
}

// Order is the aggregate rebuilt from an order's events. The zero value is
// an order that does not exist yet; Apply OrderPlaced first.
type Order struct {
	ID              string
	UserID          string
	Email           string
	Items           []Item
	TotalCents      int64
	Currency        string
	ShippingAddress Address
	PaymentToken    string
	// FromCart says the order checked out the buyer's cart.
	FromCart   bool
	PlacedAt   time.Time
	DeadlineAt time.Time
	UpdatedAt  time.Time
	// Version is the number of events applied.
	Version int64

	Status    Status
	Reason    string
	Refunded  bool
	PaymentID string
	Stock     StockState
	Payment   PaymentState
	// StockExpiresAt is when inventory drops the hold by itself.
	StockExpiresAt time.Time
	// Cancellation is set once a pending order is asked to be undone.
	Cancellation *Request
	// Refund is set once a confirmed order is asked to be refunded, or a
	// pending one past its point of no return (the stock sold): that one
	// is finished first, then refunded.
	Refund *Request

	// abortReason is the first cause of undoing a pending order: the
	// cancellation request or the payment decline, whichever came first;
	// abortDeclined says which.
	abortReason   string
	abortDeclined bool
}

// Rebuild folds events, oldest first, into an order.
func Rebuild(events []Event) (Order, error) {
	var o Order
	for _, e := range events {
		if err := o.Apply(e); err != nil {
			return Order{}, err
		}
	}
	if o.Version == 0 {
		return Order{}, ErrNotFound
	}
	return o, nil
}

// Apply records e on o. It fails with ErrInvalidTransition when e is not
// the next version or does not fit the order's state, leaving o unchanged.
func (o *Order) Apply(e Event) error {
	if e.Version != o.Version+1 {
		return fmt.Errorf("%w: %s at version %d, order is at %d", ErrInvalidTransition, e.Type(), e.Version, o.Version)
	}
	next := *o
	if err := next.apply(e.Data); err != nil {
		return fmt.Errorf("%w: %s on order %s: %s", ErrInvalidTransition, e.Type(), o.ID, err.Error())
	}
	next.Version = e.Version
	next.UpdatedAt = e.OccurredAt
	*o = next
	return nil
}

func (o *Order) apply(data EventData) error {
	if _, placed := data.(OrderPlacedData); !placed && o.Version == 0 {
		return fmt.Errorf("order was not placed")
	}
	if o.Status == StatusRejected || o.Status == StatusCancelled || o.Status == StatusNeedsAttention {
		return fmt.Errorf("order is %s", o.Status)
	}
	pending := o.Status == StatusPending
	refunding := o.Status == StatusConfirmed && o.Refund != nil
	// undoable: a pending order, or a confirmed one being refunded.
	undoable := pending || refunding
	switch d := data.(type) {
	case OrderPlacedData:
		if o.Version != 0 {
			return fmt.Errorf("order was already placed")
		}
		o.ID, o.UserID, o.Email = d.OrderID, d.UserID, d.Email
		o.Items, o.TotalCents, o.Currency = d.Items, d.TotalCents, d.Currency
		o.ShippingAddress, o.PaymentToken, o.FromCart = d.ShippingAddress, d.PaymentToken, d.FromCart
		o.PlacedAt, o.DeadlineAt = d.PlacedAt, d.DeadlineAt
		o.Status = StatusPending
	case StockReservedData:
		if !pending || o.Stock != StockStateNone {
			return fmt.Errorf("stock cannot be reserved now")
		}
		o.Stock, o.StockExpiresAt = StockStateHeld, d.ExpiresAt
	case PaymentAuthorizedData:
		if !pending || o.Payment != PaymentStateNone {
			return fmt.Errorf("payment cannot be authorized now")
		}
		o.Payment, o.PaymentID = PaymentStateAuthorized, d.PaymentID
	case StockCommittedData:
		if !pending || o.Stock != StockStateHeld {
			return fmt.Errorf("stock is not held")
		}
		o.Stock = StockStateSold
	case PaymentCapturedData:
		if !pending || o.Payment != PaymentStateAuthorized {
			return fmt.Errorf("payment is not authorized")
		}
		o.Payment = PaymentStateCaptured
	case OrderConfirmedData:
		if !pending || o.Stock != StockStateSold || o.Payment != PaymentStateCaptured || o.undoing() {
			return fmt.Errorf("order cannot be confirmed")
		}
		o.Status = StatusConfirmed
	case OrderRejectedData:
		if !pending || o.Stock != StockStateNone {
			return fmt.Errorf("order cannot be rejected")
		}
		o.Status, o.Reason = StatusRejected, d.Reason
	case PaymentDeclinedData:
		if !pending || o.Payment != PaymentStateNone {
			return fmt.Errorf("payment cannot be declined now")
		}
		o.Payment = PaymentStateDeclined
		if d.PaymentID != "" {
			o.PaymentID = d.PaymentID
		}
		if o.abortReason == "" {
			o.abortReason, o.abortDeclined = d.Reason, true
		}
	case CancellationRequestedData:
		if !pending || o.Cancellation != nil {
			return fmt.Errorf("cancellation cannot be requested now")
		}
		o.Cancellation = &Request{Reason: d.Reason, By: d.By}
		if o.abortReason == "" {
			o.abortReason = d.Reason
		}
	case StockReleasedData:
		if !pending || (o.Stock != StockStateNone && o.Stock != StockStateHeld) {
			return fmt.Errorf("stock cannot be released now")
		}
		o.Stock = StockStateReleased
	case PaymentVoidedData:
		if !undoable || (o.Payment != PaymentStateAuthorized && o.Payment != PaymentStateCaptured) {
			return fmt.Errorf("payment cannot be voided now")
		}
		o.Payment = PaymentStateVoided
	case RefundRequestedData:
		if (o.Status != StatusConfirmed && !o.pastPivot()) || o.Refund != nil {
			return fmt.Errorf("refund cannot be requested now")
		}
		o.Refund = &Request{Reason: d.Reason, By: d.By}
	case PaymentRefundedData:
		if !undoable || (o.Payment != PaymentStateAuthorized && o.Payment != PaymentStateCaptured) {
			return fmt.Errorf("payment cannot be refunded now")
		}
		o.Payment = PaymentStateRefunded
	case StockRestockedData:
		// From StockStateNone too: a release refused because a reservation was
		// committed after all can only be undone by a restock.
		if !undoable || (o.Stock != StockStateNone && o.Stock != StockStateHeld && o.Stock != StockStateSold) {
			return fmt.Errorf("stock cannot be restocked now")
		}
		o.Stock = StockStateRestocked
	case OrderCancelledData:
		if (!pending || !o.undoing()) && !refunding {
			return fmt.Errorf("order cannot be cancelled now")
		}
		if o.Stock == StockStateHeld || o.Stock == StockStateSold || o.Payment == PaymentStateAuthorized || o.Payment == PaymentStateCaptured {
			return fmt.Errorf("order still holds stock or money")
		}
		o.Status, o.Reason, o.Refunded = StatusCancelled, d.Reason, d.Refunded
	case OrderNeedsAttentionData:
		// Only undoing can get stuck this way, and only on money still
		// held: the order is never cancelled while it may keep it.
		if (!pending || !o.undoing()) && !refunding {
			return fmt.Errorf("order is not being undone")
		}
		if o.Payment != PaymentStateAuthorized && o.Payment != PaymentStateCaptured {
			return fmt.Errorf("order holds no money")
		}
		o.Status, o.Reason = StatusNeedsAttention, d.Reason
	default:
		return fmt.Errorf("unknown event data %T", data)
	}
	return nil
}

// undoing reports whether a pending order is being compensated: someone
// asked to cancel it, or its payment was declined.
func (o Order) undoing() bool {
	return o.Cancellation != nil || o.Payment == PaymentStateDeclined
}

// pastPivot reports whether a pending order has passed its point of no
// return, the stock commit, and only moves forward: it is not being
// undone and its stock is sold.
func (o Order) pastPivot() bool {
	return o.Status == StatusPending && !o.undoing() && o.Stock == StockStateSold
}

// Terminal reports whether the saga has nothing left to do for the order:
// it was rejected or cancelled, confirmed with no refund requested, or it
// needs attention (what is left is an operator's).
func (o Order) Terminal() bool {
	switch o.Status {
	case StatusRejected, StatusCancelled, StatusNeedsAttention:
		return true
	case StatusConfirmed:
		return o.Refund == nil
	}
	return false
}

// Step is the next thing the checkout saga does for an order.
type Step string

// The saga steps. Forward steps move a pending order towards confirmed;
// the others undo what was done.
const (
	StepDone             Step = "done"
	StepReserveStock     Step = "reserve_stock"
	StepAuthorizePayment Step = "authorize_payment"
	StepCommitStock      Step = "commit_stock"
	StepCapturePayment   Step = "capture_payment"
	StepConfirm          Step = "confirm"
	// StepTimeOut records that the checkout ran out of time before its
	// point of no return (the stock commit), which starts compensation.
	StepTimeOut Step = "time_out"
	// StepReleaseStock releases the hold. It runs even when no hold was
	// recorded: a reservation call may have landed without being recorded,
	// and releasing an unknown order leaves a tombstone that keeps a late
	// reservation from holding anything.
	StepReleaseStock Step = "release_stock"
	StepRestockStock Step = "restock_stock"
	// StepResolvePayment asks payments (by repeating the idempotent
	// authorization) whether an authorization whose outcome was never
	// recorded exists, so that it can be voided.
	StepResolvePayment Step = "resolve_payment"
	StepVoidPayment    Step = "void_payment"
	StepRefundPayment  Step = "refund_payment"
	StepCancel         Step = "cancel"
)

// WorkSteps lists every step but StepDone: what an order in flight can be
// waiting for.
var WorkSteps = []Step{
	StepReserveStock, StepAuthorizePayment, StepCommitStock, StepCapturePayment, StepConfirm, StepTimeOut,
	StepReleaseStock, StepRestockStock, StepResolvePayment, StepVoidPayment, StepRefundPayment, StepCancel,
}

// BeforePointOfNoReturn reports whether s is a forward step that the
// saga deadline cuts short.
func (s Step) BeforePointOfNoReturn() bool {
	return s == StepReserveStock || s == StepAuthorizePayment || s == StepCommitStock
}

// NextStep decides what the saga does next at time now. paymentInDoubt
// says an authorization may exist that the stream does not record (a call
// whose answer was lost); undoing such an order first resolves it.
//
// The rules: a pending order moves forward (reserve, authorize, commit,
// capture, confirm) until the deadline passes before the stock commit,
// which turns into a cancellation. Once the stock is committed the
// deadline no longer matters: finishing (one capture) is cheaper and
// kinder than undoing, and a refund requested meanwhile waits for the
// confirmation. An order being undone gives back its stock first (the
// resource other shoppers wait for), then the payment, then is
// cancelled. A confirmed order with a refund requested is refunded, then
// restocked, then cancelled.
func (o Order) NextStep(now time.Time, paymentInDoubt bool) Step {
	switch o.Status {
	case StatusRejected, StatusCancelled, StatusNeedsAttention:
		return StepDone
	case StatusConfirmed:
		if o.Refund == nil {
			return StepDone
		}
		switch {
		case o.Payment == PaymentStateCaptured:
			return StepRefundPayment
		case o.Payment == PaymentStateAuthorized:
			return StepVoidPayment
		case o.Stock == StockStateSold || o.Stock == StockStateHeld:
			return StepRestockStock
		}
		return StepCancel
	}
	if o.undoing() {
		switch o.Stock {
		case StockStateNone, StockStateHeld:
			return StepReleaseStock
		case StockStateSold:
			return StepRestockStock
		}
		switch o.Payment {
		case PaymentStateNone:
			if paymentInDoubt {
				return StepResolvePayment
			}
		case PaymentStateAuthorized:
			return StepVoidPayment
		case PaymentStateCaptured:
			return StepRefundPayment
		}
		return StepCancel
	}
	if o.Stock != StockStateSold && !now.Before(o.DeadlineAt) {
		return StepTimeOut
	}
	switch {
	case o.Stock == StockStateNone:
		return StepReserveStock
	case o.Payment == PaymentStateNone:
		return StepAuthorizePayment
	case o.Stock == StockStateHeld:
		return StepCommitStock
	case o.Payment == PaymentStateAuthorized:
		return StepCapturePayment
	}
	return StepConfirm
}

// CancelledData is the OrderCancelled event that ends an undone order.
func (o Order) CancelledData() OrderCancelledData {
	reason := o.abortReason
	if o.Status == StatusConfirmed && o.Refund != nil {
		reason = o.Refund.Reason
	}
	return OrderCancelledData{Reason: reason, Refunded: o.Payment == PaymentStateRefunded}
}

// RequestCancellation decides what a cancel request by user by does: a
// pending order before its stock commit gets a CancellationRequested (it
// is compensated); a confirmed one, or a pending one past the commit (the
// pivot: it is finished first), a RefundRequested, so that every capture
// belongs to a confirmed order. A finished or already-cancelling order is
// a Conflict.
func (o Order) RequestCancellation(by, reason string) (EventData, error) {
	switch o.Status {
	case StatusCancelled:
		return nil, ErrAlreadyCancelled
	case StatusRejected:
		return nil, ErrRejectedCannotCancel
	case StatusNeedsAttention:
		return nil, ErrNeedsAttention
	case StatusConfirmed:
		if o.Refund != nil {
			return nil, ErrCancellationRequested
		}
		return RefundRequestedData{Reason: reason, By: by}, nil
	}
	if o.undoing() || o.Refund != nil {
		return nil, ErrCancellationRequested
	}
	if o.pastPivot() {
		return RefundRequestedData{Reason: reason, By: by}, nil
	}
	return CancellationRequestedData{Reason: reason, By: by}, nil
}

// OutcomeClass names how a finished order ended, with few enough values to
// label a metric: confirmed, out_of_stock, reservation_failed, timeout,
// payment_declined, payment_token, payment_failed, capture_failed,
// reservation_lost, requested (a person cancelled a pending order),
// refunded or payment_not_returned (it needs attention). It is "" while the
// order is in flight.
func (o Order) OutcomeClass() string {
	switch o.Status {
	case StatusNeedsAttention:
		return "payment_not_returned"
	case StatusConfirmed:
		if o.Refund == nil {
			return "confirmed"
		}
		return ""
	case StatusRejected:
		if o.Reason == ReasonReservationFailed || o.Reason == ReasonReservationLost {
			return "reservation_failed"
		}
		return "out_of_stock"
	case StatusCancelled:
		if o.Refund != nil && !o.undoing() {
			return "refunded"
		}
		if o.abortDeclined {
			switch o.abortReason {
			case ReasonTokenNotKnown:
				return "payment_token"
			case ReasonPaymentFailed:
				return "payment_failed"
			}
			return "payment_declined"
		}
		if o.Cancellation != nil && o.Cancellation.By == RequestedBySystem {
			switch o.abortReason {
			case ReasonTimedOut:
				return "timeout"
			case ReasonCaptureFailed:
				return "capture_failed"
			case ReasonReservationLost:
				return "reservation_lost"
			}
		}
		return "requested"
	}
	return ""
}

// View is the read model of an order: what clients see.
type View struct {
	ID              string
	UserID          string
	Email           string
	Status          Status
	Items           []Item
	TotalCents      int64
	Currency        string
	ShippingAddress Address
	Reason          string
	Refunded        bool
	PaymentID       string
	Version         int64
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// View returns the order's read model.
func (o Order) View() View {
	return View{
		ID: o.ID, UserID: o.UserID, Email: o.Email, Status: o.Status, Items: o.Items,
		TotalCents: o.TotalCents, Currency: o.Currency, ShippingAddress: o.ShippingAddress,
		Reason: o.Reason, Refunded: o.Refunded, PaymentID: o.PaymentID, Version: o.Version,
		CreatedAt: o.PlacedAt, UpdatedAt: o.UpdatedAt,
	}
}
