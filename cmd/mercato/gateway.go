package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/mercato-dev/mercato/internal/gateway"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// gatewayCommand runs the public API gateway. It owns no data, so migrate
// has nothing to do. Besides MERCATO_HTTP_ADDR, MERCATO_SHUTDOWN_TIMEOUT and
// JWKS_URL (see readCommon) it reads:
//
//	MERCATO_ADDR                  public listen address                  (:8080)
//	MERCATO_IDENTITY_ADDR         identity's gRPC target                 (identity:9090)
//	MERCATO_CATALOG_ADDR          catalog's gRPC target                  (catalog:9090)
//	MERCATO_<SERVICE>_ADDR        likewise for every upstream service    (<service>:9090)
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
func gatewayCommand() serviceCommand {
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, logOut io.Writer) error {
			cfg := readGatewayConfig(env)
			cfg.AccessLog = logOut
			if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
				return fmt.Errorf("gateway config: %w", err)
			}
			if env.String("GOGC", "") == "" {
				debug.SetGCPercent(400)
			}
			g, err := gateway.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return g.Run(ctx)
		},
		migrate: func(context.Context, *config.Env) error {
			fmt.Println("gateway: stateless, no database to migrate")
			return nil
		},
	}
}

func readGatewayConfig(env *config.Env) gateway.Config {
	common := readCommon(env, "gateway")
	cfg := gateway.Config{
		Addr:              env.String("MERCATO_ADDR", ":8080"),
		AdminAddr:         common.Server.HTTPAddr,
		ShutdownTimeout:   common.Server.ShutdownTimeout,
		JWKSURL:           common.JWKSURL,
		Upstreams:         map[string]string{},
		RateLimitRPS:      env.Float("MERCATO_RATE_LIMIT_RPS", 100),
		LoginRateLimitRPS: env.Float("MERCATO_LOGIN_RATE_LIMIT_RPS", 0),
		BodyLimitBytes:    int64(env.Int("MERCATO_BODY_LIMIT", gateway.DefaultBodyLimitBytes)),
		RequestTimeout:    env.Duration("MERCATO_REQUEST_TIMEOUT", gateway.DefaultRequestTimeout),
		TrustForwardedFor: env.Bool("MERCATO_TRUST_FORWARDED_FOR", false),
	}
	for _, name := range gateway.UpstreamNames() {
		cfg.Upstreams[name] = env.String("MERCATO_"+strings.ToUpper(name)+"_ADDR", name+":9090")
	}
	for _, origin := range strings.Split(env.String("MERCATO_CORS_ORIGINS", ""), ",") {
		if origin = strings.TrimSpace(origin); origin != "" {
			cfg.CORSAllowedOrigins = append(cfg.CORSAllowedOrigins, origin)
		}
	}
	return cfg
}
