package registry_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/mercato-dev/mercato/internal/platform/registry"
)

const keyPrefix = "/mercato/services/"

// rawEtcd is a plain etcd client, to look at what the registry wrote.
func rawEtcd(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func first(t *testing.T, ch <-chan []registry.Instance) []registry.Instance {
	t.Helper()
	select {
	case set, ok := <-ch:
		require.True(t, ok, "watch closed before its first set")
		return set
	case <-time.After(5 * time.Second):
		require.FailNow(t, "watch sent no first set")
		return nil
	}
}

func TestEtcdWatchFollowsRegistrations(t *testing.T) {
	etcd := startEtcd(t)
	raw := rawEtcd(t, etcd.endpoint())
	servers := openEtcd(t, etcd.endpoint(), 0, nil)
	clients := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()

	sets, err := clients.Watch(ctx, "catalog")
	require.NoError(t, err)
	require.Empty(t, first(t, sets), "no instance is registered yet")

	c1 := registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "127.0.0.1:7001", AdminAddr: "127.0.0.1:8001", Metadata: map[string]string{"zone": "a"}}
	one, err := servers.Register(ctx, c1)
	require.NoError(t, err)
	two, err := servers.Register(ctx, registry.Instance{Service: "catalog", ID: "c2", GRPCAddr: "127.0.0.1:7002"})
	require.NoError(t, err)
	// A service whose name starts with another's is not part of it.
	_, err = servers.Register(ctx, registry.Instance{Service: "catalogue", ID: "x", GRPCAddr: "127.0.0.1:7003"})
	require.NoError(t, err)

	set := waitSet(t, sets, 5*time.Second, "c1", "c2")
	require.Equal(t, c1, set[0], "every field travels")

	resp, err := raw.Get(ctx, keyPrefix+"catalog/c1")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	lease, _ := registry.RegistrationState(one)
	require.Equal(t, lease, resp.Kvs[0].Lease, "the key is under the registration's lease")

	require.NoError(t, one.Deregister(ctx))
	waitSet(t, sets, 5*time.Second, "c2")
	require.NoError(t, one.Deregister(ctx), "deregistering twice is fine")
	ttl, err := raw.TimeToLive(ctx, clientv3.LeaseID(lease))
	require.NoError(t, err)
	require.EqualValues(t, -1, ttl.TTL, "deregistering revokes the lease")

	// A later watch starts from the current set.
	wctx, cancel := context.WithCancel(ctx)
	later, err := clients.Watch(wctx, "catalog")
	require.NoError(t, err)
	require.Equal(t, []string{"c2"}, idsOf(first(t, later)))
	cancel()
	eventually(t, 5*time.Second, func() bool { _, ok := <-later; return !ok }, "a watch closes when its context ends")

	require.NoError(t, two.Deregister(ctx))
	waitSet(t, sets, 5*time.Second)

	require.NoError(t, clients.Close())
	eventually(t, 5*time.Second, func() bool { _, ok := <-sets; return !ok }, "Close ends every watch")
	require.NoError(t, clients.Close(), "Close is idempotent")
	_, err = clients.Watch(ctx, "catalog")
	require.ErrorIs(t, err, registry.ErrClosed)
	_, err = clients.Register(ctx, c1)
	require.ErrorIs(t, err, registry.ErrClosed)
}

func TestEtcdRegisterRefusesAnInvalidInstance(t *testing.T) {
	etcd := startEtcd(t)
	reg := openEtcd(t, etcd.endpoint(), 0, nil)
	for _, inst := range []registry.Instance{
		{ID: "a", GRPCAddr: "127.0.0.1:1"},
		{Service: "catalog", GRPCAddr: "127.0.0.1:1"},
		{Service: "catalog", ID: "a/b", GRPCAddr: "127.0.0.1:1"},
		{Service: "catalog", ID: "a"},
	} {
		_, err := reg.Register(t.Context(), inst)
		require.ErrorIs(t, err, registry.ErrInvalidInstance, "%+v", inst)
	}
}

