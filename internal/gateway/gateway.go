// Package gateway is mercato's public edge: REST/JSON on one port,
// transcoded to the services' gRPC APIs with grpc-gateway. It is stateless.
// It authenticates callers, enforces which routes need a user or an admin,
// limits request rates and sizes, turns gRPC statuses into RFC 9457 problem
// details, and serves the merged OpenAPI document and readable docs. The
// services verify tokens again: the gateway is a first line, not the only one.
package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/mercato-dev/mercato/internal/gen"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/observability"
	"github.com/mercato-dev/mercato/internal/platform/registry"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultBodyLimitBytes  = 1 << 20
	DefaultRequestTimeout  = 10 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
	// loginRateDivisor makes the credential routes (login, register,
	// refresh) ten times stricter than the rest unless told otherwise.
	loginRateDivisor = 10
)

// Config configures the gateway.
type Config struct {
	// Addr is the public listen address, e.g. ":8080" (port 0 picks one).
	Addr string
	// AdminAddr is the admin listen address (/healthz, /readyz, /metrics).
	AdminAddr string
	// Upstreams are the services behind the gateway, each with its public
	// API and gRPC target, in the order their access rules apply.
	Upstreams []Upstream
	// Keys verify access tokens.
	Keys auth.KeysConfig
	// Registry finds the upstreams' instances for mercato:/// targets; a
	// zero Registry means none (every target a fixed address or URI).
	Registry registry.Config
	// RateLimitRPS is the sustained requests per second allowed per client
	// IP and, separately, per authenticated user, with bursts of twice as
	// many. 0 turns rate limiting off.
	RateLimitRPS float64
	// LoginRateLimitRPS is the stricter per-IP limit on the credential
	// routes (login, register, refresh); 0 means a tenth of RateLimitRPS.
	// It is off, like every limit, when RateLimitRPS is 0.
	LoginRateLimitRPS float64
	// BodyLimitBytes is the largest request body accepted (1 MiB by default).
	BodyLimitBytes int64
	// RequestTimeout is the deadline of each request, which becomes the
	// deadline of the gRPC call it makes (10s by default).
	RequestTimeout time.Duration
	// CORSAllowedOrigins are the browser origins (scheme://host[:port])
	// allowed to call the API, or "*" for any. Empty turns CORS off.
	CORSAllowedOrigins []string
	// TrustForwardedFor takes the client IP from the last X-Forwarded-For
	// entry, as appended by the one reverse proxy in front of the gateway.
	// Leave it off when clients reach the gateway directly: they could
	// claim any address and escape their rate limit.
	TrustForwardedFor bool
	// ShutdownTimeout bounds the graceful drain (15s by default).
	ShutdownTimeout time.Duration
	// AccessLog, when set, is the writer under the logger given to New:
	// the access log then writes its lines there itself, in the logger's
	// JSON shape (observability.AccessLog), rather than through slog.
	AccessLog io.Writer
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	if c.BodyLimitBytes == 0 {
		c.BodyLimitBytes = DefaultBodyLimitBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.LoginRateLimitRPS == 0 {
		c.LoginRateLimitRPS = c.RateLimitRPS / loginRateDivisor
	}
	return c
}

// Validate reports every problem with c, once its defaults are filled, at
// once.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var p config.Problems
	for name, addr := range map[string]string{"public": c.Addr, "admin": c.AdminAddr} {
		if addr == "" {
			p.Add(true, "%s listen address is empty", name)
			continue
		}
		_, _, err := net.SplitHostPort(addr)
		p.Add(err != nil, "%s listen address %q is not host:port", name, addr)
	}
	p.Add(len(c.Upstreams) == 0, "no upstream services")
	seen := map[string]bool{}
	for _, u := range c.Upstreams {
		p.Add(u.Name == "", "an upstream has no name")
		p.Add(seen[u.Name], "upstream %q is listed twice", u.Name)
		seen[u.Name] = true
		p.Add(u.Target == "", "%s upstream address is empty", u.Name)
		if u.Target != "" {
			p.Add(!validTarget(u.Target), "%s upstream address %q is not host:port or a gRPC target URI", u.Name, u.Target)
		}
		p.Add(u.API.Register == nil, "%s upstream has no routes to register", u.Name)
		for _, rule := range u.API.Access {
			p.Include(u.Name+" upstream", rule.validate())
		}
	}
	p.Include("keys", c.Keys.Validate())
	if c.Registry.Kind != "" {
		p.Include("registry", c.Registry.WithDefaults().Validate())
	}
	p.Add(c.RateLimitRPS < 0, "rate limit must not be negative")
	p.Add(c.LoginRateLimitRPS < 0, "login rate limit must not be negative")
	p.Add(c.BodyLimitBytes <= 0, "body limit must be positive")
	p.Add(c.RequestTimeout <= 0, "request timeout must be positive")
	p.Add(c.ShutdownTimeout < 0, "shutdown timeout must not be negative")
	for _, o := range c.CORSAllowedOrigins {
		p.Add(!validOrigin(o), "CORS origin %q is not * or scheme://host[:port]", o)
	}
	return p.Err()
}

