package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

// identityCommand runs the identity service. Besides the common settings
// (readCommon; JWKS_URL is not used, identity verifies with its own keys)
// it reads:
//
//	MERCATO_ADMIN_EMAIL                bootstrap admin account email           (unset: none)
//	MERCATO_ADMIN_PASSWORD             bootstrap admin password, 8-128 chars   (unset: none)
//	MERCATO_ACCESS_TOKEN_TTL           access token lifetime                   (15m)
//	MERCATO_REFRESH_TOKEN_TTL          refresh token lifetime                  (720h)
//	MERCATO_KEY_ROTATION               how long a signing key signs            (24h)
//	MERCATO_KEY_PUBLISH_LEAD           how long a key is published before use  (10m)
//	MERCATO_MAX_CONCURRENT_HASHES      argon2id hashes at once (19 MiB each)   (4)
//	MERCATO_LOGIN_RATE_PER_MIN         login attempts per email per minute     (5; 0 disables)
//	MERCATO_LOGIN_IP_RATE_PER_MIN      login attempts per client IP per minute (20; 0 disables)
//	MERCATO_SERVICE_SECRET             secret services exchange for service tokens (unset: off)
//	MERCATO_NATS_STREAM_REPLICAS       JetStream stream replicas               (1)
func identityCommand() serviceCommand {
	read := func(env *config.Env) (identity.Config, error) {
		common := readCommon(env, identity.Name)
		cfg := identity.Config{
			Server:               common.Server,
			DB:                   common.DB,
			NATSURL:              common.NATSURL,
			StreamReplicas:       env.Int("MERCATO_NATS_STREAM_REPLICAS", 1),
			AdminEmail:           env.String("MERCATO_ADMIN_EMAIL", ""),
			AdminPassword:        env.String("MERCATO_ADMIN_PASSWORD", ""),
			AccessTokenTTL:       env.Duration("MERCATO_ACCESS_TOKEN_TTL", identity.DefaultAccessTokenTTL),
			RefreshTokenTTL:      env.Duration("MERCATO_REFRESH_TOKEN_TTL", identity.DefaultRefreshTokenTTL),
			KeyRotationInterval:  env.Duration("MERCATO_KEY_ROTATION", identity.DefaultKeyRotationInterval),
			KeyPublishLead:       env.Duration("MERCATO_KEY_PUBLISH_LEAD", identity.DefaultKeyPublishLead),
			MaxConcurrentHashes:  env.Int("MERCATO_MAX_CONCURRENT_HASHES", identity.DefaultMaxConcurrentHashes),
			LoginRatePerMinute:   env.Int("MERCATO_LOGIN_RATE_PER_MIN", identity.DefaultLoginRatePerMinute),
			LoginIPRatePerMinute: env.Int("MERCATO_LOGIN_IP_RATE_PER_MIN", identity.DefaultLoginIPRatePerMinute),
			ServiceSecret:        env.String("MERCATO_SERVICE_SECRET", ""),
		}
		return cfg, errors.Join(env.Err(), cfg.Validate())
	}
	return serviceCommand{
		serve: func(ctx context.Context, env *config.Env, logger *slog.Logger, _ io.Writer) error {
			cfg, err := read(env)
			if err != nil {
				return err
			}
			svc, err := identity.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.Run(ctx)
		},
		migrate: func(ctx context.Context, env *config.Env) error {
			common := readCommon(env, identity.Name)
			if err := env.Err(); err != nil {
				return err
			}
			return identity.Migrate(ctx, identity.Config{DB: common.DB})
		},
	}
}
