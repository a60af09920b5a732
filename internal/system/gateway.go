package system

import (
	"context"
	"runtime/debug"
	"strings"

	"github.com/mercato-dev/mercato/internal/gateway"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// gatewayName is the gateway's name in the table.
const gatewayName = "gateway"

// gatewayService is the public edge in front of the services of backends
// that have a public API. It owns no data.
func gatewayService(backends []Service) Service {
	var upstreams []Service
	for _, s := range backends {
		if s.API != nil {
			upstreams = append(upstreams, s)
		}
	}
	calls := make([]string, len(upstreams))
	for i, u := range upstreams {
		calls[i] = u.Name
	}
	return Service{
		Name:  gatewayName,
		Calls: calls,
		Serve: func(ctx context.Context, env *config.Env, rt Runtime) error {
			cfg, err := readGateway(env, upstreams)
			if err != nil {
				return err
			}
			cfg.AccessLog = rt.LogOut
			if env.String("GOGC", "") == "" {
				debug.SetGCPercent(400)
			}
			g, err := gateway.New(ctx, cfg, rt.Logger)
			if err != nil {
				return err
			}
			return g.Run(ctx)
		},
	}
}

// readGateway reads the gateway's configuration. Besides MERCATO_HTTP_ADDR,
// MERCATO_SHUTDOWN_TIMEOUT and JWKS_URL of the common settings it reads:
//
//	MERCATO_ADDR                  public listen address                  (:8080)
//	MERCATO_<SERVICE>_ADDR        every upstream's gRPC target           (<service>:9090)
//	MERCATO_RATE_LIMIT_RPS        requests/s per client IP and per user,
//	                              bursts of twice that; 0 turns it off   (100)
//	MERCATO_LOGIN_RATE_LIMIT_RPS  requests/s per client IP on login,
//	                              register and refresh                   (a tenth of the above)
//	MERCATO_BODY_LIMIT            largest request body, in bytes         (1048576)
//	MERCATO_REQUEST_TIMEOUT       deadline of each request, passed on to
//	                              the gRPC call                          (10s)
//	MERCATO_CORS_ORIGINS          comma-separated browser origins
//	                              allowed, or *; empty turns CORS off    ("")
//	MERCATO_TRUST_FORWARDED_FOR   take the client IP from the last
//	                              X-Forwarded-For entry (only behind a
//	                              reverse proxy that sets it)            (false)
//	GOGC                          Go's GC target; the gateway's live heap
//	                              is tiny and nearly all it allocates is
//	                              per-request garbage, so it trades a few
//	                              MB for a third less CPU                (400)
//
// A gRPC target is host:port or a URI such as dns:///catalog:9090; either
// way every address it resolves to is used, round-robin.
func readGateway(env *config.Env, upstreams []Service) (gateway.Config, error) {
	c := readCommon(env, gatewayName)
	cfg := gateway.Config{
		Addr:              env.String("MERCATO_ADDR", ":8080"),
		AdminAddr:         c.Server.HTTPAddr,
		ShutdownTimeout:   c.Server.ShutdownTimeout,
		Keys:              c.Keys,
		RateLimitRPS:      env.Float("MERCATO_RATE_LIMIT_RPS", 100),
		LoginRateLimitRPS: env.Float("MERCATO_LOGIN_RATE_LIMIT_RPS", 0),
		BodyLimitBytes:    int64(env.Int("MERCATO_BODY_LIMIT", gateway.DefaultBodyLimitBytes)),
		RequestTimeout:    env.Duration("MERCATO_REQUEST_TIMEOUT", gateway.DefaultRequestTimeout),
		TrustForwardedFor: env.Bool("MERCATO_TRUST_FORWARDED_FOR", false),
	}
	for _, u := range upstreams {
		cfg.Upstreams = append(cfg.Upstreams, gateway.Upstream{Name: u.Name, Target: target(env, u.Name), API: *u.API})
	}
	for _, origin := range strings.Split(env.String("MERCATO_CORS_ORIGINS", ""), ",") {
		if origin = strings.TrimSpace(origin); origin != "" {
			cfg.CORSAllowedOrigins = append(cfg.CORSAllowedOrigins, origin)
		}
	}
	return cfg, checked(gatewayName, env, cfg)
}
