package domain

import "github.com/mercato-dev/mercato/internal/platform/apperr"

// Errors of the cart. Each carries a kind and a client-safe message that
// names the offending field, so a caller knows what to fix.
var (
	ErrProductIDRequired = apperr.New(apperr.Invalid, "product_id is required")
	ErrProductIDInvalid  = apperr.New(apperr.Invalid, "product_id must be a product id (a UUID)")
	ErrQuantityRange     = apperr.New(apperr.Invalid, "quantity must be between 0 and 99 (0 removes the item)")
	ErrCartFull          = apperr.New(apperr.Invalid, "cart is full (50 distinct items)")
	ErrProductNotFound   = apperr.New(apperr.NotFound, "product not found")
	ErrCatalogDown       = apperr.New(apperr.Unavailable, "product catalog is unavailable, retry later")
)
