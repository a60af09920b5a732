package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/catalog"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// catalogCommand runs the catalog service. Besides the variables read by
// readCommon (MERCATO_GRPC_ADDR, MERCATO_HTTP_ADDR, MERCATO_SHUTDOWN_TIMEOUT,
// DATABASE_URL, MERCATO_DB_MAX_CONNS, NATS_URL, JWKS_URL) it reads:
//
//	MERCATO_PAGE_TOKEN_KEY        secret signing list page tokens, at least
//	                              16 bytes; set it, the same on every replica,
//	                              when running more than one                 (random per process)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas, 1..5            (1)
func catalogCommand() serviceCommand {
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := catalogConfig(env)
			if err != nil {
				return err
			}
			svc, err := catalog.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, catalog.Name)
			if err := errors.Join(env.Err(), common.DB.Validate()); err != nil {
				return fmt.Errorf("catalog configuration: %w", err)
			}
			return catalog.Migrate(ctx, catalog.Config{DB: common.DB})
		},
	}
}

// catalogConfig reads the catalog's configuration and reports every problem
// with it at once.
func catalogConfig(env *config.Env) (catalog.Config, error) {
	common := readCommon(env, catalog.Name)
	cfg := catalog.Config{
		Server:         common.Server,
		DB:             common.DB,
		NATSURL:        common.NATSURL,
		JWKSURL:        common.JWKSURL,
		PageTokenKey:   env.String("MERCATO_PAGE_TOKEN_KEY", ""),
		StreamReplicas: env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		return catalog.Config{}, fmt.Errorf("catalog configuration: %w", err)
	}
	return cfg, nil
}
