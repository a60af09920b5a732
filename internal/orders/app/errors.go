package app

import (
	"errors"
	"fmt"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// Errors of the use cases, beside the domain's.
var (
	ErrInvalidPageToken = pagination.ErrInvalidPageToken
	ErrPageSize         = pagination.ErrPageSize
	ErrCatalogDown      = apperr.New(apperr.Unavailable, "product catalog is unavailable, retry later")
	ErrCartDown         = apperr.New(apperr.Unavailable, "cart is unavailable, retry later")
	ErrPaymentsDown     = apperr.New(apperr.Unavailable, "payments is unavailable, retry later")
	ErrWaitOutOfRange   = apperr.New(apperr.Invalid, "wait_seconds must be between 0 and 10")
)

// ErrIdempotencyKeyTaken is what Repository.Create returns when the user
// already used the key. It never reaches a client: the use case looks the
// key up and answers with the order it created, or ErrIdempotencyKeyReused.
var ErrIdempotencyKeyTaken = errors.New("idempotency key already used")

// How a neighbour's failure is classified. Clients of the neighbours wrap
// one of these, so the saga can tell a business answer (record it, move
// on) from a failure (try again later).
var (
	// ErrUnavailable: the neighbour could not be reached or refused to
	// work (unavailable, overloaded, circuit open, not authorised), so the
	// call did not take effect. Worth retrying.
	ErrUnavailable = errors.New("neighbour unavailable")
	// ErrOutcomeUnknown: the call may or may not have taken effect (a
	// deadline passed, the neighbour failed internally). Worth retrying;
	// every call is idempotent.
	ErrOutcomeUnknown = errors.New("neighbour call outcome unknown")
	// ErrConflict: the neighbour refused because of its state (an invalid
	// transition such as committing an expired reservation).
	ErrConflict = errors.New("neighbour refused the transition")
	// ErrInvalidRequest: the neighbour refused the request's content (an
	// unknown payment token).
	ErrInvalidRequest = errors.New("neighbour refused the request")
	// ErrNotFound: the neighbour has no such record.
	ErrNotFound = errors.New("neighbour has no such record")
)

// Refinements of the classes above, for answers the saga acts on.
var (
	// ErrPaymentTokenRejected: payments does not know the card token.
	ErrPaymentTokenRejected = fmt.Errorf("%w: payment token not recognised", ErrInvalidRequest)
	// ErrCaptureInProgress: payments refuses a void or refund because a
	// capture was begun (its answer lost) and must be finished first.
	ErrCaptureInProgress = fmt.Errorf("%w: a capture is in progress", ErrUnavailable)
)

// OutOfStockError is inventory's answer when a line cannot be held.
type OutOfStockError struct {
	// SKU is the first sku that was short, when inventory said which.
	SKU string
}

func (e *OutOfStockError) Error() string {
	if e.SKU == "" {
		return "insufficient stock"
	}
	return "insufficient stock for sku " + e.SKU
}

// Unwrap makes an OutOfStockError an ErrConflict.
func (e *OutOfStockError) Unwrap() error { return ErrConflict }

// isTransient reports whether a failed neighbour call should be retried
// later rather than treated as an answer. Anything unclassified (a bug, a
// database error) is retried too: only a neighbour's explicit answer may
// change an order's course.
func isTransient(err error) bool {
	return !errors.Is(err, ErrConflict) && !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrNotFound)
}

// mayHaveLanded reports whether a failed call may have taken effect.
func mayHaveLanded(err error) bool {
	return !errors.Is(err, ErrUnavailable)
}
