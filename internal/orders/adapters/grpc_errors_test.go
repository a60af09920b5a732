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
)

// TestClassify checks how neighbours' answers (as their services really
// word them) become the classes the saga acts on.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), app.ErrUnavailable},
		{"circuit open", status.Error(codes.Unavailable, "circuit breaker open"), app.ErrUnavailable},
		{"overloaded", status.Error(codes.ResourceExhausted, "too many requests"), app.ErrUnavailable},
		{"wrong service secret", status.Error(codes.Unauthenticated, "invalid or expired access token"), app.ErrUnavailable},
		{"not a service", status.Error(codes.PermissionDenied, "only mercato services may call this"), app.ErrUnavailable},
		{"deadline", status.Error(codes.DeadlineExceeded, "deadline exceeded"), app.ErrOutcomeUnknown},
		{"local deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), app.ErrOutcomeUnknown},
		{"internal", status.Error(codes.Internal, "internal error"), app.ErrOutcomeUnknown},
		{"invalid transition", status.Error(codes.AlreadyExists, "reservation has expired"), app.ErrConflict},
		{"restock instead", status.Error(codes.AlreadyExists, "reservation is committed; restock the order instead"), app.ErrConflict},
		{"operation in progress", status.Error(codes.AlreadyExists, "payment has a void in progress; retry the void"), app.ErrUnavailable},
		{"concurrent change", status.Error(codes.AlreadyExists, "payment is being changed concurrently, retry"), app.ErrUnavailable},
		{"invalid", status.Error(codes.InvalidArgument, "amount_cents must be at most 100000000"), app.ErrInvalidRequest},
		{"not found", status.Error(codes.NotFound, "reservation not found"), app.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("op", tt.err)
			require.ErrorIs(t, got, tt.want)
			for _, other := range []error{app.ErrUnavailable, app.ErrOutcomeUnknown, app.ErrConflict, app.ErrInvalidRequest, app.ErrNotFound} {
				if !errors.Is(other, tt.want) {
					require.False(t, errors.Is(got, other), "%v is not %v", got, other)
				}
			}
		})
	}
	require.NoError(t, classify("op", nil))

	capture := classifyChange("void", status.Error(codes.AlreadyExists, "payment has a capture in progress; retry the capture"))
	require.ErrorIs(t, capture, app.ErrCaptureInProgress)
	require.ErrorIs(t, capture, app.ErrUnavailable)
	require.NotErrorIs(t, classifyChange("void", status.Error(codes.AlreadyExists, "payment is voided")), app.ErrCaptureInProgress)

	unknown := classifyToken("check payment token", status.Error(codes.InvalidArgument, "unknown payment token"))
	require.ErrorIs(t, unknown, app.ErrPaymentTokenRejected)
	require.ErrorIs(t, unknown, app.ErrInvalidRequest)
	require.NotErrorIs(t, classifyToken("check payment token", status.Error(codes.InvalidArgument, "currency must be one of EUR")),
		app.ErrPaymentTokenRejected)
	require.ErrorIs(t, classifyToken("check payment token", status.Error(codes.Unavailable, "circuit breaker open")), app.ErrUnavailable)
	require.NoError(t, classifyToken("check payment token", nil))
}

func TestOutOfStockSKU(t *testing.T) {
	for msg, want := range map[string]struct {
		sku   string
		short bool
	}{
		"insufficient stock for sku SKU-MUG":                   {"SKU-MUG", true},
		"Insufficient stock for SKU abc.1":                     {"abc.1", true},
		"insufficient stock":                                   {"", true},
		"order already has a reservation with different lines": {"", false},
	} {
		sku, short := outOfStockSKU(msg)
		require.Equal(t, want.sku, sku, msg)
		require.Equal(t, want.short, short, msg)
	}
}
