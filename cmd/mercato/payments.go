package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/payments"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// paymentsCommand runs the payments service. Besides the common settings
// (readCommon) it reads the fake card provider's fault knobs:
//
//	MERCATO_PAYMENTS_LATENCY       added to every provider call, 0s to 30s     (0s)
//	MERCATO_PAYMENTS_FAILURE_RATE  share of provider calls failing, 0 to 1    (0)
//	MERCATO_PAYMENTS_SEED          seed of the failure draws; 0 picks one     (0)
//	MERCATO_NATS_STREAM_REPLICAS   JetStream stream replicas                  (1)
func paymentsCommand() serviceCommand {
	read := func(env *config.Env) (payments.Config, error) {
		common := readCommon(env, payments.Name)
		seed := env.Int("MERCATO_PAYMENTS_SEED", 0)
		cfg := payments.Config{
			Server:              common.Server,
			DB:                  common.DB,
			NATSURL:             common.NATSURL,
			JWKSURL:             common.JWKSURL,
			ProviderLatency:     env.Duration("MERCATO_PAYMENTS_LATENCY", 0),
			ProviderFailureRate: env.Float("MERCATO_PAYMENTS_FAILURE_RATE", 0),
			ProviderSeed:        uint64(seed),
			StreamReplicas:      env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
		}
		var seedErr error
		if seed < 0 {
			seedErr = errors.New("MERCATO_PAYMENTS_SEED must not be negative")
		}
		return cfg, errors.Join(env.Err(), seedErr, cfg.Validate())
	}
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := read(env)
			if err != nil {
				return err
			}
			svc, err := payments.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, payments.Name)
			if err := env.Err(); err != nil {
				return err
			}
			return payments.Migrate(ctx, payments.Config{DB: common.DB})
		},
	}
}
