package server_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// TestStatusCarriesRetryAndCauseAsDetails checks that what a calling
// service acts on (may it retry, which error is it) travels as structured
// details over the wire, not in the message.
func TestStatusCarriesRetryAndCauseAsDetails(t *testing.T) {
	busy := apperr.New(apperr.Conflict, "payment has a capture in progress; retry the capture",
		apperr.Retryable(), apperr.WithCause("capture_in_progress"), apperr.WithMetadata("operation", "capture"))
	st := status.Convert(server.Status(fmt.Errorf("void: %w", busy)).Err()) // as the caller decodes it
	require.Equal(t, codes.AlreadyExists, st.Code())
	require.Equal(t, "payment has a capture in progress; retry the capture", st.Message())
	var (
		info  *errdetails.ErrorInfo
		retry *errdetails.RetryInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	require.NotNil(t, info)
	require.Equal(t, "conflict", info.GetReason())
	require.Equal(t, server.ErrorDomain, info.GetDomain())
	require.Equal(t, map[string]string{server.CauseKey: "capture_in_progress", "operation": "capture"}, info.GetMetadata())
	require.NotNil(t, retry, "a retryable error carries RetryInfo")

	plain := status.Convert(server.Status(apperr.New(apperr.Conflict, "payment is voided")).Err())
	require.Len(t, plain.Details(), 1, "no RetryInfo on an answer")
	require.Empty(t, plain.Details()[0].(*errdetails.ErrorInfo).GetMetadata())
}
