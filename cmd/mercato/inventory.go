package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/inventory"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// inventoryCommand runs the inventory service. Besides the variables read by
// readCommon (MERCATO_GRPC_ADDR, MERCATO_HTTP_ADDR, MERCATO_SHUTDOWN_TIMEOUT,
// DATABASE_URL, MERCATO_DB_MAX_CONNS, JWKS_URL; NATS_URL is not used, the
// inventory publishes no events) it reads:
//
//	MERCATO_RESERVATION_TTL    how long a reservation holds stock when the
//	                           caller gives no ttl; keep it longer than the
//	                           orders saga takes to commit, 1s..24h        (15m)
//	MERCATO_RESERVATION_SWEEP  how often expired reservations are
//	                           released, 100ms..1h                         (5s)
func inventoryCommand() serviceCommand {
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := inventoryConfig(env)
			if err != nil {
				return err
			}
			svc, err := inventory.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, inventory.Name)
			if err := errors.Join(env.Err(), common.DB.Validate()); err != nil {
				return fmt.Errorf("inventory configuration: %w", err)
			}
			return inventory.Migrate(ctx, inventory.Config{DB: common.DB})
		},
	}
}

// inventoryConfig reads the inventory's configuration and reports every
// problem with it at once.
func inventoryConfig(env *config.Env) (inventory.Config, error) {
	common := readCommon(env, inventory.Name)
	cfg := inventory.Config{
		Server:              common.Server,
		DB:                  common.DB,
		JWKSURL:             common.JWKSURL,
		ReservationTTL:      env.Duration("MERCATO_RESERVATION_TTL", inventory.DefaultReservationTTL),
		ExpirySweepInterval: env.Duration("MERCATO_RESERVATION_SWEEP", inventory.DefaultExpirySweepInterval),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		return inventory.Config{}, fmt.Errorf("inventory configuration: %w", err)
	}
	return cfg, nil
}
