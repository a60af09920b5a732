package domain

import "github.com/mercato-dev/mercato/internal/platform/apperr"

// Errors of the catalog. Every one carries a kind and a client-safe message
// that names the offending field, so a caller knows what to fix.
var (
	ErrNotFound      = apperr.New(apperr.NotFound, "product not found")
	ErrSKUTaken      = apperr.New(apperr.Conflict, "sku already exists")
	ErrETagMismatch  = apperr.New(apperr.PreconditionFailed, "product was modified (ETag mismatch)")
	ErrNothingToDo   = apperr.New(apperr.Invalid, "nothing to update")
	ErrConcurrentMod = apperr.New(apperr.Conflict, "product is being modified concurrently, retry")

	ErrSKURequired   = apperr.New(apperr.Invalid, "sku is required")
	ErrSKUTooLong    = apperr.New(apperr.Invalid, "sku must be at most 64 characters")
	ErrSKUCharacters = apperr.New(apperr.Invalid, "sku may contain only letters, digits, '.', '_' and '-'")

	ErrNameRequired = apperr.New(apperr.Invalid, "name is required")
	ErrNameTooLong  = apperr.New(apperr.Invalid, "name must be at most 200 characters")
	ErrNameControl  = apperr.New(apperr.Invalid, "name must not contain control characters")

	ErrDescriptionTooLong = apperr.New(apperr.Invalid, "description must be at most 5000 characters")
	ErrNotUTF8            = apperr.New(apperr.Invalid, "text fields must be valid UTF-8")

	ErrPriceNotPositive = apperr.New(apperr.Invalid, "price_cents must be greater than 0")
	ErrPriceTooHigh     = apperr.New(apperr.Invalid, "price_cents must be at most 100000000")

	ErrCurrencyUnknown = apperr.New(apperr.Invalid,
		"currency must be one of AUD, CAD, CHF, DKK, EUR, GBP, JPY, NOK, PLN, SEK, USD")

	ErrTooManyCategories = apperr.New(apperr.Invalid, "categories must have at most 10 entries")
	ErrCategoryInvalid   = apperr.New(apperr.Invalid,
		"categories entries must be 1 to 50 characters of lower-case letters, digits and '-'")

	ErrImageURLTooLong = apperr.New(apperr.Invalid, "image_url must be at most 2048 characters")
	ErrImageURLInvalid = apperr.New(apperr.Invalid, "image_url must be empty or an absolute http or https URL")
)
