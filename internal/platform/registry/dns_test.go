package registry_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/registry"
)

func openDNS(t *testing.T, cfg registry.DNSConfig, logger *slog.Logger) registry.Registry {
	t.Helper()
	reg, err := registry.Open(registry.Config{Kind: registry.KindDNS, DNS: cfg}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func TestDNSWatchFollowsTheAddressesOfAName(t *testing.T) {
	server := startDNS(t)
	server.setA("catalog.test.", "127.0.0.1", "127.0.0.2")
	reg := openDNS(t, registry.DNSConfig{
		Hosts:    map[string]string{"catalog": "catalog.test.:9090"},
		Interval: 100 * time.Millisecond,
		Server:   server.addr,
	}, nil)
	ctx := t.Context()

	sets, err := reg.Watch(ctx, "catalog")
	require.NoError(t, err)
	require.Equal(t, []registry.Instance{
		{Service: "catalog", ID: "127.0.0.1:9090", GRPCAddr: "127.0.0.1:9090"},
		{Service: "catalog", ID: "127.0.0.2:9090", GRPCAddr: "127.0.0.2:9090"},
	}, first(t, sets))

	// Unchanged records send nothing new, however often they are looked up.
	asked := server.queries.Load()
	eventually(t, 5*time.Second, func() bool { return server.queries.Load() >= asked+6 }, "lookups go on every interval")
	select {
	case set := <-sets:
		require.FailNow(t, "an unchanged set was sent again", "%v", idsOf(set))
	default:
	}

	server.setA("catalog.test.", "127.0.0.2", "127.0.0.3")
	waitSet(t, sets, 2*time.Second, "127.0.0.2:9090", "127.0.0.3:9090")

	// A name without records (a headless service with no ready pod) is a
	// service without instances.
	server.setA("catalog.test.")
	waitSet(t, sets, 2*time.Second)
	server.setA("catalog.test.", "127.0.0.4")
	waitSet(t, sets, 2*time.Second, "127.0.0.4:9090")

	_, err = reg.Watch(ctx, "orders")
	require.ErrorIs(t, err, registry.ErrUnknownService)
	reg2, err := reg.Register(ctx, registry.Instance{Service: "catalog", ID: "x", GRPCAddr: "127.0.0.1:1"})
	require.NoError(t, err, "registering is the orchestrator's business; it changes nothing")
	require.NoError(t, reg2.Deregister(ctx))

	require.NoError(t, reg.Close())
	eventually(t, 5*time.Second, func() bool { _, ok := <-sets; return !ok }, "Close ends every watch")
	_, err = reg.Watch(ctx, "catalog")
	require.ErrorIs(t, err, registry.ErrClosed)
}

func TestDNSRefreshLooksUpAtOnce(t *testing.T) {
	server := startDNS(t)
	server.setA("catalog.test.", "127.0.0.1")
	reg := openDNS(t, registry.DNSConfig{
		Hosts:    map[string]string{"catalog": "catalog.test.:9090"},
		Interval: time.Hour,
		Server:   server.addr,
	}, nil)
	sets, err := reg.Watch(t.Context(), "catalog")
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:9090"}, idsOf(first(t, sets)))

	server.setA("catalog.test.", "127.0.0.2")
	refresher, ok := reg.(registry.Refresher)
	require.True(t, ok, "the dns registry re-resolves on demand")
	refresher.Refresh("catalog")
	waitSet(t, sets, 5*time.Second, "127.0.0.2:9090")
}

func TestDNSWatchFollowsSRVRecords(t *testing.T) {
	server := startDNS(t)
	server.setA("a.catalog.test.", "127.0.0.1")
	server.setA("b.catalog.test.", "127.0.0.2")
	srv := func(target string, port uint16) dns.SRV {
		return dns.SRV{Priority: 0, Weight: 10, Port: port, Target: target}
	}
	server.setSRV("_grpc._tcp.catalog.test.", srv("a.catalog.test.", 7001), srv("b.catalog.test.", 7002), srv("b.catalog.test.", 7002))
	reg := openDNS(t, registry.DNSConfig{
		SRV:      map[string]string{"catalog": "_grpc._tcp.catalog.test."},
		Interval: 100 * time.Millisecond,
		Server:   server.addr,
	}, nil)

	sets, err := reg.Watch(t.Context(), "catalog")
	require.NoError(t, err)
	require.Equal(t, []registry.Instance{
		{Service: "catalog", ID: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:7001", Metadata: map[string]string{"srv_target": "a.catalog.test"}},
		{Service: "catalog", ID: "127.0.0.2:7002", GRPCAddr: "127.0.0.2:7002", Metadata: map[string]string{"srv_target": "b.catalog.test"}},
	}, first(t, sets), "each target on its record's port, a repeated record once")

	server.setSRV("_grpc._tcp.catalog.test.", srv("b.catalog.test.", 7002))
	waitSet(t, sets, 2*time.Second, "127.0.0.2:7002")
	server.setA("b.catalog.test.", "127.0.0.2", "127.0.0.3")
	waitSet(t, sets, 2*time.Second, "127.0.0.2:7002", "127.0.0.3:7002")
}

func TestDNSKeepsTheLastSetWhenTheServerStopsAnswering(t *testing.T) {
	server := startDNS(t)
	server.setA("catalog.test.", "127.0.0.1")
	logs := &logRecorder{}
	reg := openDNS(t, registry.DNSConfig{
		Hosts:    map[string]string{"catalog": "catalog.test.:9090"},
		Interval: 50 * time.Millisecond,
		Server:   server.addr,
	}, slog.New(logs))
	sets, err := reg.Watch(t.Context(), "catalog")
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:9090"}, idsOf(first(t, sets)))

	require.NoError(t, server.server.Shutdown())
	eventually(t, 15*time.Second, func() bool { return logs.count("registry lookup failed, keeping the last set") >= 2 },
		"lookups fail once the server is gone")
	select {
	case set := <-sets:
		require.FailNow(t, "a failed lookup changed the set", "%v", idsOf(set))
	default:
	}

	// A watch that cannot make its first lookup says so.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err = reg.Watch(ctx, "catalog")
	require.Error(t, err)
	require.NotErrorIs(t, err, registry.ErrUnknownService)
}
