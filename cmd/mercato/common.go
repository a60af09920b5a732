package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// serviceCommand is how the binary runs one service: serve builds it from
// the environment and runs it until ctx is cancelled, logging to logger,
// whose lines go to logOut (for a hot path that writes whole lines itself);
// migrate only applies its schema migrations.
type serviceCommand struct {
	serve   func(ctx context.Context, env *config.Env, logger *slog.Logger, logOut io.Writer) error
	migrate func(ctx context.Context, env *config.Env) error
}

// commonSettings are the variables every service reads.
type commonSettings struct {
	Server  server.Config
	DB      db.Config
	NATSURL string
	JWKSURL string
}

// readCommon reads the settings shared by every service. Defaults suit a
// container: listen on all interfaces, the data file under ./data, NATS and
// identity reachable by their Kubernetes service names.
//
//	MERCATO_GRPC_ADDR         gRPC listen address          (:9090)
//	MERCATO_HTTP_ADDR         admin HTTP listen address    (:8081)
//	MERCATO_SHUTDOWN_TIMEOUT  graceful drain deadline      (15s)
//	DATABASE_URL              postgres://… or a SQLite file (./data/<service>.db)
//	MERCATO_DB_MAX_CONNS      database pool size           (engine default)
//	NATS_URL                  NATS server                  (nats://nats:4222)
//	JWKS_URL                  identity's public keys       (http://identity:8081/.well-known/jwks.json)
func readCommon(env *config.Env, service string) commonSettings {
	return commonSettings{
		Server: server.Config{
			GRPCAddr:        env.String("MERCATO_GRPC_ADDR", ":9090"),
			HTTPAddr:        env.String("MERCATO_HTTP_ADDR", ":8081"),
			ShutdownTimeout: env.Duration("MERCATO_SHUTDOWN_TIMEOUT", 15*time.Second),
		},
		DB: db.Config{
			URL:          env.String("DATABASE_URL", filepath.Join("data", service+".db")),
			MaxOpenConns: env.Int("MERCATO_DB_MAX_CONNS", 0),
		},
		NATSURL: env.String("NATS_URL", "nats://nats:4222"),
		JWKSURL: env.String("JWKS_URL", "http://identity:8081/.well-known/jwks.json"),
	}
}
