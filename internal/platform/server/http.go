package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/observability"
)

// HTTPConfig says where an HTTP-only process (one with no gRPC server, such
// as the gateway) listens and how long it may take to stop.
type HTTPConfig struct {
	// Addr is the public listen address, e.g. ":8080" (port 0 picks one).
	Addr string
	// AdminAddr is the admin listen address (/healthz, /readyz, /metrics),
	// kept apart so it need not be exposed with the public one.
	AdminAddr string
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// slow clients on the public listener (see net/http.Server).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds the request header size on the public listener.
	MaxHeaderBytes int
}

// WithDefaults returns c with every unset field filled.
func (c HTTPConfig) WithDefaults() HTTPConfig {
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// Validate reports every problem.
func (c HTTPConfig) Validate() error {
	var p config.Problems
	p.Add(c.Addr == "", "public listen address is empty")
	p.Add(c.AdminAddr == "", "admin listen address is empty")
	for _, a := range []string{c.Addr, c.AdminAddr} {
		if a != "" {
			_, _, err := net.SplitHostPort(a)
			p.Add(err != nil, "listen address %q is not host:port", a)
		}
	}
	p.Add(c.ShutdownTimeout < 0, "shutdown timeout must not be negative")
	p.Add(c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0,
		"HTTP timeouts must not be negative")
	p.Add(c.MaxHeaderBytes < 0, "max header bytes must not be negative")
	return p.Err()
}

// HTTPServer is the lifecycle of an HTTP-only process: a public listener
// serving one handler and an admin listener serving /healthz, /readyz and
// /metrics. It is the HTTP counterpart of Server.
type HTTPServer struct {
	name     string
	cfg      HTTPConfig
	log      *slog.Logger
	public   *http.Server
	admin    *http.Server
	adminMux *http.ServeMux
	lis      net.Listener
	adminLis net.Listener
	readiness
}

// NewHTTP listens on both addresses at once, so a caller learns the real
// ports before Run, and serves handler on the public one.
func NewHTTP(ctx context.Context, name string, cfg HTTPConfig, handler http.Handler, logger *slog.Logger, reg *prometheus.Registry) (*HTTPServer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen HTTP: %w", err)
	}
	adminLis, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("listen admin HTTP: %w", err)
	}
	s := &HTTPServer{
		name: name, cfg: cfg, log: logger,
		adminMux: http.NewServeMux(), lis: lis, adminLis: adminLis,
		readiness: newReadiness(),
	}
	s.public = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	s.admin = &http.Server{Handler: s.adminMux, ReadHeaderTimeout: 5 * time.Second}
	s.adminMux.HandleFunc("GET /healthz", serveLive)
	s.adminMux.HandleFunc("GET /readyz", s.serveReady)
	s.adminMux.Handle("GET /metrics", observability.MetricsHandler(reg))
	return s, nil
}

// HandleAdmin adds a handler to the admin listener.
func (s *HTTPServer) HandleAdmin(pattern string, h http.Handler) { s.adminMux.Handle(pattern, h) }

// Addr is the address the public listener is bound to.
func (s *HTTPServer) Addr() string { return s.lis.Addr().String() }

// AdminAddr is the address the admin listener is bound to.
func (s *HTTPServer) AdminAddr() string { return s.adminLis.Addr().String() }

func serveLive(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Run serves until ctx is cancelled, then drains: /readyz starts failing,
// in-flight public requests finish (the connections are closed after the
// shutdown timeout), the admin listener stops, and only then are the
// components stopped. Run returns the first error that stopped the process,
// or nil after a graceful stop.
func (s *HTTPServer) Run(ctx context.Context, components ...Component) error {
	compCtx, stopComponents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopComponents()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.public.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.admin.Serve(s.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve admin HTTP: %w", err)
		}
		return nil
	})
	for _, c := range components {
		g.Go(func() error { return c(compCtx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		s.log.InfoContext(ctx, "shutting down", "timeout", s.cfg.ShutdownTimeout.String())
		s.draining.Store(true)
		deadline, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := s.public.Shutdown(deadline); err != nil {
			s.log.WarnContext(ctx, "HTTP drain timed out, closing connections")
			_ = s.public.Close()
		}
		if err := s.admin.Shutdown(deadline); err != nil {
			_ = s.admin.Close()
		}
		stopComponents()
		return nil
	})
	releaseStartupMemory()
	s.log.InfoContext(ctx, "serving", "addr", s.Addr(), "admin_addr", s.AdminAddr())
	err := g.Wait()
	if err == nil {
		s.log.InfoContext(ctx, "stopped")
	}
	return err
}

// Close releases the listeners of a server that will not Run (a caller
// whose set-up failed after NewHTTP).
func (s *HTTPServer) Close() error {
	return errors.Join(s.lis.Close(), s.adminLis.Close())
}
