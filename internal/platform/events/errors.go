package events

import "errors"

var (
	// ErrInvalidEvent means an event cannot be stored as given (bad subject,
	// id or payload); fixing the caller is the only remedy.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrDuplicateEvent means the outbox already holds an event with that id.
	// On PostgreSQL the transaction is aborted and must be rolled back.
	ErrDuplicateEvent = errors.New("duplicate event id")
	// ErrInvalidConfig means a consumer or stream configuration is unusable.
	ErrInvalidConfig = errors.New("invalid events configuration")
)

// permanentError marks a handler failure that redelivery cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a malformed payload, a
// reference that can never resolve): a Consumer sends the message straight to
// the dead-letter stream instead of redelivering it. Permanent(nil) is nil.
// The mark survives further wrapping with %w.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
