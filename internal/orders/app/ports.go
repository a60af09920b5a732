// Package app holds the orders use cases (place, read, list, cancel) and
// the checkout saga that drives every order to a terminal state. It talks
// to its store and its neighbours through the small interfaces below.
package app

import (
	"context"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/events"
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

// IdempotencyRecord ties a client's idempotency key to the order it created.
type IdempotencyRecord struct {
	UserID      string
	Key         string
	RequestHash string
	OrderID     string
}

// PaymentAttempt tracks whether an authorization may exist that the order's
// stream does not record, so that undoing the order knows whether it has
// to ask payments first.
type PaymentAttempt int

// The payment attempt states.
const (
	// PaymentAttemptNone: no authorization call can have taken effect
	// unrecorded.
	PaymentAttemptNone PaymentAttempt = iota
	// PaymentAttemptArmed: a call is about to be (or is being) made. Seen
	// by a later run, it means the run that armed it died mid-call.
	PaymentAttemptArmed
	// PaymentAttemptUncertain: a call failed in a way that leaves its
	// effect unknown (a deadline, an internal error).
	PaymentAttemptUncertain
)

// SagaState is the saga's bookkeeping for one order, beside its events.
type SagaState struct {
	Step           domain.Step
	Attempts       int
	NextAttemptAt  time.Time
	PaymentAttempt PaymentAttempt
	LeaseOwner     string
}

// SagaWrite is the bookkeeping stored with appended events: the step now
// due (at Now, with no attempts yet).
type SagaWrite struct {
	Now  time.Time
	Step domain.Step
	// LeaseOwner and LeaseUntil extend the writer's lease; empty leaves the
	// lease as it is (a client's cancellation does not take it over). A
	// terminal step always drops the lease.
	LeaseOwner string
	LeaseUntil time.Time
	// PaymentAttempt, when set, replaces the stored state.
	PaymentAttempt *PaymentAttempt
}

// Retry is the bookkeeping of a step that failed and is tried again later.
type Retry struct {
	Attempts       int
	NextAttemptAt  time.Time
	PaymentAttempt PaymentAttempt
}

// Repository stores orders as event streams with their read model, saga
// bookkeeping, idempotency keys and outgoing events. Implementations are
// safe for concurrent use.
type Repository interface {
	// Create stores a new order, its first events, the idempotency record
	// and the outbox events in one transaction. It returns
	// ErrIdempotencyKeyTaken, storing nothing, when the user already used
	// the key.
	Create(ctx context.Context, key IdempotencyRecord, o domain.Order, evs []domain.Event, out []events.Event, saga SagaWrite) error
	// FindIdempotencyKey returns the record of a user's key, if any.
	FindIdempotencyKey(ctx context.Context, userID, key string) (IdempotencyRecord, bool, error)
	// Append adds evs (versions expected+1 onwards) to the order's stream,
	// updates the read model to o (the order after evs) and stores out, in
	// one transaction. It returns domain.ErrConcurrentModification when the
	// stream is no longer at version expected.
	Append(ctx context.Context, o domain.Order, expected int64, evs []domain.Event, out []events.Event, saga SagaWrite) error
	// Load rebuilds the order from its events. domain.ErrNotFound if absent.
	Load(ctx context.Context, id string) (domain.Order, SagaState, error)
	// Rebuild rebuilds the order from its events, without the saga's
	// bookkeeping. domain.ErrNotFound if absent.
	Rebuild(ctx context.Context, id string) (domain.Order, error)
	// Get reads the order's read model. domain.ErrNotFound if absent.
	Get(ctx context.Context, id string) (domain.View, error)
	// List returns up to limit orders newest first, those of userID (all
	// when empty), starting after the order with id after (from the start
	// when empty).
	List(ctx context.Context, userID, after string, limit int) ([]domain.View, error)
	// Events returns the order's stream, oldest first (empty if absent).
	Events(ctx context.Context, id string) ([]domain.Event, error)

	// ForgetIdempotencyKeys deletes the idempotency keys recorded before
	// before and returns how many.
	ForgetIdempotencyKeys(ctx context.Context, before time.Time) (int64, error)

	// Claim leases the order to owner until until, if its saga is not
	// done, a step is due at now, and no one else holds a live lease, and
	// returns the saga's bookkeeping as the claim left it (with the same
	// round trip).
	Claim(ctx context.Context, id, owner string, now, until time.Time) (SagaState, bool, error)
	// Due returns up to limit orders whose saga has a step due at now and
	// that no one holds a live lease on, most overdue first.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// ScheduleRetry records a failed attempt and drops owner's lease. The
	// schedule is only changed while the order is still at version (a
	// newer event has made a new step due at once); the payment attempt
	// always is.
	ScheduleRetry(ctx context.Context, id, owner string, version int64, r Retry) error
	// SetPaymentAttempt stores the payment attempt state.
	SetPaymentAttempt(ctx context.Context, id string, p PaymentAttempt) error
	// ReleaseLease drops owner's lease on the order.
	ReleaseLease(ctx context.Context, id, owner string) error
	// ReleaseLeases drops every lease owner holds (a restarted replica
	// taking back what it held before) and returns how many.
	ReleaseLeases(ctx context.Context, owner string) (int64, error)
	// CountInFlight returns how many orders' sagas are not done.
	CountInFlight(ctx context.Context) (int64, error)
}
