package domain

import "errors"

// ErrMalformedEvent means an event's payload cannot be turned into a
// notification (not JSON, no user). Redelivering it cannot help.
var ErrMalformedEvent = errors.New("malformed event")
