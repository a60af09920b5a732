package adapters

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// sent is err as a mercato service sends it: through the shared error
// mapper, with its ErrorInfo and, when retryable, RetryInfo.
func sent(kind apperr.Kind, msg string, opts ...apperr.Option) error {
	return server.Status(apperr.New(kind, msg, opts...)).Err()
}

// TestClassify checks how neighbours' answers (as their services really
// send them) become the classes the saga acts on.
func TestClassify(t *testing.T) {
	retryable := apperr.Retryable()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), app.ErrUnavailable},
		{"circuit open", status.Error(codes.Unavailable, "circuit breaker open"), app.ErrUnavailable},
		{"overloaded", status.Error(codes.ResourceExhausted, "too many requests"), app.ErrUnavailable},
		{"wrong service secret", sent(apperr.Unauthenticated, "invalid or expired access token"), app.ErrUnavailable},
		{"not a service", sent(apperr.Forbidden, "only mercato services may call this"), app.ErrUnavailable},
		{"deadline", status.Error(codes.DeadlineExceeded, "deadline exceeded"), app.ErrOutcomeUnknown},
		{"local deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), app.ErrOutcomeUnknown},
		{"internal", status.Error(codes.Internal, "internal error"), app.ErrOutcomeUnknown},
		{"invalid transition", sent(apperr.Conflict, "reservation has expired"), app.ErrConflict},
		{"restock instead", sent(apperr.Conflict, "reservation is committed; restock the order instead"), app.ErrConflict},
		{"operation in progress", sent(apperr.Conflict, "payment has a void in progress; retry the void", retryable), app.ErrUnavailable},
		{"concurrent change", sent(apperr.Conflict, "payment is being changed concurrently, retry", retryable), app.ErrUnavailable},
		{"busy", sent(apperr.Unavailable, "reservation is being changed concurrently, retry", retryable), app.ErrUnavailable},
		{"invalid", sent(apperr.Invalid, "amount_cents must be at most 100000000"), app.ErrInvalidRequest},
		{"not found", sent(apperr.NotFound, "reservation not found"), app.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireClass(t, classify("op", tt.err), tt.want)
		})
	}
	require.NoError(t, classify("op", nil))

	capture := classifyChange("void", sent(apperr.Conflict, "payment has a capture in progress; retry the capture",
		retryable, apperr.WithCause(causeCaptureInProgress)))
	require.ErrorIs(t, capture, app.ErrCaptureInProgress)
	require.ErrorIs(t, capture, app.ErrUnavailable)
	require.NotErrorIs(t, classifyChange("void", sent(apperr.Conflict, "payment is voided")), app.ErrCaptureInProgress)
	require.NotErrorIs(t, classifyChange("void", sent(apperr.Conflict, "payment has a void in progress; retry the void", retryable,
		apperr.WithCause("void_in_progress"))), app.ErrCaptureInProgress)

	unknown := classifyToken("check payment token", sent(apperr.Invalid, "unknown payment token",
		apperr.WithCause(causeUnknownPaymentToken)))
	require.ErrorIs(t, unknown, app.ErrPaymentTokenRejected)
	require.ErrorIs(t, unknown, app.ErrInvalidRequest)
	require.NotErrorIs(t, classifyToken("check payment token", sent(apperr.Invalid, "currency must be one of EUR")),
		app.ErrPaymentTokenRejected)
	require.ErrorIs(t, classifyToken("check payment token", status.Error(codes.Unavailable, "circuit breaker open")), app.ErrUnavailable)
	require.NoError(t, classifyToken("check payment token", nil))
}

// requireClass checks that got is want and none of the other classes.
func requireClass(t *testing.T, got, want error) {
	t.Helper()
	require.ErrorIs(t, got, want)
	for _, other := range []error{app.ErrUnavailable, app.ErrOutcomeUnknown, app.ErrConflict, app.ErrInvalidRequest, app.ErrNotFound} {
		if !errors.Is(other, want) {
			require.False(t, errors.Is(got, other), "%v is not %v", got, other)
		}
	}
}

// TestClassifyReadsDetailsNotMessages checks that how an error is handled
// (and so how money moves) depends on its code and structured details
// only: rewording a message changes nothing, and the word "retry" in a
// message means nothing without RetryInfo.
func TestClassifyReadsDetailsNotMessages(t *testing.T) {
	for _, msg := range []string{
		"payment has a void in progress; retry the void",
		"a void is under way, come back later",
		"",
	} {
		requireClass(t, classify("op", sent(apperr.Conflict, msg, apperr.Retryable())), app.ErrUnavailable)
		requireClass(t, classify("op", sent(apperr.Conflict, msg)), app.ErrConflict)
	}
	requireClass(t, classify("op", status.Error(codes.AlreadyExists, "please retry")), app.ErrConflict)

	capture := func(msg string) error {
		return sent(apperr.Conflict, msg, apperr.Retryable(), apperr.WithCause(causeCaptureInProgress))
	}
	require.ErrorIs(t, classifyChange("void", capture("payment has a capture in progress; retry the capture")), app.ErrCaptureInProgress)
	require.ErrorIs(t, classifyChange("void", capture("capturing, hold on")), app.ErrCaptureInProgress)
	require.NotErrorIs(t, classifyChange("void", status.Error(codes.AlreadyExists, "payment has a capture in progress")),
		app.ErrCaptureInProgress)

	token := func(msg string) error { return sent(apperr.Invalid, msg, apperr.WithCause(causeUnknownPaymentToken)) }
	require.ErrorIs(t, classifyToken("authorize", token("unknown payment token")), app.ErrPaymentTokenRejected)
	require.ErrorIs(t, classifyToken("authorize", token("card not on file")), app.ErrPaymentTokenRejected)
	require.NotErrorIs(t, classifyToken("authorize", status.Error(codes.InvalidArgument, "unknown payment token")),
		app.ErrPaymentTokenRejected)
}

// TestOutOfStockFromDetails checks that the short sku comes from the
// ErrorInfo, whatever the message says.
func TestOutOfStockFromDetails(t *testing.T) {
	inv := NewInventoryGRPCClient(nil)
	for _, tt := range []struct {
		name  string
		err   error
		sku   string
		short bool
	}{
		{"named sku", sent(apperr.Conflict, "insufficient stock for sku SKU-MUG",
			apperr.WithCause(causeOutOfStock), apperr.WithMetadata(metadataSKU, "SKU-MUG")), "SKU-MUG", true},
		{"reworded", sent(apperr.Conflict, "we ran out",
			apperr.WithCause(causeOutOfStock), apperr.WithMetadata(metadataSKU, "abc.1")), "abc.1", true},
		{"no sku", sent(apperr.Conflict, "insufficient stock", apperr.WithCause(causeOutOfStock)), "", true},
		{"other conflict", sent(apperr.Conflict, "order already has a reservation with different lines"), "", false},
		{"message only", status.Error(codes.AlreadyExists, "insufficient stock for sku SKU-MUG"), "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := inv.reserveError(tt.err)
			var short *app.OutOfStockError
			require.Equal(t, tt.short, errors.As(err, &short), "%v", err)
			if tt.short {
				require.Equal(t, tt.sku, short.SKU)
			}
			require.ErrorIs(t, err, app.ErrConflict)
		})
	}
}
