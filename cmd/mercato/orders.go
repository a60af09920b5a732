package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// ordersCommand runs the orders service. Besides the common settings
// (readCommon) it reads:
//
//	MERCATO_CATALOG_ADDR          catalog gRPC target                         (catalog:9090)
//	MERCATO_CART_ADDR             cart gRPC target                            (cart:9090)
//	MERCATO_INVENTORY_ADDR        inventory gRPC target                       (inventory:9090)
//	MERCATO_PAYMENTS_ADDR         payments gRPC target                        (payments:9090)
//	MERCATO_IDENTITY_ADDR         identity gRPC target, for the service token (identity:9090)
//	MERCATO_SERVICE_SECRET        orders' client secret at identity           (required)
//	MERCATO_SAGA_DEADLINE         checkout time before the stock commit       (30s)
//	MERCATO_SAGA_WORKERS          orders the saga advances at once            (32)
//	MERCATO_SAGA_POLL_INTERVAL    how often the saga looks for due retries    (1s)
//	MERCATO_INSTANCE_ID           this replica's name in saga leases          (host name)
//	MERCATO_PAGE_TOKEN_KEY        HMAC key for list page tokens, >= 16 bytes  (random per process)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas                   (1)
//	MERCATO_FAULT_CRASH_AFTER     test-only: SIGKILL the process right after  (unset: off)
//	                              the append of this event type commits, e.g.
//	                              "StockReserved"; "before:StockReserved"
//	                              kills it after the inventory call instead
//
// Targets are host:port, or dns:///name:port to balance over a headless
// Kubernetes service.
func ordersCommand() serviceCommand {
	read := func(env *config.Env) (orders.Config, error) {
		common := readCommon(env, orders.Name)
		cfg := orders.Config{
			Server:            common.Server,
			DB:                common.DB,
			NATSURL:           common.NATSURL,
			JWKSURL:           common.JWKSURL,
			CatalogAddr:       env.String("MERCATO_CATALOG_ADDR", "catalog:9090"),
			CartAddr:          env.String("MERCATO_CART_ADDR", "cart:9090"),
			InventoryAddr:     env.String("MERCATO_INVENTORY_ADDR", "inventory:9090"),
			PaymentsAddr:      env.String("MERCATO_PAYMENTS_ADDR", "payments:9090"),
			IdentityAddr:      env.String("MERCATO_IDENTITY_ADDR", "identity:9090"),
			ServiceSecret:     env.String("MERCATO_SERVICE_SECRET", ""),
			SagaDeadline:      env.Duration("MERCATO_SAGA_DEADLINE", orders.DefaultSagaDeadline),
			SagaWorkers:       env.Int("MERCATO_SAGA_WORKERS", orders.DefaultSagaWorkers),
			SagaPollInterval:  env.Duration("MERCATO_SAGA_POLL_INTERVAL", 0),
			InstanceID:        env.String("MERCATO_INSTANCE_ID", ""),
			PageTokenKey:      env.String("MERCATO_PAGE_TOKEN_KEY", ""),
			IdempotencyKeyTTL: env.Duration("MERCATO_IDEMPOTENCY_KEY_TTL", orders.DefaultIdempotencyKeyTTL),
			StreamReplicas:    env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
			CrashAfter:        env.String("MERCATO_FAULT_CRASH_AFTER", ""),
		}
		return cfg, errors.Join(env.Err(), cfg.Validate())
	}
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := read(env)
			if err != nil {
				return err
			}
			svc, err := orders.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, orders.Name)
			if err := env.Err(); err != nil {
				return err
			}
			return orders.Migrate(ctx, orders.Config{DB: common.DB})
		},
	}
}
