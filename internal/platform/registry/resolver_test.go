package registry_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/registry"
)

func TestTarget(t *testing.T) {
	require.Equal(t, "mercato:///catalog", registry.Target("catalog"))
}

// callsReachOnly makes calls until a run of 20 in a row reaches only want,
// and fails when none does before the deadline.
func callsReachOnly(t *testing.T, client healthpb.HealthClient, want *healthServer, others ...*healthServer) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool {
		before := make([]int64, len(others))
		for i, o := range others {
			before[i] = o.calls.Load()
		}
		for range 20 {
			addr, err := check(t.Context(), client)
			if err != nil || addr != want.addr {
				return false
			}
		}
		for i, o := range others {
			if o.calls.Load() != before[i] {
				return false
			}
		}
		return true
	}, "calls go only to %s", want.addr)
}

func TestResolverBalancesOverTheRegisteredInstances(t *testing.T) {
	etcd := startEtcd(t)
	serving := openEtcd(t, etcd.endpoint(), 0, nil)
	calling := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()
	s1, s2 := startHealthServer(t, "127.0.0.1:0"), startHealthServer(t, "127.0.0.1:0")
	_, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "s1", GRPCAddr: s1.addr})
	require.NoError(t, err)
	r2, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "s2", GRPCAddr: s2.addr})
	require.NoError(t, err)

	client := dialThrough(t, calling, "catalog")
	eventually(t, 10*time.Second, func() bool {
		_, _ = check(ctx, client)
		return s1.calls.Load() > 0 && s2.calls.Load() > 0
	}, "round-robin calls reach both instances")

	// s2 keeps serving: only the registry tells the client to stop using it.
	require.NoError(t, r2.Deregister(ctx))
	callsReachOnly(t, client, s1, s2)
}

// A connection failure makes gRPC re-resolve; the dns registry looks the
// name up then instead of at its next interval (an hour here).
func TestResolverReResolvesDNSWhenAConnectionFails(t *testing.T) {
	// Two instances on one port, as pods behind a headless service are.
	first := startHealthServer(t, "127.0.0.1:0")
	_, port, err := net.SplitHostPort(first.addr)
	require.NoError(t, err)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	}
	require.NoError(t, l.Close())
	second := startHealthServer(t, net.JoinHostPort("127.0.0.2", port))

	server := startDNS(t)
	server.setA("catalog.test.", "127.0.0.1", "127.0.0.2")
	reg := openDNS(t, registry.DNSConfig{
		Hosts:    map[string]string{"catalog": "catalog.test.:" + port},
		Interval: time.Hour,
		Server:   server.addr,
	}, nil)
	client := dialThrough(t, reg, "catalog")
	eventually(t, 10*time.Second, func() bool {
		_, _ = check(t.Context(), client)
		return first.calls.Load() > 0 && second.calls.Load() > 0
	}, "round-robin calls reach both addresses")

	server.setA("catalog.test.", "127.0.0.1")
	asked := server.queries.Load()
	second.srv.Stop()
	eventually(t, 10*time.Second, func() bool { return server.queries.Load() > asked }, "the lost connection makes the registry look up the name")
	callsReachOnly(t, client, first)
}

func TestResolverReportsWhatTheRegistryCannotResolve(t *testing.T) {
	reg, err := registry.Open(registry.Config{Kind: registry.KindStatic, Static: map[string][]string{"catalog": {"127.0.0.1:1"}}}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Close() })

	client := dialThrough(t, reg, "orders")
	_, err = check(t.Context(), client)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "service is not configured")

	conn, err := grpc.NewClient("mercato:///", registry.WithResolver(reg, nil), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = check(t.Context(), healthpb.NewHealthClient(conn))
	require.ErrorContains(t, err, "names no service")
}
