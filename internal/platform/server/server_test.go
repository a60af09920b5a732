package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLifecycleHealthReadinessAndGracefulStop(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	srv, err := server.New("svc", server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}, logger, observability.NewRegistry())
	require.NoError(t, err)

	dependencyDown := errors.New("database unreachable")
	var down atomic.Bool
	down.Store(true)
	check := make(chan error, 1)
	srv.AddCheck("database", func(context.Context) error {
		if down.Load() {
			return dependencyDown
		}
		return nil
	})

	componentStopped := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		check <- srv.Run(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			close(componentStopped)
			return nil
		})
	}()

	base := "http://" + srv.HTTPAddr()
	require.Eventually(t, func() bool { code, _ := get(t, base+"/healthz"); return code == http.StatusOK }, 5*time.Second, 10*time.Millisecond)
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "database: database unreachable")

	down.Store(false)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "go_goroutines")

	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	health := grpc_health_v1.NewHealthClient(conn)
	require.Eventually(t, func() bool {
		resp, err := health.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING
	}, 5*time.Second, 10*time.Millisecond)

	cancel()
	select {
	case err := <-check:
		require.NoError(t, err, "a graceful stop returns nil")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case <-componentStopped:
	default:
		t.Fatal("components are stopped before Run returns")
	}
}

func TestStatusMapsKindsAndMasksTheRest(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{apperr.New(apperr.NotFound, "product not found"), codes.NotFound, "product not found"},
		{apperr.New(apperr.Invalid, "price_cents must be greater than 0"), codes.InvalidArgument, "price_cents must be greater than 0"},
		{apperr.New(apperr.Conflict, "sku already exists"), codes.AlreadyExists, "sku already exists"},
		{apperr.New(apperr.PreconditionFailed, "etag mismatch"), codes.FailedPrecondition, "etag mismatch"},
		{apperr.New(apperr.TooManyRequests, "slow down"), codes.ResourceExhausted, "slow down"},
		{errors.New("pq: password authentication failed for user app"), codes.Internal, "internal error"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
	} {
		st := server.Status(tc.err)
		require.Equal(t, tc.code, st.Code(), tc.err.Error())
		require.Equal(t, tc.msg, st.Message())
	}
	// The kind also travels as an ErrorInfo reason, for statuses gRPC has no code for.
	st := server.Status(apperr.New(apperr.Unprocessable, "key reused"))
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Len(t, st.Details(), 1)
	require.Contains(t, status.Convert(st.Err()).Details()[0].(interface{ GetReason() string }).GetReason(), "unprocessable")
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := server.Config{GRPCAddr: "nohostport", ShutdownTimeout: -1}.Validate()
	require.ErrorContains(t, err, `listen address "nohostport" is not host:port`)
	require.ErrorContains(t, err, "HTTP listen address is empty")
	require.ErrorContains(t, err, "shutdown timeout must not be negative")
}

func TestEveryCallsWorkOnEachTickUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	calls := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- server.Every(time.Millisecond, func(ctx context.Context) {
			select {
			case calls <- struct{}{}:
			case <-ctx.Done():
			}
		})(ctx)
	}()
	for range 3 {
		<-calls
	}
	cancel()
	require.NoError(t, <-done, "a cancelled component returns nil")
}
