package domain

import (
	"errors"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// Errors of the orders domain. Every kinded one carries a client-safe
// message that names the offending field, so a caller knows what to fix.
var (
	ErrNotFound = apperr.New(apperr.NotFound, "order not found")

	ErrIdempotencyKeyRequired = apperr.New(apperr.Invalid, "Idempotency-Key header is required")
	ErrIdempotencyKeyReused   = apperr.New(apperr.Unprocessable,
		"Idempotency-Key was already used with a different request")

	ErrCartEmpty           = apperr.New(apperr.Invalid, "cart is empty")
	ErrTooManyItems        = apperr.New(apperr.Invalid, "items must have at most 50 distinct products")
	ErrMixedCurrencies     = apperr.New(apperr.Invalid, "all items must be priced in the same currency")
	ErrTotalTooLarge       = apperr.New(apperr.Invalid, "order total too large")
	ErrPaymentTokenEmpty   = apperr.New(apperr.Invalid, "payment_token is required")
	ErrPaymentToken        = apperr.New(apperr.Invalid, "payment_token is malformed")
	ErrPaymentTokenUnknown = apperr.New(apperr.Invalid,
		"payment_token is not a card the payment provider knows")

	ErrAddressRequired   = apperr.New(apperr.Invalid, "shipping_address is required")
	ErrAddressName       = apperr.New(apperr.Invalid, "shipping_address.name must be 1 to 100 characters")
	ErrAddressLine1      = apperr.New(apperr.Invalid, "shipping_address.line1 must be 1 to 200 characters")
	ErrAddressLine2      = apperr.New(apperr.Invalid, "shipping_address.line2 must be at most 200 characters")
	ErrAddressCity       = apperr.New(apperr.Invalid, "shipping_address.city must be 1 to 100 characters")
	ErrAddressPostalCode = apperr.New(apperr.Invalid,
		"shipping_address.postal_code must be 1 to 20 letters, digits, spaces or '-'")
	ErrAddressCountry = apperr.New(apperr.Invalid,
		"shipping_address.country must be a two-letter upper-case ISO 3166-1 code")
	ErrAddressText = apperr.New(apperr.Invalid,
		"shipping_address fields must be valid UTF-8 without control characters")

	ErrCancelReason = apperr.New(apperr.Invalid,
		"reason must be at most 200 characters of valid UTF-8 without control characters")

	ErrAlreadyCancelled      = apperr.New(apperr.Conflict, "order is already cancelled")
	ErrRejectedCannotCancel  = apperr.New(apperr.Conflict, "order was rejected and cannot be cancelled")
	ErrCancellationRequested = apperr.New(apperr.Conflict, "cancellation already requested")
	ErrConcurrentUpdates     = apperr.New(apperr.Conflict, "order is being modified concurrently, retry")
	ErrNeedsAttention        = apperr.New(apperr.Conflict,
		"order needs attention: its payment could not be returned, support resolves it")
)

// ErrConcurrentModification is what an event store returns when an append
// was based on a version that is no longer the latest. It never reaches a
// client: the caller reloads the order and decides again.
var ErrConcurrentModification = errors.New("order was modified concurrently")

// ErrInvalidTransition means an event does not fit the order's state: a
// programming error or a corrupted stream, never a client's fault.
var ErrInvalidTransition = errors.New("event does not apply to the order's state")

// itemError names the offending item line in a client-safe message.
func itemError(format string, args ...any) error {
	return apperr.Newf(apperr.Invalid, format, args...)
}

// UnknownProductError is the client-safe error for an item whose product
// the catalog does not know.
func UnknownProductError(productID string) error {
	return apperr.Newf(apperr.Invalid, "unknown product %s", productID)
}
