package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType names what happened to an order. The names are stored with
// every event and are part of the public order history.
type EventType string

// The event types, in the order a checkout usually records them.
const (
	OrderPlaced           EventType = "OrderPlaced"
	StockReserved         EventType = "StockReserved"
	PaymentAuthorized     EventType = "PaymentAuthorized"
	StockCommitted        EventType = "StockCommitted"
	PaymentCaptured       EventType = "PaymentCaptured"
	OrderConfirmed        EventType = "OrderConfirmed"
	OrderRejected         EventType = "OrderRejected"
	PaymentDeclined       EventType = "PaymentDeclined"
	CancellationRequested EventType = "CancellationRequested"
	StockReleased         EventType = "StockReleased"
	PaymentVoided         EventType = "PaymentVoided"
	RefundRequested       EventType = "RefundRequested"
	PaymentRefunded       EventType = "PaymentRefunded"
	StockRestocked        EventType = "StockRestocked"
	OrderCancelled        EventType = "OrderCancelled"
	OrderNeedsAttention   EventType = "OrderNeedsAttention"
)

// EventTypes lists every event type.
var EventTypes = []EventType{
	OrderPlaced, StockReserved, PaymentAuthorized, StockCommitted, PaymentCaptured, OrderConfirmed,
	OrderRejected, PaymentDeclined, CancellationRequested, StockReleased, PaymentVoided,
	RefundRequested, PaymentRefunded, StockRestocked, OrderCancelled, OrderNeedsAttention,
}

// RequestedBySystem marks a cancellation the saga decided on itself (a
// timeout, a failed capture), as opposed to one a user asked for.
const RequestedBySystem = "system"

// Event is one entry of an order's stream.
type Event struct {
	// Version is the event's position in its order's stream, from 1.
	Version    int64
	OccurredAt time.Time
	Data       EventData
}

// Type is the type of the event's data.
func (e Event) Type() EventType { return e.Data.EventType() }

// EventData is the payload of one event type.
type EventData interface {
	EventType() EventType
}

// OrderPlacedData starts every stream. It holds everything the saga needs
// later, so that nothing is re-read from a neighbour once the order exists
// (prices in particular are fixed at placement).
type OrderPlacedData struct {
	OrderID         string    `json:"order_id"`
	UserID          string    `json:"user_id"`
	Email           string    `json:"email,omitempty"`
	Items           []Item    `json:"items"`
	TotalCents      int64     `json:"total_cents"`
	Currency        string    `json:"currency"`
	ShippingAddress Address   `json:"shipping_address"`
	PaymentToken    string    `json:"payment_token"`
	PlacedAt        time.Time `json:"placed_at"`
	DeadlineAt      time.Time `json:"deadline_at"`
	// FromCart says the order checked out the buyer's cart (it named no
	// items), so the cart drops what was bought once it is confirmed. An
	// order that listed its items ("buy now") leaves the cart alone.
	FromCart bool `json:"from_cart,omitempty"`
}

