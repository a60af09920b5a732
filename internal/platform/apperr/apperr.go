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
type Error struct {
	Kind    Kind
	Message string
}

// New returns an error of kind k with a client-safe message.
func New(k Kind, message string) *Error { return &Error{Kind: k, Message: message} }

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
