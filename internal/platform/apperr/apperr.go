// Package apperr gives errors a kind (not found, invalid, conflict, …) and a
// message that is safe to show a client. Domain packages declare their
// sentinels with it; each transport has one mapper from kinds to its codes.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an error by what a caller can do about it.
type Kind int

// The kinds. Internal is the zero value: anything unclassified is masked.
const (
	Internal Kind = iota
	Invalid
	NotFound
	Conflict
	Unauthenticated
	Forbidden
	PreconditionFailed
	Unavailable
	TooManyRequests
	Unprocessable
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not_found"
	case Conflict:
		return "conflict"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case PreconditionFailed:
		return "precondition_failed"
	case Unavailable:
		return "unavailable"
	case TooManyRequests:
		return "too_many_requests"
	case Unprocessable:
		return "unprocessable"
	default:
		return "internal"
	}
}

// Error is an error with a kind and a client-safe message. Sentinels are
// *Error values compared with errors.Is, which matches on identity.
//
// The message is for people and free to change. What another service acts
// on travels as data beside it: Retryable, Cause and Metadata, which the
// transport's mapper turns into structured details.
type Error struct {
	Kind    Kind
	Message string
	// Retryable marks a refusal that changed nothing and that the same
	// call may get past later (an operation in progress, a concurrent
	// change): the caller should try again rather than take it as an
	// answer.
	Retryable bool
	// Cause names this particular error with a stable identifier (such as
	// "capture_in_progress") for callers that must tell it apart from
	// others of its kind. Empty for most errors.
	Cause string
	// Metadata is machine-readable detail of the error (such as the sku
	// that is out of stock), by name.
	Metadata map[string]string
}

// Option refines an Error made by New.
type Option func(*Error)

// Retryable marks the error as a refusal without effect that is worth
// retrying (see Error.Retryable).
func Retryable() Option { return func(e *Error) { e.Retryable = true } }

// WithCause names the error for callers (see Error.Cause).
func WithCause(cause string) Option { return func(e *Error) { e.Cause = cause } }

// WithMetadata adds one machine-readable detail (see Error.Metadata).
func WithMetadata(key, value string) Option {
	return func(e *Error) {
		if e.Metadata == nil {
			e.Metadata = map[string]string{}
		}
		e.Metadata[key] = value
	}
}

// New returns an error of kind k with a client-safe message.
func New(k Kind, message string, opts ...Option) *Error {
	e := &Error{Kind: k, Message: message}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Newf is New with formatting. The result is never a sentinel.
func Newf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Message }

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Public returns the client-safe message of err, or "" when err carries no
// kind (and must therefore be masked).
func Public(err error) (Kind, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, e.Message
	}
	return Internal, ""
}

// As returns the first *Error in err's chain, the one Public and KindOf
// read.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
