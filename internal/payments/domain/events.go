package domain

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// Subjects of the events the payments service publishes (stream PAYMENTS),
// one per status a payment can reach.
const (
	SubjectAuthorized = "payment.authorized"
	SubjectDeclined   = "payment.declined"
	SubjectCaptured   = "payment.captured"
	SubjectVoided     = "payment.voided"
	SubjectRefunded   = "payment.refunded"
)

// Subject is the subject announcing that a payment reached s.
func Subject(s Status) string { return "payment." + string(s) }

// PaymentEvent is the JSON payload of every payment.* event: the payment
// as it is after the change.
type PaymentEvent struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
	// DeclineCode is set on payment.declined only.
	DeclineCode string `json:"decline_code,omitempty"`
}

// eventNamespace derives event ids from what they announce.
var eventNamespace = uuid.MustParse("5b0e4a52-5d1f-4c1e-9a57-7061796d6e74")

// EventID is the id of the event announcing that payment id reached s. A
// payment reaches each status at most once, so the id is derived rather
// than random: a retried recording can never publish a second event.
func EventID(paymentID string, s Status) string {
	return uuid.NewSHA1(eventNamespace, []byte(paymentID+"/"+string(s))).String()
}

// EventPayload encodes p as a PaymentEvent.
func EventPayload(p Payment) ([]byte, error) {
	b, err := json.Marshal(PaymentEvent{
		PaymentID: p.ID, OrderID: p.OrderID, UserID: p.UserID,
		AmountCents: p.AmountCents, Currency: p.Currency, Status: string(p.Status),
		DeclineCode: p.DeclineCode,
	})
	if err != nil {
		return nil, fmt.Errorf("encode payment event: %w", err)
	}
	return b, nil
}
