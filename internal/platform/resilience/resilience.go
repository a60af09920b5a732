// Package resilience is how a service calls another: one pooled,
// load-balanced gRPC connection per target, every call with a deadline,
// bounded retries with jittered backoff for idempotent calls, and a circuit
// breaker per target so a dead neighbour fails fast instead of piling up
// waiting calls. There is no unbounded retry loop anywhere.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking, enabled in the service config
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// Options tune a client connection. The zero value is usable.
type Options struct {
	// Timeout is the deadline given to a call whose context has none (a
	// propagated deadline always wins when it is sooner). Default 5s.
	Timeout time.Duration
	// Attempts bounds tries of one call, the first included. Default 3.
	Attempts int
	// BaseBackoff is the first retry delay; each retry doubles it, with full
	// jitter. Default 50ms.
	BaseBackoff time.Duration
	// BreakerFailures consecutive failures open the breaker. Default 5.
	BreakerFailures uint32
	// BreakerOpen is how long an open breaker refuses calls before letting
	// one through to probe. Default 5s.
	BreakerOpen time.Duration
	// Registerer receives client and breaker metrics; nil means none.
	Registerer prometheus.Registerer
	// Interceptors run innermost, after retries (e.g. a service token).
	Interceptors []grpc.UnaryClientInterceptor
	// DialOptions are added to the connection's, e.g. the resolver of a
	// service registry (registry.WithResolver) for mercato:/// targets.
	DialOptions []grpc.DialOption
}

func (o Options) WithDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	if o.BaseBackoff == 0 {
		o.BaseBackoff = 50 * time.Millisecond
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpen == 0 {
		o.BreakerOpen = 5 * time.Second
	}
	return o
}

// Reconnect is how soon a connection to an instance that went away is
// tried again: from 100 ms, growing to 5 s. An instance that restarts is
// back in about that long, and grpc-go's default waits a second.
var Reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// ErrCircuitOpen is returned (as codes.Unavailable) while a target's breaker is open.
var ErrCircuitOpen = status.Error(codes.Unavailable, "circuit breaker open")

// Dial returns a connection to target: host:port, dns:///name:port for a
// Kubernetes headless service, or mercato:///<service> through a service
// registry (with its resolver in DialOptions). Calls are balanced
// round-robin over every instance the target resolves to, skipping those
// whose gRPC health says they are not serving (draining, not ready), so a
// retry lands on another instance.
// Every unary call gets a deadline, the request id and trace context, a
// circuit breaker, and retries when the failure is transient (Unavailable,
// or ResourceExhausted from a breaker or limiter).
//
// Retrying assumes the calls are idempotent: every mercato RPC that changes
// state takes an idempotency key or is keyed by order id, so a retried call
// whose first try did land changes nothing.
func Dial(name, target string, opts Options) (*grpc.ClientConn, error) {
	opts = opts.WithDefaults()
	breaker := gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:    name,
		Timeout: opts.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= opts.BreakerFailures
		},
		IsSuccessful: func(err error) bool { return !isFailureOfTarget(err) },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			breakerState.WithLabelValues(name).Set(float64(to))
		},
	})
	registerBreakerMetrics(opts.Registerer)
	breakerState.WithLabelValues(name).Set(float64(gobreaker.StateClosed))

	interceptors := []grpc.UnaryClientInterceptor{
		propagateRequestID,
		deadline(opts.Timeout),
		observability.UnaryClientTracing(nil),
	}
	if opts.Registerer != nil {
		interceptors = append(interceptors, observability.NewGRPCClientMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"target": name}, opts.Registerer)).UnaryClientInterceptor())
	}
	interceptors = append(interceptors, retry(opts.Attempts, opts.BaseBackoff), breakerInterceptor(breaker))
	interceptors = append(interceptors, opts.Interceptors...)

	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}}`),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithChainUnaryInterceptor(interceptors...),
		grpc.WithConnectParams(Reconnect),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s at %s: %w", name, target, err)
	}
	return conn, nil
}

// isFailureOfTarget tells whether err says the target is unwell (as opposed
// to a business answer such as NotFound, which is a healthy reply).
func isFailureOfTarget(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

func isRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

func retry(attempts int, base time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var err error
		for attempt := range attempts {
			if attempt > 0 {
				// Full jitter: spread retries of many callers over the window.
				backoff := base << (attempt - 1)
				wait := time.Duration(rand.Int64N(int64(backoff) + 1))
				timer := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
					return err
				case <-timer.C:
				}
			}
			err = invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || !isRetryable(err) || ctx.Err() != nil {
				return err
			}
		}
		return err
	}
}

func breakerInterceptor(cb *gobreaker.CircuitBreaker[any]) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		_, err := cb.Execute(func() (any, error) {
			return nil, invoker(ctx, method, req, reply, cc, opts...)
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return ErrCircuitOpen
		}
		return err
	}
}

func deadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func propagateRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if id := observability.RequestID(ctx); id != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

var breakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "mercato", Subsystem: "resilience", Name: "circuit_breaker_state",
	Help: "State of the circuit breaker per target: 0 closed, 1 half-open, 2 open.",
}, []string{"target"})

func registerBreakerMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	if err := reg.Register(breakerState); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			panic(err) // a programming error: two different metrics with one name
		}
	}
}
