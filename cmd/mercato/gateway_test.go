package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/config"
)

func TestReadGatewayConfig(t *testing.T) {
	env := config.NewEnvFrom(map[string]string{
		"MERCATO_ADDR":                "127.0.0.1:8080",
		"MERCATO_HTTP_ADDR":           "127.0.0.1:9000",
		"MERCATO_IDENTITY_ADDR":       "127.0.0.1:9101",
		"MERCATO_CATALOG_ADDR":        "dns:///catalog:9090",
		"JWKS_URL":                    "http://127.0.0.1:9001/.well-known/jwks.json",
		"MERCATO_RATE_LIMIT_RPS":      "0",
		"MERCATO_BODY_LIMIT":          "2048",
		"MERCATO_REQUEST_TIMEOUT":     "3s",
		"MERCATO_CORS_ORIGINS":        " https://a.example, ,https://b.example ",
		"MERCATO_TRUST_FORWARDED_FOR": "true",
	})
	cfg := readGatewayConfig(env)
	require.NoError(t, env.Err())
	require.NoError(t, cfg.Validate())
	require.Equal(t, "127.0.0.1:8080", cfg.Addr)
	require.Equal(t, "127.0.0.1:9000", cfg.AdminAddr)
	require.Equal(t, map[string]string{
		"identity": "127.0.0.1:9101", "catalog": "dns:///catalog:9090", "inventory": "inventory:9090",
		"cart": "cart:9090", "orders": "orders:9090", "payments": "payments:9090", "notifications": "notifications:9090",
	}, cfg.Upstreams)
	require.Zero(t, cfg.RateLimitRPS)
	require.Equal(t, int64(2048), cfg.BodyLimitBytes)
	require.Equal(t, 3*time.Second, cfg.RequestTimeout)
	require.Equal(t, []string{"https://a.example", "https://b.example"}, cfg.CORSAllowedOrigins)
	require.True(t, cfg.TrustForwardedFor)

	defaults := readGatewayConfig(config.NewEnvFrom(nil))
	require.NoError(t, defaults.Validate())
	require.Equal(t, ":8080", defaults.Addr)
	require.Equal(t, "catalog:9090", defaults.Upstreams["catalog"])
	require.Equal(t, float64(100), defaults.RateLimitRPS)

	bad := config.NewEnvFrom(map[string]string{"MERCATO_RATE_LIMIT_RPS": "lots", "MERCATO_REQUEST_TIMEOUT": "soon"})
	readGatewayConfig(bad)
	require.ErrorContains(t, bad.Err(), "MERCATO_RATE_LIMIT_RPS")
	require.ErrorContains(t, bad.Err(), "MERCATO_REQUEST_TIMEOUT")
}
