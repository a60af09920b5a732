package app

import "github.com/mercato-dev/mercato/internal/platform/apperr"

// ErrBusy is a release that kept losing races with reservations for the
// same order; retrying it is safe (RetryInfo on the wire).
var ErrBusy = apperr.New(apperr.Unavailable, "reservation is being changed concurrently, retry", apperr.Retryable())
