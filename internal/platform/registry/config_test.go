package registry_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/registry"
)

func TestConfigValidateAcceptsEachKind(t *testing.T) {
	for _, cfg := range []registry.Config{
		{Kind: registry.KindStatic, Static: map[string][]string{"catalog": {"catalog:9090", "[::1]:9090"}}},
		{Kind: registry.KindDNS, DNS: registry.DNSConfig{
			Hosts: map[string]string{"catalog": "catalog.shop.svc.cluster.local.:9090"},
			SRV:   map[string]string{"orders": "_grpc._tcp.orders.shop.svc.cluster.local."},
		}},
		{Kind: registry.KindEtcd, Etcd: registry.EtcdConfig{Endpoints: []string{"http://etcd:2379", "10.0.0.1:2379"}, TTL: 5 * time.Second}},
	} {
		require.NoError(t, cfg.Validate(), cfg.Kind)
	}
}

func TestConfigValidateGivesOneClearMessagePerProblem(t *testing.T) {
	static := func(m map[string][]string) registry.Config {
		return registry.Config{Kind: registry.KindStatic, Static: m}
	}
	dnsHosts := func(m map[string]string) registry.Config {
		return registry.Config{Kind: registry.KindDNS, DNS: registry.DNSConfig{Hosts: m}}
	}
	etcd := func(e registry.EtcdConfig) registry.Config {
		if e.Endpoints == nil {
			e.Endpoints = []string{"http://etcd:2379"}
		}
		return registry.Config{Kind: registry.KindEtcd, Etcd: e}
	}
	for _, tc := range []struct {
		cfg  registry.Config
		want string
	}{
		{registry.Config{}, "registry kind is not set (want static, dns or etcd)"},
		{registry.Config{Kind: "consul"}, `registry kind "consul" is unknown (want static, dns or etcd)`},
		{static(nil), "static registry names no service"},
		{static(map[string][]string{"catalog": {}}), `static registry: service "catalog" has no address`},
		{static(map[string][]string{"catalog": {"catalog"}}), `static registry: service "catalog": address "catalog" is not host:port`},
		{static(map[string][]string{"a/b": {"x:1"}}), `static registry: service name "a/b" is empty or contains '/'`},
		{registry.Config{Kind: registry.KindDNS}, "dns registry names no service"},
		{dnsHosts(map[string]string{"catalog": "catalog.shop"}), `dns registry: service "catalog": "catalog.shop" is not host:port`},
		{dnsHosts(map[string]string{"catalog": "catalog.shop:http"}), `dns registry: service "catalog": "catalog.shop:http" is not host:port`},
		{registry.Config{Kind: registry.KindDNS, DNS: registry.DNSConfig{
			Hosts: map[string]string{"catalog": "catalog:9090"}, SRV: map[string]string{"catalog": "_grpc._tcp.catalog"},
		}}, `dns registry: service "catalog" has both a host and an SRV name`},
		{registry.Config{Kind: registry.KindDNS, DNS: registry.DNSConfig{SRV: map[string]string{"catalog": "_grpc._tcp.catalog:9090"}}},
			`dns registry: service "catalog": SRV name "_grpc._tcp.catalog:9090" must be a DNS name without a port`},
		{registry.Config{Kind: registry.KindDNS, DNS: registry.DNSConfig{Hosts: map[string]string{"catalog": "catalog:9090"}, Interval: -time.Second}},
			"dns registry: interval must not be negative"},
		{registry.Config{Kind: registry.KindDNS, DNS: registry.DNSConfig{Hosts: map[string]string{"catalog": "catalog:9090"}, Server: "10.0.0.10"}},
			`dns registry: server "10.0.0.10" is not host:port`},
		{registry.Config{Kind: registry.KindEtcd}, "etcd registry has no endpoints"},
		{etcd(registry.EtcdConfig{Endpoints: []string{"https://etcd:2379"}}), `etcd registry: endpoint "https://etcd:2379" is not http://host:port or host:port (TLS is not supported)`},
		{etcd(registry.EtcdConfig{Endpoints: []string{"etcd"}}), `etcd registry: endpoint "etcd" is not http://host:port or host:port (TLS is not supported)`},
		{etcd(registry.EtcdConfig{Prefix: "mercato"}), `etcd registry: prefix "mercato" must start with '/'`},
		{etcd(registry.EtcdConfig{TTL: 500 * time.Millisecond}), "etcd registry: lease TTL 500ms must be whole seconds, at least 1s"},
		{etcd(registry.EtcdConfig{TTL: 1500 * time.Millisecond}), "etcd registry: lease TTL 1.5s must be whole seconds, at least 1s"},
		{etcd(registry.EtcdConfig{DialTimeout: -time.Second}), "etcd registry: dial timeout must not be negative"},
	} {
		err := tc.cfg.Validate()
		var cerr *config.Error
		require.True(t, errors.As(err, &cerr), "%+v: %v is a configuration error", tc.cfg, err)
		require.Len(t, cerr.Problems, 1, "%+v: %v", tc.cfg, err)
		require.EqualError(t, cerr.Problems[0], tc.want)

		_, err = registry.Open(tc.cfg, nil)
		require.True(t, errors.As(err, &cerr), "Open refuses it as a configuration error")
	}
}
