package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// cartCommand runs the cart service. Besides the variables read by
// readCommon (MERCATO_GRPC_ADDR, MERCATO_HTTP_ADDR, MERCATO_SHUTDOWN_TIMEOUT,
// DATABASE_URL, MERCATO_DB_MAX_CONNS, NATS_URL, JWKS_URL) it reads:
//
//	MERCATO_CATALOG_ADDR          catalog's gRPC address, host:port or
//	                              dns:///name:port                           (catalog:9090)
//	REDIS_URL                     keep carts in Redis instead of the
//	                              database, redis://[:password@]host:port/db (unset: database)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas, 1..5            (1)
//
// DATABASE_URL is used even with REDIS_URL: it records the order events
// the cart has processed.
func cartCommand() serviceCommand {
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := cartConfig(env)
			if err != nil {
				return err
			}
			svc, err := cart.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, cart.Name)
			if err := errors.Join(env.Err(), common.DB.Validate()); err != nil {
				return fmt.Errorf("cart configuration: %w", err)
			}
			return cart.Migrate(ctx, cart.Config{DB: common.DB})
		},
	}
}

// cartConfig reads the cart's configuration and reports every problem with
// it at once.
func cartConfig(env *config.Env) (cart.Config, error) {
	common := readCommon(env, cart.Name)
	cfg := cart.Config{
		Server:         common.Server,
		DB:             common.DB,
		RedisURL:       env.String("REDIS_URL", ""),
		NATSURL:        common.NATSURL,
		JWKSURL:        common.JWKSURL,
		CatalogAddr:    env.String("MERCATO_CATALOG_ADDR", "catalog:9090"),
		StreamReplicas: env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		return cart.Config{}, fmt.Errorf("cart configuration: %w", err)
	}
	return cfg, nil
}
