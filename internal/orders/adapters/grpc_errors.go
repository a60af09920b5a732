package adapters

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// Causes of the neighbours' errors orders tells apart, as inventory and
// payments name them in their ErrorInfo (server.CauseKey). Messages are
// for people and are never read.
const (
	causeOutOfStock          = "out_of_stock"
	causeUnknownPaymentToken = "unknown_payment_token"
	causeCaptureInProgress   = "capture_in_progress"
	// metadataSKU is the ErrorInfo metadata naming the sku out of stock.
	metadataSKU = "sku"
)

// errorDetails is what a neighbour's error says besides its code.
type errorDetails struct {
	// retry: the error carries RetryInfo, so the refusal changed nothing
	// and asks to be retried.
	retry bool
	// cause and metadata come from the mercato ErrorInfo.
	cause    string
	metadata map[string]string
}

func detailsOf(err error) errorDetails {
	var d errorDetails
	for _, detail := range status.Convert(err).Details() {
		switch detail := detail.(type) {
		case *errdetails.RetryInfo:
			d.retry = true
		case *errdetails.ErrorInfo:
			if detail.GetDomain() == server.ErrorDomain {
				d.cause, d.metadata = detail.GetMetadata()[server.CauseKey], detail.GetMetadata()
			}
		}
	}
	return d
}

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
			if detailsOf(err).retry {
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
