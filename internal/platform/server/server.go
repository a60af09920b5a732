// Package server is the lifecycle every service process shares: a gRPC
// server and an admin HTTP listener (/healthz, /readyz, /metrics), the gRPC
// health protocol, background components, and a graceful drain with a
// deadline when the context is cancelled (SIGINT/SIGTERM in cmd/).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/registry"
)

// Config says where a service listens and how long it may take to stop.
type Config struct {
	// GRPCAddr is the gRPC listen address, e.g. ":9090" (port 0 picks one).
	GRPCAddr string
	// HTTPAddr is the admin HTTP listen address (health, metrics, and any
	// HTTP endpoints the service adds).
	HTTPAddr string
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	// Registry is the service registry the instance announces itself in
	// once it is ready, withdrawing first thing on drain (Server.Announce),
	// and whose resolver finds the services it calls. A zero Registry
	// (no Kind) means none: neighbours at fixed addresses.
	Registry registry.Config
	// InstanceID names the instance in the registry; the host name and
	// gRPC port by default.
	InstanceID string
	// AdvertiseHost is the host its callers reach it at: by default the
	// listen host, or this machine's first non-loopback address when it
	// listens on every interface.
	AdvertiseHost string
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	return c
}

// Validate reports every problem.
func (c Config) Validate() error {
	var p config.Problems
	p.Add(c.GRPCAddr == "", "gRPC listen address is empty")
	p.Add(c.HTTPAddr == "", "HTTP listen address is empty")
	p.Add(c.ShutdownTimeout < 0, "shutdown timeout must not be negative")
	if c.Registry.Kind != "" {
		p.Include("registry", c.Registry.WithDefaults().Validate())
	}
	for _, a := range []string{c.GRPCAddr, c.HTTPAddr} {
		if a != "" {
			_, _, err := net.SplitHostPort(a)
			p.Add(err != nil, "listen address %q is not host:port", a)
		}
	}
	return p.Err()
}

// Component is background work (an outbox relay, a consumer) that runs until
// ctx is cancelled and then returns nil; any other return stops the process.
type Component func(ctx context.Context) error

// Every is a component that calls work every interval, the first time one
// interval after it starts, until ctx is cancelled. work deals with its own
// failures (logs them; the next tick tries again): a periodic job that
// fails is never a reason to stop the process.
func Every(interval time.Duration, work func(ctx context.Context)) Component {
	return func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			work(ctx)
		}
	}
}

// Check reports whether a dependency needed to serve is usable.
type Check func(ctx context.Context) error

// Server is one service process. Register gRPC services on GRPC() and
// extra HTTP handlers with HandleHTTP before calling Run.
type Server struct {
	name    string
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	mux     *http.ServeMux
	grpcLis net.Listener
	httpLis net.Listener
	readiness
	announce Announce
}

// Announce makes the instance known to its callers (a service registry)
// once it is ready, and returns how to withdraw it. See Server.Announce.
type Announce func(ctx context.Context) (withdraw func(context.Context) error, err error)

// Announce sets how Run makes the instance known: once every readiness
// check passes, Run calls announce (retrying with a backoff while it
// fails); on drain it withdraws the instance first, before the gRPC server
// stops, so callers move away before a single call is refused.
func (s *Server) Announce(announce Announce) { s.announce = announce }

// New listens on both addresses at once (so a caller learns the real ports
// before Run) and builds the gRPC server with the shared interceptor chain:
// tracing, request id, metrics, panic recovery, error mapping, then extra
// (e.g. authentication).
func New(name string, cfg Config, logger *slog.Logger, reg *prometheus.Registry, extra ...grpc.UnaryServerInterceptor) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(context.Background(), "tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen gRPC: %w", err)
	}
	httpLis, err := lc.Listen(context.Background(), "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return nil, fmt.Errorf("listen HTTP: %w", err)
	}

	metrics := observability.NewGRPCServerMetrics(reg)
	unary := append([]grpc.UnaryServerInterceptor{
		requestIDUnary,
		metrics.UnaryServerInterceptor(),
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
			logger.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
			return status.Error(codes.Internal, "internal error")
		})),
		ErrorMapping(logger),
	}, extra...)
	gs := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor()),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	s := &Server{
		name: name, cfg: cfg, log: logger, grpc: gs, health: hs,
		mux: http.NewServeMux(), grpcLis: grpcLis, httpLis: httpLis,
		readiness: newReadiness(),
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	s.mux.Handle("GET /metrics", observability.MetricsHandler(reg))
	return s, nil
}

