package app

import (
	"context"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

// Catalog prices products. Implementations return ErrUnavailable or
// ErrOutcomeUnknown when the catalog cannot answer.
type Catalog interface {
	// Products returns the products among ids that exist, in any order.
	Products(ctx context.Context, ids []string) ([]domain.Product, error)
}

// Cart reads a user's cart on the user's behalf.
type Cart interface {
	// Items returns the lines of user's cart (empty when never used). The
	// call carries user's own token.
	Items(ctx context.Context, user auth.Principal) ([]domain.ItemInput, error)
}

// StockLine is one sku and quantity to hold.
type StockLine struct {
	SKU      string
	Quantity int64
}

// ReservationStatus is where inventory's reservation for an order stands.
type ReservationStatus int

// The reservation statuses. The adapter maps inventory's answer to one of
// them; ReservationStatusUnknown is an answer it does not know.
const (
	ReservationStatusUnknown ReservationStatus = iota
	ReservationReserved
	ReservationCommitted
	ReservationReleased
	ReservationRestocked
	ReservationExpired
)

var reservationStatusNames = [...]string{"unknown", "reserved", "committed", "released", "restocked", "expired"}

func (s ReservationStatus) String() string {
	if s < 0 || int(s) >= len(reservationStatusNames) {
		return reservationStatusNames[ReservationStatusUnknown]
	}
	return reservationStatusNames[s]
}

// HoldsStock reports whether inventory holds (or has sold) stock for the
// order under a reservation in this status.
func (s ReservationStatus) HoldsStock() bool {
	return s == ReservationReserved || s == ReservationCommitted
}

// Reservation is inventory's answer to a reservation.
type Reservation struct {
	Status    ReservationStatus
	ExpiresAt time.Time
}

// Inventory holds and sells stock for orders. Every call is idempotent by
// order id. Errors: *OutOfStockError (Reserve), ErrConflict for a call
// the reservation's state does not allow, ErrNotFound when inventory has
// no reservation for the order, ErrUnavailable or ErrOutcomeUnknown when
// the call failed and may be retried.
type Inventory interface {
	Reserve(ctx context.Context, orderID string, lines []StockLine, ttl time.Duration) (Reservation, error)
	Commit(ctx context.Context, orderID string) error
	Release(ctx context.Context, orderID string) error
	Restock(ctx context.Context, orderID string) error
}

// Authorization asks payments to hold an order's amount.
type Authorization struct {
	IdempotencyKey string
	OrderID        string
	UserID         string
	AmountCents    int64
	Currency       string
	PaymentToken   string
}

// PaymentStatus is where a payment stands at payments.
type PaymentStatus int

// The payment statuses. The adapter maps payments' answer to one of them;
// PaymentStatusUnknown is an answer it does not know.
const (
	PaymentStatusUnknown PaymentStatus = iota
	PaymentAuthorized
	PaymentDeclined
	PaymentCaptured
	PaymentVoided
	PaymentRefunded
)

var paymentStatusNames = [...]string{"unknown", "authorized", "declined", "captured", "voided", "refunded"}

func (s PaymentStatus) String() string {
	if s < 0 || int(s) >= len(paymentStatusNames) {
		return paymentStatusNames[PaymentStatusUnknown]
	}
	return paymentStatusNames[s]
}

// Payment is payments' view of an authorization.
type Payment struct {
	ID          string
	Status      PaymentStatus
	DeclineCode string
}

// PaymentMethods checks a card token before an order is accepted.
type PaymentMethods interface {
	// CheckPaymentToken returns nil when payments knows the token, an
	// error wrapping ErrPaymentTokenRejected when it does not, and
	// ErrUnavailable or ErrOutcomeUnknown when payments could not answer.
	// It holds nothing.
	CheckPaymentToken(ctx context.Context, token string) error
}

// Payments moves money. Authorize is idempotent by key and the others by
// payment id. A decline is a Payment with status PaymentDeclined, not an
// error.
// Errors: ErrInvalidRequest (Authorize: the token is unknown), ErrConflict
// for a call the payment's state does not allow, ErrUnavailable or
// ErrOutcomeUnknown when the call failed and may be retried.
type Payments interface {
	PaymentMethods
	Authorize(ctx context.Context, a Authorization) (Payment, error)
	Capture(ctx context.Context, paymentID string) error
	Void(ctx context.Context, paymentID string) error
	Refund(ctx context.Context, paymentID string) error
}
