package resilience

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// flakyHealth answers Check with the errors queued in fail, then SERVING.
type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	calls       atomic.Int32
	fail        []codes.Code
	sawDeadline atomic.Bool
}

func (f *flakyHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	n := int(f.calls.Add(1))
	if _, ok := ctx.Deadline(); ok {
		f.sawDeadline.Store(true)
	}
	if n <= len(f.fail) {
		return nil, status.Error(f.fail[n-1], "scripted failure")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func start(t *testing.T, h healthpb.HealthServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, h)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func client(t *testing.T, addr string, opts Options) healthpb.HealthClient {
	t.Helper()
	conn, err := Dial("test", addr, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func TestRetriesTransientFailuresWithinBound(t *testing.T) {
	srv := &flakyHealth{fail: []codes.Code{codes.Unavailable, codes.Unavailable}}
	c := client(t, start(t, srv), Options{Attempts: 3, BaseBackoff: time.Millisecond})

	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(3), srv.calls.Load())
	require.True(t, srv.sawDeadline.Load(), "a call without a deadline must get one")
}

func TestGivesUpAfterAttempts(t *testing.T) {
	srv := &flakyHealth{fail: []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}}
	c := client(t, start(t, srv), Options{Attempts: 3, BaseBackoff: time.Millisecond, BreakerFailures: 100})

	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Equal(t, int32(3), srv.calls.Load())
}

func TestDoesNotRetryBusinessErrors(t *testing.T) {
	srv := &flakyHealth{fail: []codes.Code{codes.NotFound}}
	c := client(t, start(t, srv), Options{BaseBackoff: time.Millisecond})

	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Equal(t, int32(1), srv.calls.Load())
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	fail := make([]codes.Code, 10)
	for i := range fail {
		fail[i] = codes.Internal
	}
	srv := &flakyHealth{fail: fail}
	c := client(t, start(t, srv), Options{BreakerFailures: 3, BreakerOpen: time.Hour})

	for range 3 {
		_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.Equal(t, codes.Internal, status.Code(err))
	}
	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.ErrorIs(t, err, ErrCircuitOpen)
	require.Equal(t, int32(3), srv.calls.Load(), "an open breaker must not reach the target")
}

func TestBreakerStateIsExported(t *testing.T) {
	srv := &flakyHealth{fail: []codes.Code{codes.Internal}}
	reg := prometheus.NewRegistry()
	conn, err := Dial("metered", start(t, srv), Options{BreakerFailures: 1, BreakerOpen: time.Hour, Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := healthpb.NewHealthClient(conn)

	// state reads the breaker's gauge for this target as reg exposes it.
	state := func() string {
		t.Helper()
		families, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() != "mercato_resilience_circuit_breaker_state" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "target" && l.GetValue() == "metered" {
						return strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64)
					}
				}
			}
		}
		return "missing"
	}
	require.Equal(t, "0", state(), "a new breaker is closed")
	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Internal, status.Code(err))
	require.Equal(t, "2", state(), "one failure opens this breaker")
}

func TestRespectsCallerDeadline(t *testing.T) {
	hs := health.NewServer()
	c := client(t, start(t, hs), Options{Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err))
}
