package app

import (
	"errors"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// Errors of the catalog's use cases, beside the domain's.
var (
	ErrInvalidPageToken = pagination.ErrInvalidPageToken
	ErrPageSize         = pagination.ErrPageSize
	ErrQueryTooLong     = apperr.New(apperr.Invalid, "q must be at most 200 characters")
	ErrQueryCharacters  = apperr.New(apperr.Invalid, "q must be valid UTF-8 without control characters")
	ErrCategoryFilter   = apperr.New(apperr.Invalid,
		"category must be 1 to 50 characters of lower-case letters, digits and '-'")
	ErrTooManyIDs = apperr.New(apperr.Invalid, "ids must have at most 100 entries")
)

// ErrVersionConflict is what a ProductRepository returns when the stored
// product is no longer at the version the change was based on (or is gone).
// It never reaches a client: the use case retries or answers with a
// precondition failure.
var ErrVersionConflict = errors.New("product version changed")