// advertised is the address callers reach a listener at: on host when
// given, else on the listener's own host unless that is every interface,
// then on this machine's first non-loopback address.
func advertised(host string, addr net.Addr) string {
	port := portOf(addr)
	if host != "" {
		return net.JoinHostPort(host, port)
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		return net.JoinHostPort(tcp.IP.String(), port)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipnet, ok := a.(*net.IPNet); ok && !ipnet.IP.IsLoopback() && ipnet.IP.To4() != nil {
				return net.JoinHostPort(ipnet.IP.String(), port)
			}
		}
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func portOf(addr net.Addr) string {
	_, port, _ := net.SplitHostPort(addr.String())
	return port
}

// GRPC returns the gRPC server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// HandleHTTP adds a handler to the admin HTTP listener.
func (s *Server) HandleHTTP(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// GRPCAddr is the address the gRPC server listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address the admin HTTP server listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Run serves until ctx is cancelled, then drains: the health status turns
// NOT_SERVING, in-flight RPCs and HTTP requests finish (forced after the
// shutdown timeout), and only then are the components stopped, so work
// accepted by an RPC can still be handed to them. Run returns the first
// error that stopped the process, or nil after a graceful stop.
func (s *Server) Run(ctx context.Context, components ...Component) error {
	httpSrv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	compCtx, stopComponents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopComponents()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve HTTP: %w", err)
		}
		return nil
	})
	for _, c := range components {
		g.Go(func() error { return c(compCtx) })
	}
	g.Go(func() error {
		s.updateHealth(gctx)
		return Every(healthInterval, s.updateHealth)(gctx)
	})
	announced := make(chan func(context.Context) error, 1)
	if s.announce != nil {
		g.Go(func() error {
			withdraw := s.announceWhenReady(gctx)
			announced <- withdraw
			return nil
		})
	} else {
		announced <- nil
	}
	g.Go(func() error {
		<-gctx.Done()
		s.log.InfoContext(ctx, "shutting down", "timeout", s.cfg.ShutdownTimeout.String())
		s.draining.Store(true)
		if withdraw := <-announced; withdraw != nil {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
			if err := withdraw(wctx); err != nil {
				s.log.WarnContext(ctx, "withdrawing from the registry failed", "error", err.Error())
			}
			cancel()
		}
		s.health.Shutdown()
		deadline, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()

		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-deadline.Done():
			s.log.WarnContext(ctx, "gRPC drain timed out, closing connections")
			s.grpc.Stop()
		}
		if err := httpSrv.Shutdown(deadline); err != nil {
			_ = httpSrv.Close()
		}
		stopComponents()
		return nil
	})
	releaseStartupMemory()
	s.log.InfoContext(ctx, "serving", "grpc_addr", s.GRPCAddr(), "http_addr", s.HTTPAddr())
	err := g.Wait()
	if err == nil {
		s.log.InfoContext(ctx, "stopped")
	}
	return err
}

// withdrawTimeout bounds the withdrawal from the registry on drain.
const withdrawTimeout = 5 * time.Second

// announceWhenReady waits until every readiness check passes, then
// announces the instance, retrying a failed announcement with a backoff
// (from 100 ms, doubling to 5 s), until ctx ends. It returns the
// withdrawal, or nil when the instance was never announced.
func (s *Server) announceWhenReady(ctx context.Context) func(context.Context) error {
	wait := 100 * time.Millisecond
	for {
		if len(s.Ready(ctx)) == 0 {
			withdraw, err := s.announce(ctx)
			if err == nil {
				s.log.InfoContext(ctx, "announced to the registry")
				return withdraw
			}
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "announcing to the registry failed", "error", err.Error(), "retry_in", wait.String())
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// releaseStartupMemory collects what start-up left behind (migrations,
// parsed configuration, the first connections) and returns it to the
// operating system. With GOGC above 100 and an idle service, the next
// collection could otherwise be minutes away, and those pages would count
// against the process's resident memory all that time.
func releaseStartupMemory() { debug.FreeOSMemory() }

// healthInterval is how often the gRPC health status follows the
// readiness checks.
const healthInterval = 2 * time.Second

// updateHealth sets the gRPC health status from the readiness checks.
func (s *Server) updateHealth(ctx context.Context) {
	st := healthpb.HealthCheckResponse_SERVING
	if len(s.Ready(ctx)) > 0 {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	if ctx.Err() != nil {
		return
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(s.name, st)
}
