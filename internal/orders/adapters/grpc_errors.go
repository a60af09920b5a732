package adapters

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/orders/app"
)

// classify wraps a failed call's error in the app's classification, so the
// saga can tell an answer from a failure. Authentication failures count as
// unavailability: they are an operator's problem (a wrong service secret),
// and no order should be rejected because of one.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var class error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		class = app.ErrOutcomeUnknown
	default:
		switch status.Code(err) {
		case codes.Unavailable, codes.ResourceExhausted, codes.Unauthenticated, codes.PermissionDenied:
			class = app.ErrUnavailable
		case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted, codes.OutOfRange:
			class = app.ErrConflict
			// A conflict that asks to be retried (an operation in
			// progress, a concurrent change) is a refusal without effect,
			// not an answer about the order.
			if strings.Contains(strings.ToLower(status.Convert(err).Message()), "retry") {
				class = app.ErrUnavailable
			}
		case codes.InvalidArgument:
			class = app.ErrInvalidRequest
		case codes.NotFound:
			class = app.ErrNotFound
		default: // DeadlineExceeded, Canceled, Internal, Unknown, Unimplemented, DataLoss
			class = app.ErrOutcomeUnknown
		}
	}
	return fmt.Errorf("%s: %w: %w", op, class, err)
}
