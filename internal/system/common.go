package system

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// common are the settings every service reads. Defaults suit a container:
// listen on all interfaces, the data file under ./data, NATS and identity
// reachable by their Kubernetes service names.
//
//	MERCATO_GRPC_ADDR             gRPC listen address                  (:9090)
//	MERCATO_HTTP_ADDR             admin HTTP listen address            (:8081)
//	MERCATO_SHUTDOWN_TIMEOUT      graceful drain deadline              (15s)
//	DATABASE_URL                  postgres://… or a SQLite file        (./data/<service>.db)
//	MERCATO_DB_MAX_CONNS          database pool size                   (engine default)
//	NATS_URL                      NATS server(s)                       (nats://nats:4222)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas, 1..5      (1)
//	JWKS_URL                      identity's public keys               (http://identity:8081/.well-known/jwks.json)
type common struct {
	Server server.Config
	DB     db.Config
	Events events.Config
	Keys   auth.KeysConfig
}

func readCommon(env *config.Env, service string) common {
	return common{
		Server: server.Config{
			GRPCAddr:        env.String("MERCATO_GRPC_ADDR", ":9090"),
			HTTPAddr:        env.String("MERCATO_HTTP_ADDR", ":8081"),
			ShutdownTimeout: env.Duration("MERCATO_SHUTDOWN_TIMEOUT", 15*time.Second),
		},
		DB: readDB(env, service),
		Events: events.Config{
			URL:            env.String("NATS_URL", "nats://nats:4222"),
			StreamReplicas: env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
			Streams:        Streams(),
		},
		Keys: auth.KeysConfig{JWKSURL: env.String("JWKS_URL", "http://identity:8081/.well-known/jwks.json")},
	}
}

func readDB(env *config.Env, service string) db.Config {
	return db.Config{
		URL:          env.String("DATABASE_URL", filepath.Join("data", service+".db")),
		MaxOpenConns: env.Int("MERCATO_DB_MAX_CONNS", 0),
	}
}

// runner is a built service.
type runner interface {
	Run(ctx context.Context) error
}

// serve is the Serve of a service whose configuration read returns and
// build turns into a running service: the same three steps for every one.
func serve[C any, S runner](read func(*config.Env) (C, error), build func(context.Context, C, *slog.Logger) (S, error)) func(context.Context, *config.Env, Runtime) error {
	return func(ctx context.Context, env *config.Env, rt Runtime) error {
		cfg, err := read(env)
		if err != nil {
			return err
		}
		svc, err := build(ctx, cfg, rt.Logger)
		if err != nil {
			return err
		}
		return svc.Run(ctx)
	}
}

// migrate is the Migrate of a service whose migrations apply takes only
// its database configuration.
func migrate(service string, apply func(context.Context, db.Config) error) func(context.Context, *config.Env) error {
	return func(ctx context.Context, env *config.Env) error {
		cfg := readDB(env, service)
		if err := config.Join(env.Err(), cfg.Validate()); err != nil {
			return fmt.Errorf("%s configuration: %w", service, err)
		}
		return apply(ctx, cfg)
	}
}
