package app

import "github.com/mercato-dev/mercato/internal/platform/pagination"

// Errors of the notifications' use cases.
var (
	ErrInvalidPageToken = pagination.ErrInvalidPageToken
	ErrPageSize         = pagination.ErrPageSize
)