func TestEtcdRegisterFailsWhenEtcdDoesNotAnswer(t *testing.T) {
	reg := openEtcd(t, "http://"+freePort(t), 0, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err := reg.Register(ctx, registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "127.0.0.1:1"})
	require.Error(t, err)
	_, err = reg.Watch(t.Context(), "catalog")
	require.Error(t, err, "a watch whose first read fails says so")
}

func TestEtcdInstanceOfADeadProcessExpires(t *testing.T) {
	etcd := startEtcd(t)
	raw := rawEtcd(t, etcd.endpoint())
	dying := openEtcd(t, etcd.endpoint(), 2*time.Second, nil)
	clients := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()
	sets, err := clients.Watch(ctx, "catalog")
	require.NoError(t, err)

	_, err = dying.Register(ctx, registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "127.0.0.1:7001"})
	require.NoError(t, err)
	waitSet(t, sets, 5*time.Second, "c1")

	require.NoError(t, dying.Close())
	resp, err := raw.Get(ctx, keyPrefix+"catalog/c1")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "closing without deregistering leaves the key to its lease")
	closed := time.Now()
	waitSet(t, sets, 10*time.Second)
	require.Greater(t, time.Since(closed), 500*time.Millisecond, "the key went with the lease, not with Close")
}

// An etcd restart longer than the TTL: the keep-alives stop, the instance
// registers again as soon as etcd is back (etcd kept the lease, so the key
// never goes away), and a client calling through the resolver meanwhile
// never fails: the last set stands while etcd is gone.
func TestEtcdRegistrationsAndWatchesSurviveAnEtcdRestart(t *testing.T) {
	etcd := startEtcd(t)
	raw := rawEtcd(t, etcd.endpoint())
	logs := &logRecorder{}
	serving := openEtcd(t, etcd.endpoint(), 3*time.Second, slog.New(logs))
	calling := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()

	s1, s2, s3 := startHealthServer(t, "127.0.0.1:0"), startHealthServer(t, "127.0.0.1:0"), startHealthServer(t, "127.0.0.1:0")
	r1, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "s1", GRPCAddr: s1.addr})
	require.NoError(t, err)
	r2, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "s2", GRPCAddr: s2.addr})
	require.NoError(t, err)
	sets, err := calling.Watch(ctx, "catalog")
	require.NoError(t, err)
	waitSet(t, sets, 5*time.Second, "s1", "s2")

	client := dialThrough(t, calling, "catalog")
	var failed atomic.Int64
	var lastErr atomic.Value
	callCtx, stopCalls := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-callCtx.Done():
				return
			case <-tick.C:
			}
			if _, err := check(callCtx, client); err != nil && callCtx.Err() == nil {
				failed.Add(1)
				lastErr.Store(err.Error())
			}
		}
	}()
	eventually(t, 10*time.Second, func() bool { return s1.calls.Load() > 0 && s2.calls.Load() > 0 }, "calls reach both instances")

	etcd.stop()
	eventually(t, 15*time.Second, func() bool {
		_, ok1 := registry.RegistrationState(r1)
		_, ok2 := registry.RegistrationState(r2)
		return !ok1 && !ok2
	}, "the keep-alives notice that etcd is gone")
	before1, before2 := s1.calls.Load(), s2.calls.Load()
	eventually(t, 5*time.Second, func() bool { return s1.calls.Load() > before1 && s2.calls.Load() > before2 },
		"calls reach both instances while etcd is down")

	etcd.start()
	eventually(t, 15*time.Second, func() bool {
		_, ok1 := registry.RegistrationState(r1)
		_, ok2 := registry.RegistrationState(r2)
		return ok1 && ok2
	}, "both instances register again once etcd is back")
	for id, r := range map[string]registry.Registration{"s1": r1, "s2": r2} {
		lease, _ := registry.RegistrationState(r)
		resp, err := raw.Get(ctx, keyPrefix+"catalog/"+id)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, id)
		require.Equal(t, lease, resp.Kvs[0].Lease, "%s is under the lease it keeps alive", id)
		ttl, err := raw.TimeToLive(ctx, clientv3.LeaseID(lease))
		require.NoError(t, err)
		require.Positive(t, ttl.TTL, "%s's lease is alive", id)
	}
	require.GreaterOrEqual(t, logs.count("registry lease lost, registering again"), 2)
	require.GreaterOrEqual(t, logs.count("registry registered again"), 2)

	// The watch follows changes again, and so does the resolver.
	r3, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "s3", GRPCAddr: s3.addr})
	require.NoError(t, err)
	waitSet(t, sets, 10*time.Second, "s1", "s2", "s3")
	eventually(t, 10*time.Second, func() bool { return s3.calls.Load() > 0 }, "calls reach the instance registered after the restart")
	require.NoError(t, r3.Deregister(ctx))
	waitSet(t, sets, 10*time.Second, "s1", "s2")
	before1, before2 = s1.calls.Load(), s2.calls.Load()
	eventually(t, 5*time.Second, func() bool { return s1.calls.Load() > before1 && s2.calls.Load() > before2 },
		"calls reach both instances after the restart")

	stopCalls()
	<-done
	require.Zero(t, failed.Load(), "no call failed through the outage (last error: %v)", lastErr.Load())
}

