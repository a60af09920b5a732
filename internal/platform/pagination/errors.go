package pagination

import (
	"strconv"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
)

// Errors of a page request. Their messages name the API's page_token and
// page_size fields, which every list method shares.
var (
	// ErrInvalidPageToken means a token was not issued by Tokens.Issue with
	// this key for this list and scope, or was altered since.
	ErrInvalidPageToken = apperr.New(apperr.Invalid, "invalid page_token")
	// ErrPageSize means a requested page size is outside 1..MaxPageSize.
	ErrPageSize = apperr.New(apperr.Invalid, "page_size must be between 1 and "+strconv.Itoa(MaxPageSize))
)
