package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// notificationsCommand runs the notifications service. Besides the
// variables read by readCommon (MERCATO_GRPC_ADDR, MERCATO_HTTP_ADDR,
// MERCATO_SHUTDOWN_TIMEOUT, DATABASE_URL, MERCATO_DB_MAX_CONNS, NATS_URL,
// JWKS_URL) it reads:
//
//	MERCATO_NOTIFICATIONS_FILE    append every notification to this file as
//	                              a JSON line (one process per file)        (unset: log them)
//	MERCATO_PAGE_TOKEN_KEY        secret signing list page tokens, at least
//	                              16 bytes; set it, the same on every replica,
//	                              when running more than one                 (random per process)
//	MERCATO_NATS_STREAM_REPLICAS  JetStream stream replicas, 1..5            (1)
func notificationsCommand() serviceCommand {
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := notificationsConfig(env)
			if err != nil {
				return err
			}
			svc, err := notifications.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, notifications.Name)
			if err := errors.Join(env.Err(), common.DB.Validate()); err != nil {
				return fmt.Errorf("notifications configuration: %w", err)
			}
			return notifications.Migrate(ctx, notifications.Config{DB: common.DB})
		},
	}
}

// notificationsConfig reads the notifications' configuration and reports
// every problem with it at once.
func notificationsConfig(env *config.Env) (notifications.Config, error) {
	common := readCommon(env, notifications.Name)
	cfg := notifications.Config{
		Server:         common.Server,
		DB:             common.DB,
		NATSURL:        common.NATSURL,
		JWKSURL:        common.JWKSURL,
		SinkFile:       env.String("MERCATO_NOTIFICATIONS_FILE", ""),
		PageTokenKey:   env.String("MERCATO_PAGE_TOKEN_KEY", ""),
		StreamReplicas: env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		return notifications.Config{}, fmt.Errorf("notifications configuration: %w", err)
	}
	return cfg, nil
}