// StockReservedData records inventory's hold on the order's items.
type StockReservedData struct {
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// PaymentAuthorizedData records the authorized payment.
type PaymentAuthorizedData struct {
	PaymentID   string `json:"payment_id"`
	AmountCents int64  `json:"amount_cents"`
}

// StockCommittedData records that the held stock became sold stock.
type StockCommittedData struct{}

// PaymentCapturedData records the capture of the authorized payment.
type PaymentCapturedData struct {
	PaymentID string `json:"payment_id"`
}

// OrderConfirmedData ends a successful checkout.
type OrderConfirmedData struct{}

// OrderRejectedData ends a checkout that could not hold the stock.
type OrderRejectedData struct {
	Reason string `json:"reason"`
	SKU    string `json:"sku,omitempty"`
}

// PaymentDeclinedData records that the payment could not be authorized.
// Reason is what the order's cancellation will say.
type PaymentDeclinedData struct {
	PaymentID   string `json:"payment_id,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Reason      string `json:"reason"`
}

// CancellationRequestedData asks the saga to undo a pending order. By is
// the user who asked, or RequestedBySystem.
type CancellationRequestedData struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
}

// StockReleasedData records that nothing is held for the order any more.
// Note explains a release that needed no call (the hold was already gone).
type StockReleasedData struct {
	Note string `json:"note,omitempty"`
}

// PaymentVoidedData records that the authorization no longer holds money.
type PaymentVoidedData struct {
	PaymentID string `json:"payment_id,omitempty"`
	Note      string `json:"note,omitempty"`
}

// RefundRequestedData asks the saga to refund and restock a confirmed order.
type RefundRequestedData struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
}

// PaymentRefundedData records the refund of the captured payment.
type PaymentRefundedData struct {
	PaymentID string `json:"payment_id"`
}

// StockRestockedData records that sold stock went back on hand.
type StockRestockedData struct {
	Note string `json:"note,omitempty"`
}

// OrderCancelledData ends a cancelled order.
type OrderCancelledData struct {
	Reason   string `json:"reason"`
	Refunded bool   `json:"refunded"`
}

// OrderNeedsAttentionData ends the saga of an order it could not finish
// undoing: payments refused both to refund and to void the payment, so
// the buyer's money may still be held. The order is not cancelled; an
// operator resolves it by hand.
type OrderNeedsAttentionData struct {
	Reason string `json:"reason"`
	// Step is the compensation that could not complete.
	Step      Step   `json:"step"`
	PaymentID string `json:"payment_id,omitempty"`
}

// EventType implements EventData.
func (OrderPlacedData) EventType() EventType { return OrderPlaced }

// EventType implements EventData.
func (StockReservedData) EventType() EventType { return StockReserved }

// EventType implements EventData.
func (PaymentAuthorizedData) EventType() EventType { return PaymentAuthorized }

// EventType implements EventData.
func (StockCommittedData) EventType() EventType { return StockCommitted }

// EventType implements EventData.
func (PaymentCapturedData) EventType() EventType { return PaymentCaptured }

// EventType implements EventData.
func (OrderConfirmedData) EventType() EventType { return OrderConfirmed }

// EventType implements EventData.
func (OrderRejectedData) EventType() EventType { return OrderRejected }

// EventType implements EventData.
func (PaymentDeclinedData) EventType() EventType { return PaymentDeclined }

// EventType implements EventData.
func (CancellationRequestedData) EventType() EventType { return CancellationRequested }

// EventType implements EventData.
func (StockReleasedData) EventType() EventType { return StockReleased }

// EventType implements EventData.
func (PaymentVoidedData) EventType() EventType { return PaymentVoided }

// EventType implements EventData.
func (RefundRequestedData) EventType() EventType { return RefundRequested }

// EventType implements EventData.
func (PaymentRefundedData) EventType() EventType { return PaymentRefunded }

// EventType implements EventData.
func (StockRestockedData) EventType() EventType { return StockRestocked }

// EventType implements EventData.
func (OrderCancelledData) EventType() EventType { return OrderCancelled }

// EventType implements EventData.
func (OrderNeedsAttentionData) EventType() EventType { return OrderNeedsAttention }

// EncodeEventData returns the JSON stored for d.
func EncodeEventData(d EventData) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.EventType(), err)
	}
	return b, nil
}

// DecodeEventData turns stored JSON back into the data of type t.
func DecodeEventData(t EventType, raw []byte) (EventData, error) {
	var d EventData
	switch t {
	case OrderPlaced:
		d = decodeInto[OrderPlacedData](raw)
	case StockReserved:
		d = decodeInto[StockReservedData](raw)
	case PaymentAuthorized:
		d = decodeInto[PaymentAuthorizedData](raw)
	case StockCommitted:
		d = decodeInto[StockCommittedData](raw)
	case PaymentCaptured:
		d = decodeInto[PaymentCapturedData](raw)
	case OrderConfirmed:
		d = decodeInto[OrderConfirmedData](raw)
	case OrderRejected:
		d = decodeInto[OrderRejectedData](raw)
	case PaymentDeclined:
		d = decodeInto[PaymentDeclinedData](raw)
	case CancellationRequested:
		d = decodeInto[CancellationRequestedData](raw)
	case StockReleased:
		d = decodeInto[StockReleasedData](raw)
	case PaymentVoided:
		d = decodeInto[PaymentVoidedData](raw)
	case RefundRequested:
		d = decodeInto[RefundRequestedData](raw)
	case PaymentRefunded:
		d = decodeInto[PaymentRefundedData](raw)
	case StockRestocked:
		d = decodeInto[StockRestockedData](raw)
	case OrderCancelled:
		d = decodeInto[OrderCancelledData](raw)
	case OrderNeedsAttention:
		d = decodeInto[OrderNeedsAttentionData](raw)
	default:
		return nil, fmt.Errorf("decode event: unknown type %q", t)
	}
	if d == nil {
		return nil, fmt.Errorf("decode %s: malformed data", t)
	}
	return d, nil
}

func decodeInto[T EventData](raw []byte) EventData {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	return v
}

// KnownEventType reports whether t is one of EventTypes.
func KnownEventType(t string) bool {
	for _, known := range EventTypes {
		if string(known) == t {
			return true
		}
	}
	return false
}
