package system

import (
	"strings"
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
	var upstreams []Service
	for _, s := range Services() {
		if s.API != nil {
			upstreams = append(upstreams, s)
		}
	}
	cfg, err := readGateway(env, upstreams)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", cfg.Addr)
	require.Equal(t, "127.0.0.1:9000", cfg.AdminAddr)
	targets := map[string]string{}
	for _, u := range cfg.Upstreams {
		targets[u.Name] = u.Target
	}
	want := map[string]string{}
	for _, u := range upstreams {
		want[u.Name] = "mercato:///" + u.Name // through the registry
	}
	want["catalog"] = "dns:///catalog:9090" // a target URI is used as it is
	require.Equal(t, want, targets)
	require.Equal(t, "static", cfg.Registry.Kind)
	require.Equal(t, []string{"127.0.0.1:9101"}, cfg.Registry.Static["identity"])
	require.Equal(t, []string{"orders:9090"}, cfg.Registry.Static["orders"], "a Kubernetes service name by default")
	require.NotContains(t, cfg.Registry.Static, "catalog")
	require.Zero(t, cfg.RateLimitRPS)
	require.Equal(t, int64(2048), cfg.BodyLimitBytes)
	require.Equal(t, 3*time.Second, cfg.RequestTimeout)
	require.Equal(t, []string{"https://a.example", "https://b.example"}, cfg.CORSAllowedOrigins)
	require.True(t, cfg.TrustForwardedFor)

	defaults, err := readGateway(config.NewEnvFrom(nil), upstreams)
	require.NoError(t, err)
	require.Equal(t, ":8080", defaults.Addr)
	require.Equal(t, "mercato:///catalog", defaults.Upstreams[1].Target)
	require.Equal(t, []string{"catalog:9090"}, defaults.Registry.Static["catalog"])
	require.Equal(t, float64(100), defaults.RateLimitRPS)

	_, err = readGateway(config.NewEnvFrom(map[string]string{"MERCATO_RATE_LIMIT_RPS": "lots", "MERCATO_REQUEST_TIMEOUT": "soon"}), upstreams)
	require.ErrorContains(t, err, "MERCATO_RATE_LIMIT_RPS")
	require.ErrorContains(t, err, "MERCATO_REQUEST_TIMEOUT")
	var cfgErr *config.Error
	require.ErrorAs(t, err, &cfgErr)
}

func TestReadCatalogConfig(t *testing.T) {
	cfg, err := readCatalog(config.NewEnvFrom(map[string]string{
		"REDIS_URL":                     "redis://cache:6379/1",
		"MERCATO_CATALOG_CACHE_TTL":     "5m",
		"MERCATO_CATALOG_CACHE_TIMEOUT": "20ms",
	}))
	require.NoError(t, err)
	require.Equal(t, "redis://cache:6379/1", cfg.Cache.RedisURL)
	require.Equal(t, 5*time.Minute, cfg.Cache.TTL)
	require.Equal(t, 20*time.Millisecond, cfg.Cache.Timeout)

	defaults, err := readCatalog(config.NewEnvFrom(nil))
	require.NoError(t, err)
	require.Empty(t, defaults.Cache.RedisURL, "no cache unless asked for")
	require.Equal(t, 60*time.Second, defaults.Cache.TTL)
	require.Equal(t, 100*time.Millisecond, defaults.Cache.Timeout)

	_, err = readCatalog(config.NewEnvFrom(map[string]string{"REDIS_URL": "redis://cache", "MERCATO_CATALOG_CACHE_TTL": "a while"}))
	require.ErrorContains(t, err, "MERCATO_CATALOG_CACHE_TTL")
	_, err = readCatalog(config.NewEnvFrom(map[string]string{"REDIS_URL": "redis://cache", "MERCATO_CATALOG_CACHE_TTL": "100h"}))
	require.ErrorContains(t, err, "cache TTL")
}

func TestReadRegistry(t *testing.T) {
	replicas := config.NewEnvFrom(map[string]string{"MERCATO_CATALOG_ADDR": "127.0.0.1:9001, 127.0.0.1:9002"})
	cfg := readRegistry(replicas, "cart")
	require.Equal(t, map[string][]string{"catalog": {"127.0.0.1:9001", "127.0.0.1:9002"}}, cfg.Static)
	require.NoError(t, cfg.Validate())

	require.Zero(t, readRegistry(config.NewEnvFrom(nil), "catalog"), "calls no one, registers nowhere")

	dns := readRegistry(config.NewEnvFrom(map[string]string{"MERCATO_REGISTRY": "dns", "MERCATO_CATALOG_ADDR": "catalog.shop.svc.cluster.local.:9090"}), "cart")
	require.Equal(t, map[string]string{"catalog": "catalog.shop.svc.cluster.local.:9090"}, dns.DNS.Hosts)

	etcd := readRegistry(config.NewEnvFrom(map[string]string{"MERCATO_REGISTRY": "etcd", "MERCATO_ETCD_ENDPOINTS": "http://etcd-0:2379, http://etcd-1:2379"}), "catalog")
	require.Equal(t, []string{"http://etcd-0:2379", "http://etcd-1:2379"}, etcd.Etcd.Endpoints)
	require.NoError(t, etcd.WithDefaults().Validate())

	for vars, want := range map[string]string{
		"MERCATO_REGISTRY=consul": "consul",
		"MERCATO_REGISTRY=etcd":   "endpoint",
	} {
		k, v, _ := strings.Cut(vars, "=")
		_, err := readCatalog(config.NewEnvFrom(map[string]string{k: v}))
		require.ErrorContains(t, err, want, vars)
		var cfgErr *config.Error
		require.ErrorAs(t, err, &cfgErr, "%s is a configuration problem", vars)
	}
}