func validTarget(target string) bool {
	if scheme, rest, ok := strings.Cut(target, ":///"); ok {
		return scheme != "" && rest != ""
	}
	host, port, err := net.SplitHostPort(target)
	return err == nil && port != "" && (host != "" || port != "")
}

func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

// Gateway is the running gateway: listeners bound, upstream connections
// open. Call Run once.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	srv       *server.HTTPServer
	pool      *upstreamPool
	verifier  *auth.Verifier
	limits    *rateLimits
	metrics   *observability.HTTPMetrics
	discovery registry.Registry
	policy    accessPolicy
	transcode *transcoders
	cors      corsPolicy
	ids       *requestIDs
	access    *observability.AccessLog
	statuses  map[string]int
	routes    routeTable
	apiDoc    []byte
	apiHTML   []byte
}

// New builds the gateway: it opens one connection per upstream (connecting
// in the background), registers every upstream's routes, merges the OpenAPI
// documents and binds both listeners. It fails on invalid configuration or
// an address that cannot be bound; an unreachable upstream only makes
// /readyz fail until it can be reached.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Gateway, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	reg := observability.NewRegistry()
	g := &Gateway{
		cfg:      cfg,
		log:      logger,
		metrics:  observability.NewHTTPMetrics(reg),
		limits:   newRateLimits(cfg.RateLimitRPS, cfg.LoginRateLimitRPS),
		cors:     newCORSPolicy(cfg.CORSAllowedOrigins),
		ids:      newRequestIDs(),
		statuses: map[string]int{},
		policy:   newAccessPolicy(cfg.Upstreams),
	}

	if cfg.AccessLog != nil {
		g.access = observability.NewAccessLog(cfg.AccessLog, "gateway")
	}

	var keysReady func(context.Context) error
	g.verifier, keysReady = cfg.Keys.NewVerifier()

	var dialOpts []grpc.DialOption
	if cfg.Registry.Kind != "" {
		reg, err := registry.Open(cfg.Registry.WithDefaults(), logger)
		if err != nil {
			return nil, fmt.Errorf("gateway registry: %w", err)
		}
		g.discovery = reg
		dialOpts = append(dialOpts, registry.WithResolver(reg, logger))
	}
	pool, err := dialUpstreams(cfg.Upstreams, dialOpts...)
	if err != nil {
		g.closeDiscovery()
		return nil, err
	}
	built := false
	defer func() {
		if !built {
			_ = pool.close()
			g.closeDiscovery()
		}
	}()
	g.pool = pool
	names := make([]string, len(cfg.Upstreams))
	for i, u := range cfg.Upstreams {
		names[i] = u.Name
		for method, code := range u.API.Statuses {
			g.statuses[method] = code
		}
	}
	routes, err := upstreamRoutes(gen.OpenAPI, names)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if g.transcode, err = g.newTranscoders(ctx, pool, routes); err != nil {
		return nil, err
	}

	// Only what the gateway serves is documented.
	doc, conflicts, err := mergeOpenAPI(gen.OpenAPI, names, g.statuses, g.policy)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	for _, c := range conflicts {
		logger.WarnContext(ctx, "openapi documents conflict", "conflict", c)
	}
	for _, op := range g.policy.uncovered(doc) {
		logger.ErrorContext(ctx, "route has no access rule: it is closed to everyone", "route", op)
	}
	g.routes = newRouteTable(doc)
	if g.apiDoc, g.apiHTML, err = renderAPIDocs(doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}

	srv, err := server.NewHTTP(ctx, "gateway", server.HTTPConfig{
		Addr:            cfg.Addr,
		AdminAddr:       cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
		// A request may take RequestTimeout upstream; the write deadline
		// must not cut its response short.
		WriteTimeout: cfg.RequestTimeout + 30*time.Second,
	}, g.handler(), logger, reg)
	if err != nil {
		return nil, err
	}
	g.srv = srv
	// The gateway is ready while it can serve: an upstream with no healthy
	// instance fails only its own routes (503, Retry-After) and keys that
	// cannot be fetched fail only requests with a token, so neither takes
	// the whole API out of its load balancer. /readyz?verbose reports both.
	for _, u := range cfg.Upstreams {
		srv.AddReport("upstream "+u.Name, pool.readyCheck(u.Name))
	}
	if keysReady != nil {
		name := "keys"
		if cfg.Keys.Source == nil {
			name = "jwks"
		}
		srv.AddReport(name, keysReady)
	}
	built = true
	return g, nil
}

