package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking, enabled in the service config
	"google.golang.org/grpc/keepalive"

	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/resilience"
)

// API is a service's public API as the gateway serves it. The table of
// services gives one per service that has a public API; the gateway names
// no service itself.
type API struct {
	// Register adds the service's HTTP routes to the mux, calling it over
	// conn: the generated Register<Service>Handler.
	Register func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error
	// Statuses are the success statuses of methods that do not answer 200,
	// keyed by full method name.
	Statuses map[string]int
	// Retryable are the full names of methods safe to call again after an
	// UNAVAILABLE answer (reads); nothing else is ever retried.
	Retryable []string
	// Access says who may call the service's routes. A route no rule
	// covers is refused (see Rule).
	Access []Rule
}

// Upstream is one service behind the gateway.
type Upstream struct {
	// Name names the service in logs, readiness checks and errors, and
	// finds its OpenAPI document (<name>/v1/<name>.swagger.json in the
	// generated documents).
	Name string
	// Target is its gRPC target, e.g. "127.0.0.1:9101" or
	// "dns:///catalog:9090".
	Target string
	API    API
}

// upstreamPool holds one long-lived client connection per upstream. A
// connection balances calls round-robin over every address its target
// resolves to and, through client-side health checking, skips instances
// that report NOT_SERVING (draining or not ready).
type upstreamPool struct {
	conns   map[string]*grpc.ClientConn
	targets map[string]string
}

func dialUpstreams(upstreams []Upstream, extra ...grpc.DialOption) (*upstreamPool, error) {
	p := &upstreamPool{conns: map[string]*grpc.ClientConn{}, targets: map[string]string{}}
	for _, u := range upstreams {
		p.targets[u.Name] = u.Target
		serviceConfig, err := serviceConfigJSON(u.API.Retryable)
		if err != nil {
			_ = p.close()
			return nil, err
		}
		conn, err := grpc.NewClient(u.Target, append([]grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(serviceConfig),
			// Pings only while calls are in flight: the services keep
			// grpc-go's default enforcement policy, which answers idle
			// pings with GOAWAY.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
			// No client-side RPC metrics: each route is one RPC, measured
			// by the route's metrics here and by the service's own.
			grpc.WithChainUnaryInterceptor(markUpstreamCall, observability.UnaryClientTracing(propagator)),
			grpc.WithUserAgent("mercato-gateway"),
			grpc.WithConnectParams(resilience.Reconnect),
		}, extra...)...)
		if err != nil {
			_ = p.close()
			return nil, fmt.Errorf("%s upstream %q: %w", u.Name, u.Target, err)
		}
		// Connect now so the first request does not pay for it.
		conn.Connect()
		p.conns[u.Name] = conn
	}
	return p, nil
}

func (p *upstreamPool) conn(name string) *grpc.ClientConn { return p.conns[name] }

// readyCheck reports whether the upstream's connection is READY (at least
// one instance reachable and serving), waiting for it within ctx.
func (p *upstreamPool) readyCheck(name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		conn := p.conns[name]
		for {
			state := conn.GetState()
			switch state {
			case connectivity.Ready:
				return nil
			case connectivity.Idle:
				conn.Connect()
			case connectivity.Shutdown:
				return errors.New("connection closed")
			}
			if !conn.WaitForStateChange(ctx, state) {
				return fmt.Errorf("%s is %s", p.targets[name], strings.ToLower(state.String()))
			}
		}
	}
}

func (p *upstreamPool) close() error {
	var errs []error
	for name, c := range p.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// serviceConfigJSON is the gRPC service config of an upstream: round-robin
// over its instances, client-side health checking, and bounded retries
// with exponential backoff (jittered by grpc-go) for the idempotent methods.
func serviceConfigJSON(retryable []string) (string, error) {
	type methodName struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []methodName `json:"name"`
		RetryPolicy *retryPolicy `json:"retryPolicy,omitempty"`
	}
	cfg := struct {
		LoadBalancingConfig []map[string]struct{} `json:"loadBalancingConfig"`
		HealthCheckConfig   map[string]string     `json:"healthCheckConfig"`
		MethodConfig        []methodConfig        `json:"methodConfig,omitempty"`
	}{
		LoadBalancingConfig: []map[string]struct{}{{"round_robin": {}}},
		HealthCheckConfig:   map[string]string{"serviceName": ""},
	}
	if len(retryable) > 0 {
		mc := methodConfig{RetryPolicy: &retryPolicy{
			MaxAttempts: 3, InitialBackoff: "0.05s", MaxBackoff: "0.5s", BackoffMultiplier: 2,
			RetryableStatusCodes: []string{"UNAVAILABLE"},
		}}
		for _, full := range retryable {
			service, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
			if !ok {
				return "", fmt.Errorf("method name %q is not /service/method", full)
			}
			mc.Name = append(mc.Name, methodName{Service: service, Method: method})
		}
		cfg.MethodConfig = []methodConfig{mc}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("service config: %w", err)
	}
	return string(b), nil
}

// markUpstreamCall records that the request reached an upstream, so the
// error handler can tell a service's answer from the gateway's own
// request-decoding errors.
func markUpstreamCall(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if ex := exchangeFrom(ctx); ex != nil {
		ex.upstreamCalled = true
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}