// A partition longer than the TTL between an instance and etcd, which stays
// up: etcd expires the lease and watchers see the instance go; once the
// partition heals it registers again under a new lease.
func TestEtcdRegistrationComesBackAfterAPartition(t *testing.T) {
	etcd := startEtcd(t)
	raw := rawEtcd(t, etcd.endpoint())
	link := startProxy(t, etcd.clientAddr)
	partitioned := openEtcd(t, link.endpoint(), 2*time.Second, nil)
	clients := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()
	sets, err := clients.Watch(ctx, "catalog")
	require.NoError(t, err)

	reg, err := partitioned.Register(ctx, registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "127.0.0.1:7001"})
	require.NoError(t, err)
	waitSet(t, sets, 5*time.Second, "c1")
	lease, _ := registry.RegistrationState(reg)

	link.setCut(true)
	waitSet(t, sets, 15*time.Second)
	eventually(t, 10*time.Second, func() bool { _, ok := registry.RegistrationState(reg); return !ok },
		"the instance notices it lost its lease")

	link.setCut(false)
	waitSet(t, sets, 15*time.Second, "c1")
	eventually(t, 5*time.Second, func() bool { _, ok := registry.RegistrationState(reg); return ok }, "registered again")
	now, _ := registry.RegistrationState(reg)
	require.NotEqual(t, lease, now, "the expired lease is replaced")
	resp, err := raw.Get(ctx, keyPrefix+"catalog/c1")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, now, resp.Kvs[0].Lease)
}

// A watch cut off from etcd while its revisions are compacted away cannot
// resume where it was; it reads the whole set again.
func TestEtcdWatchReloadsAfterACompaction(t *testing.T) {
	etcd := startEtcd(t)
	raw := rawEtcd(t, etcd.endpoint())
	link := startProxy(t, etcd.clientAddr)
	logs := &logRecorder{}
	watching := openEtcd(t, link.endpoint(), 0, slog.New(logs))
	serving := openEtcd(t, etcd.endpoint(), 0, nil)
	ctx := t.Context()

	r1, err := serving.Register(ctx, registry.Instance{Service: "catalog", ID: "c1", GRPCAddr: "127.0.0.1:7001"})
	require.NoError(t, err)
	sets, err := watching.Watch(ctx, "catalog")
	require.NoError(t, err)
	waitSet(t, sets, 5*time.Second, "c1")

	link.setCut(true)
	_, err = serving.Register(ctx, registry.Instance{Service: "catalog", ID: "c2", GRPCAddr: "127.0.0.1:7002"})
	require.NoError(t, err)
	require.NoError(t, r1.Deregister(ctx))
	resp, err := raw.Get(ctx, "/")
	require.NoError(t, err)
	_, err = raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	require.NoError(t, err)

	link.setCut(false)
	waitSet(t, sets, 15*time.Second, "c2")
	require.Positive(t, logs.count("registry watch fell behind a compaction, reading the set again"))
}
