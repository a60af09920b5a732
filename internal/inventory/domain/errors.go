package domain

import (
	"fmt"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// CauseOutOfStock names an out-of-stock refusal (apperr.Cause, the "cause"
// of the ErrorInfo on the wire), and MetadataSKU the metadata that says
// which sku was short. Both are part of the API: the orders saga rejects
// an order on them.
const (
	CauseOutOfStock = "out_of_stock"
	MetadataSKU     = "sku"
)

// Errors of the inventory. Every one carries a kind and a client-safe
// message; the saga matches them with errors.Is or by kind.
var (
	ErrSKURequired   = apperr.New(apperr.Invalid, "sku is required")
	ErrSKUTooLong    = apperr.New(apperr.Invalid, "sku must be at most 64 characters")
	ErrSKUCharacters = apperr.New(apperr.Invalid, "sku may contain only letters, digits, '.', '_' and '-'")

	ErrOnHandRange = apperr.New(apperr.Invalid, "on_hand must be between 0 and 1000000")

	ErrOrderIDRequired   = apperr.New(apperr.Invalid, "order_id is required")
	ErrOrderIDTooLong    = apperr.New(apperr.Invalid, "order_id must be at most 64 characters")
	ErrOrderIDCharacters = apperr.New(apperr.Invalid, "order_id may contain only letters, digits, '.', '_', ':' and '-'")

	ErrNoLines       = apperr.New(apperr.Invalid, "lines must not be empty")
	ErrTooManyLines  = apperr.New(apperr.Invalid, "lines must have at most 50 entries")
	ErrQuantityRange = apperr.New(apperr.Invalid, "quantity must be between 1 and 1000 per sku")
	ErrTTLRange      = apperr.New(apperr.Invalid, "ttl_seconds must be between 0 and 86400")

	// ErrOutOfStock matches (errors.Is) every OutOfStockError.
	ErrOutOfStock = apperr.New(apperr.Conflict, "insufficient stock", apperr.WithCause(CauseOutOfStock))

	ErrReservationNotFound = apperr.New(apperr.NotFound, "reservation not found")
	// ErrLinesDiffer: the order id already has a reservation for other lines.
	ErrLinesDiffer = apperr.New(apperr.Conflict, "order already has a reservation with different lines")

	ErrReservationReleased  = apperr.New(apperr.Conflict, "reservation is released")
	ErrReservationExpired   = apperr.New(apperr.Conflict, "reservation has expired")
	ErrReservationCommitted = apperr.New(apperr.Conflict, "reservation is committed; restock the order instead")
	ErrReservationRestocked = apperr.New(apperr.Conflict, "reservation is restocked")
	ErrNotCommitted         = apperr.New(apperr.Conflict, "reservation is not committed")
)

// OutOfStockError says which sku could not be held. It is ErrOutOfStock
// for errors.Is and its client message names the sku.
type OutOfStockError struct{ SKU string }

func (e *OutOfStockError) Error() string { return "insufficient stock for sku " + e.SKU }

// Unwrap exposes a kinded error with the sku in its message and metadata
// first (what apperr.Public finds) and the sentinel second (what
// errors.Is matches).
func (e *OutOfStockError) Unwrap() []error {
	return []error{
		apperr.New(apperr.Conflict, e.Error(), apperr.WithCause(CauseOutOfStock), apperr.WithMetadata(MetadataSKU, e.SKU)),
		ErrOutOfStock,
	}
}

// BelowReservedError is SetStock asking for less on hand than is reserved.
type BelowReservedError struct{ Reserved int32 }

// ErrBelowReserved matches (errors.Is) every BelowReservedError.
var ErrBelowReserved = apperr.New(apperr.Conflict, "on_hand cannot be below reserved stock")

func (e *BelowReservedError) Error() string {
	return fmt.Sprintf("on_hand cannot be below reserved stock (%d reserved)", e.Reserved)
}

// Unwrap works as OutOfStockError's does.
func (e *BelowReservedError) Unwrap() []error {
	return []error{apperr.New(apperr.Conflict, e.Error()), ErrBelowReserved}
}
