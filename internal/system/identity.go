package system

import (
	"net/http"

	"github.com/mercato-dev/mercato/internal/gateway"
	identityv1 "github.com/mercato-dev/mercato/internal/gen/identity/v1"
	"github.com/mercato-dev/mercato/internal/identity"
	"github.com/mercato-dev/mercato/internal/platform/config"
)

func identityService() Service {
	return Service{
		Name:     identity.Name,
		Database: true,
		Streams:  identity.Streams,
		API: &gateway.API{
			Register: identityv1.RegisterIdentityServiceHandler,
			Statuses: map[string]int{
				identityv1.IdentityService_Register_FullMethodName: http.StatusCreated,
				identityv1.IdentityService_Logout_FullMethodName:   http.StatusNoContent,
			},
			Retryable: []string{identityv1.IdentityService_GetMe_FullMethodName, identityv1.IdentityService_GetJWKS_FullMethodName},
			Access: []gateway.Rule{
				{Prefix: "/api/v1/auth/logout", Access: gateway.SignedIn},
				{Prefix: "/api/v1/auth", Access: gateway.Anyone},
				{Prefix: "/api/v1/me", Access: gateway.SignedIn},
				{Prefix: "/.well-known/jwks.json", Access: gateway.Anyone},
			},
		},
		Serve:   serve(readIdentity, identity.New),
		Migrate: migrate(identity.Name, identity.Migrate),
	}
}

// readIdentity reads identity's configuration. Besides the common settings
// (JWKS_URL aside: identity verifies with its own keys) it reads:
//
//	MERCATO_ADMIN_EMAIL            bootstrap admin account email           (unset: none)
//	MERCATO_ADMIN_PASSWORD         bootstrap admin password, 8-128 chars   (unset: none)
//	MERCATO_ACCESS_TOKEN_TTL       access token lifetime                   (15m)
//	MERCATO_REFRESH_TOKEN_TTL      refresh token lifetime                  (720h)
//	MERCATO_KEY_ROTATION           how long a signing key signs            (24h)
//	MERCATO_KEY_PUBLISH_LEAD       how long a key is published before use  (10m)
//	MERCATO_MAX_CONCURRENT_HASHES  argon2id hashes at once (19 MiB each)   (4)
//	MERCATO_LOGIN_RATE_PER_MIN     login attempts per email per minute     (5; 0 disables)
//	MERCATO_LOGIN_IP_RATE_PER_MIN  login attempts per client IP per minute (20; 0 disables)
//	MERCATO_SERVICE_SECRET         secret services exchange for service tokens (unset: off)
func readIdentity(env *config.Env) (identity.Config, error) {
	c := readCommon(env, identity.Name)
	cfg := identity.Config{
		Server:               c.Server,
		DB:                   c.DB,
		Events:               c.Events,
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
	return cfg, checked(identity.Name, env, cfg)
}
