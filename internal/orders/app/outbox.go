package app

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// The subjects orders publishes. Each is published at most once per order.
const (
	SubjectOrderPlaced    = "order.placed"
	SubjectOrderConfirmed = "order.confirmed"
	SubjectOrderRejected  = "order.rejected"
	SubjectOrderCancelled = "order.cancelled"
	SubjectOrderRefunded  = "order.refunded"
)

// OrderMessage is the JSON payload of every order.* event: enough for a
// consumer to act without calling orders back (the cart service takes the
// items of an order.confirmed with from_cart out of the user's cart;
// notifications mails the email).
type OrderMessage struct {
	OrderID    string        `json:"order_id"`
	UserID     string        `json:"user_id"`
	Email      string        `json:"email,omitempty"`
	Status     string        `json:"status"`
	Items      []domain.Item `json:"items"`
	TotalCents int64         `json:"total_cents"`
	Currency   string        `json:"currency"`
	Reason     string        `json:"reason,omitempty"`
	Refunded   bool          `json:"refunded"`
	// FromCart is true when the order checked out the buyer's cart, false
	// when it listed its items itself ("buy now"), which must leave the
	// cart as it is.
	FromCart   bool      `json:"from_cart"`
	OccurredAt time.Time `json:"occurred_at"`
}

// integrationEvents returns the outbox events that announce ev, which o
// (the order after ev) records. Most events are internal to the saga and
// announce nothing.
func integrationEvents(o domain.Order, ev domain.Event) ([]events.Event, error) {
	var subjects []string
	switch d := ev.Data.(type) {
	case domain.OrderPlacedData:
		subjects = []string{SubjectOrderPlaced}
	case domain.OrderConfirmedData:
		if o.Refund != nil {
			// The buyer asked to cancel once the stock was sold: the order
			// is confirmed only to be refunded at once, which
			// order.refunded announces. A confirmation would mail the
			// buyer about an order they cancelled and take its items out
			// of their cart.
			return nil, nil
		}
		subjects = []string{SubjectOrderConfirmed}
	case domain.OrderRejectedData:
		subjects = []string{SubjectOrderRejected}
	case domain.OrderCancelledData:
		if d.Refunded {
			subjects = append(subjects, SubjectOrderRefunded)
		}
		subjects = append(subjects, SubjectOrderCancelled)
	default:
		return nil, nil
	}
	payload, err := json.Marshal(OrderMessage{
		OrderID: o.ID, UserID: o.UserID, Email: o.Email, Status: string(o.Status), Items: o.Items,
		TotalCents: o.TotalCents, Currency: o.Currency, Reason: o.Reason, Refunded: o.Refunded,
		FromCart: o.FromCart, OccurredAt: ev.OccurredAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode order event: %w", err)
	}
	out := make([]events.Event, len(subjects))
	for i, s := range subjects {
		// A deterministic id: the relay and consumers de-duplicate on it.
		out[i] = events.Event{ID: o.ID + ":" + s, Subject: s, Payload: payload}
	}
	return out, nil
}