// Addr is the public listen address.
func (g *Gateway) Addr() string { return g.srv.Addr() }

// AdminAddr is the admin listen address.
func (g *Gateway) AdminAddr() string { return g.srv.AdminAddr() }

// Run serves until ctx is cancelled, drains in-flight requests (bounded by
// the shutdown timeout), then closes the upstream connections.
func (g *Gateway) Run(ctx context.Context) error {
	err := g.srv.Run(ctx)
	if cerr := g.pool.close(); cerr != nil {
		g.log.WarnContext(ctx, "closing upstream connections", "error", cerr.Error())
	}
	g.closeDiscovery()
	return err
}

func (g *Gateway) closeDiscovery() {
	if g.discovery != nil {
		_ = g.discovery.Close()
	}
}

// handler is the public handler. /healthz answers before the chain so
// liveness probes are never rate limited, logged or traced. Everything else
// passes the chain below, outermost first, each middleware once:
//
//  1. request id     accept a sane X-Request-Id or make one; echo it; forward it
//  2. recovery       a panic becomes a 500 problem (and is logged with its stack)
//  3. access log     one line per request once it is done
//  4. metrics        RED metrics labelled by route pattern
//  5. tracing        a server span continuing any W3C traceparent; the gRPC
//     client span is its child
//  6. CORS           answers preflights; marks allowed origins
//  7. body limit     bodies over the limit are refused with 413
//  8. rate limit     per client IP (and stricter on credential routes); the
//     per-user limit is applied in 9, once the user is known
//  9. authentication a present Authorization header must verify, else 401
//  10. authorization  the route policy: 401 anonymous, 403 non-admin
//  11. timeout        the request deadline, which becomes the gRPC deadline
//
// then the OpenAPI routes or the transcoding muxes.
func (g *Gateway) handler() http.Handler {
	var h http.Handler = http.HandlerFunc(g.route)
	h = g.timeout(h)
	h = g.authorize(h)
	h = g.authenticate(h)
	h = g.rateLimit(h)
	h = g.bodyLimit(h)
	h = g.corsHandler(h)
	h = g.tracing(h)
	h = g.metricsMiddleware(h)
	h = g.accessLog(h)
	h = g.recovery(h)
	h = g.requestID(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// route sends the documentation routes to their handlers and everything
// else to the transcoding muxes.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/openapi.json":
		g.serveStatic(w, r, "/openapi.json", "application/json", g.apiDoc)
	case "/docs":
		g.serveStatic(w, r, "/docs", "text/html; charset=utf-8", g.apiHTML)
	default:
		g.transcode.ServeHTTP(w, r)
	}
}

func (g *Gateway) serveStatic(w http.ResponseWriter, r *http.Request, route, contentType string, body []byte) {
	setRoute(r.Context(), route)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=300")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
