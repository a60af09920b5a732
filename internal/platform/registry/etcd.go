package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// etcdRegistry keeps each registered instance as a key under a lease that
// its process keeps alive, and watches a service's keys. A process that
// dies stops the keep-alives and its key goes with the lease after the TTL.
type etcdRegistry struct {
	cfg  EtcdConfig
	cli  *clientv3.Client
	log  *slog.Logger
	life *lifecycle

	closeOnce sync.Once
	closeErr  error
}

func newEtcd(cfg EtcdConfig, logger *slog.Logger) (*etcdRegistry, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// A connection to a member that vanished (a partition) is noticed in
		// seconds, not when the kernel gives up on it.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// The registry logs what it retries itself, with the service's logger.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// gRPC's reconnect backoff grows to two minutes; a registration
			// lost in an outage must come back as soon as etcd answers.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd registry: %w", err)
	}
	return &etcdRegistry{cfg: cfg, cli: cli, log: logger, life: newLifecycle()}, nil
}

func (r *etcdRegistry) key(service, id string) string { return r.cfg.Prefix + service + "/" + id }

func (r *etcdRegistry) Register(ctx context.Context, inst Instance) (Registration, error) {
	if r.life.isClosed() {
		return nil, ErrClosed
	}
	if err := inst.validate(); err != nil {
		return nil, err
	}
	value, err := json.Marshal(inst)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: encode %s/%s: %w", inst.Service, inst.ID, err)
	}
	reg := &etcdRegistration{r: r, inst: inst, key: r.key(inst.Service, inst.ID), value: string(value), done: make(chan struct{})}
	b := newBackoff()
	for {
		err := reg.register(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || !b.wait(ctx) {
			_ = reg.revoke(context.WithoutCancel(ctx)) // a grant that did land must not linger for a TTL
			return nil, fmt.Errorf("etcd registry: register %s/%s: %w", inst.Service, inst.ID, err)
		}
	}
	loopCtx, cancel := mergeDone(context.Background(), r.life.ctx)
	reg.stop = cancel
	if err := r.life.goroutine(func() { defer close(reg.done); reg.keepAlive(loopCtx) }); err != nil {
		cancel()
		return nil, err
	}
	return reg, nil
}

type etcdRegistration struct {
	r     *etcdRegistry
	inst  Instance
	key   string
	value string
	stop  context.CancelFunc
	done  chan struct{} // closed when keepAlive has returned

	stopOnce   sync.Once
	mu         sync.Mutex
	lease      clientv3.LeaseID // the lease the key was last put under
	registered bool             // false from a lost keep-alive until registered again
	gone       bool             // deregistered
}

// register puts the key under a live lease: the one it had, while etcd still
// keeps it, else a new one. Keeping the lease matters after an etcd restart
// (etcd keeps leases and gives them a full TTL again): the key never goes
// away, where moving it to a new lease would race the old one's expiry. A
// lease is recorded as soon as it is granted, so one whose put's outcome is
// unknown is reused or revoked, never leaked.
func (g *etcdRegistration) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.r.cfg.DialTimeout)
	defer cancel()
	g.mu.Lock()
	lease := g.lease
	g.mu.Unlock()
	if lease != 0 {
		_, err := g.r.cli.KeepAliveOnce(ctx, lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			lease = 0 // expired (an outage or partition longer than the TTL) or revoked
		} else if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
	}
	if lease == 0 {
		resp, err := g.r.cli.Grant(ctx, int64(g.r.cfg.TTL/time.Second))
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		lease = resp.ID
		g.mu.Lock()
		g.lease = lease
		g.mu.Unlock()
	}
	if _, err := g.r.cli.Put(ctx, g.key, g.value, clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("put %s: %w", g.key, err)
	}
	g.mu.Lock()
	g.registered = true
	g.mu.Unlock()
	return nil
}

// keepAlive keeps the lease alive until ctx ends. The keep-alive channel
// closes when the lease is gone: revoked, expired on the server, or not
// renewed for a TTL because etcd could not be reached. Then the instance
// registers again, retrying until etcd answers: a registered instance never
// gives up.
func (g *etcdRegistration) keepAlive(ctx context.Context) {
	log := g.r.log.With("service", g.inst.Service, "id", g.inst.ID)
	for {
		lease := g.state()
		ch, err := g.r.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
				// Each response is a renewal; the loop ends when they stop.
			}
		}
		if ctx.Err() != nil {
			return
		}
		g.mu.Lock()
		g.registered = false
		g.mu.Unlock()
		log.Warn("registry lease lost, registering again", "lease", int64(lease), "error", err)
		b := newBackoff()
		for {
			err := g.register(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if b.attempt == 0 {
				log.Warn("registry cannot register yet, retrying", "error", err)
			}
			if !b.wait(ctx) {
				return
			}
		}
		now := g.state()
		log.Info("registry registered again", "lease", int64(now), "lease_kept", now == lease)
	}
}

func (g *etcdRegistration) state() clientv3.LeaseID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lease
}

// revoke revokes the lease, which deletes the key.
func (g *etcdRegistration) revoke(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lease == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, g.r.cfg.DialTimeout)
	defer cancel()
	if _, err := g.r.cli.Revoke(rctx, g.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd registry: deregister %s/%s: %w", g.inst.Service, g.inst.ID, err)
	}
	g.lease, g.registered, g.gone = 0, false, true
	return nil
}

func (g *etcdRegistration) Deregister(ctx context.Context) error {
	g.stopOnce.Do(g.stop)
	<-g.done
	g.mu.Lock()
	gone := g.gone
	g.mu.Unlock()
	if gone {
		return nil
	}
	if g.r.life.isClosed() {
		return ErrClosed
	}
	return g.revoke(ctx)
}

// Watch reads the service's keys, then follows changes from the revision
// read. The first read is bounded by the dial timeout, so a caller learns
// of an unreachable etcd instead of waiting on it.
func (r *etcdRegistry) Watch(ctx context.Context, service string) (<-chan []Instance, error) {
	if r.life.isClosed() {
		return nil, ErrClosed
	}
	if !validServiceName(service) {
		return nil, fmt.Errorf("etcd registry: service name %q: %w", service, ErrUnknownService)
	}
	w := &etcdWatch{r: r, service: service, prefix: r.cfg.Prefix + service + "/", out: newLatest(),
		log: r.log.With("service", service)}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	err := w.load(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd registry: watch %s: %w", service, err)
	}
	w.send()
	wctx, stop := mergeDone(ctx, r.life.ctx)
	err = r.life.goroutine(func() {
		defer stop()
		defer w.out.close()
		w.follow(wctx)
	})
	if err != nil {
		stop()
		return nil, err
	}
	return w.out.ch, nil
}

type etcdWatch struct {
	r       *etcdRegistry
	service string
	prefix  string
	log     *slog.Logger
	out     *latest
	set     map[string]Instance // by key
	rev     int64               // every change up to rev is in set
}

func (w *etcdWatch) load(ctx context.Context) error {
	resp, err := w.r.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	w.set = make(map[string]Instance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.apply(mvccpb.PUT, kv)
	}
	w.rev = resp.Header.Revision
	return nil
}

// follow watches from the revision after the last one seen. A broken watch
// (etcd restarting, a member without a leader) resumes from there; a watch
// that fell behind a compaction has lost changes, so it reads the whole set
// again. A set is sent after each change and stands meanwhile.
func (w *etcdWatch) follow(ctx context.Context) {
	b := newBackoff()
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := w.r.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.rev+1), clientv3.WithProgressNotify())
		compacted := false
		for resp := range ch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					compacted = true
				} else {
					w.log.Warn("registry watch broken, resuming", "revision", w.rev, "error", err)
				}
				break
			}
			if resp.IsProgressNotify() {
				w.rev = max(w.rev, resp.Header.Revision)
				continue
			}
			for _, ev := range resp.Events {
				w.apply(ev.Type, ev.Kv)
				w.rev = max(w.rev, ev.Kv.ModRevision)
			}
			w.send()
			b.reset()
		}
		cancel()
		if compacted {
			w.log.Info("registry watch fell behind a compaction, reading the set again", "revision", w.rev)
			if !w.reload(ctx, b) {
				return
			}
			continue
		}
		if ctx.Err() != nil || !b.wait(ctx) {
			return
		}
	}
}

// reload reads the whole set again until it succeeds (true) or ctx ends.
func (w *etcdWatch) reload(ctx context.Context, b *backoff) bool {
	for {
		lctx, cancel := context.WithTimeout(ctx, w.r.cfg.DialTimeout)
		err := w.load(lctx)
		cancel()
		if err == nil {
			w.send()
			return true
		}
		if ctx.Err() != nil || !b.wait(ctx) {
			return false
		}
	}
}

func (w *etcdWatch) apply(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	if typ == mvccpb.DELETE {
		delete(w.set, key)
		return
	}
	id := strings.TrimPrefix(key, w.prefix)
	var inst Instance
	if err := json.Unmarshal(kv.Value, &inst); err != nil || inst.GRPCAddr == "" || id == "" || strings.Contains(id, "/") {
		w.log.Warn("registry ignores a malformed instance", "key", key, "error", err)
		delete(w.set, key)
		return
	}
	// The key names the instance; a value that says otherwise is not trusted.
	inst.Service, inst.ID = w.service, id
	w.set[key] = inst
}

func (w *etcdWatch) send() {
	set := make([]Instance, 0, len(w.set))
	for _, inst := range w.set {
		set = append(set, inst)
	}
	w.out.send(set)
}

func (r *etcdRegistry) Close() error {
	r.closeOnce.Do(func() {
		r.life.shutdown()
		if err := r.cli.Close(); err != nil {
			r.closeErr = fmt.Errorf("etcd registry: close: %w", err)
		}
	})
	return r.closeErr
}

// backoff spaces retries of a backend that does not answer: doubling from
// 100ms to at most 1s, with jitter, so an instance comes back within about
// a second of etcd doing so.
type backoff struct {
	attempt int
	delay   time.Duration
}

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) reset() { b.attempt, b.delay = 0, 0 }

// wait sleeps the next delay; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.attempt++
	b.delay = min(max(2*b.delay, 100*time.Millisecond), time.Second)
	d := b.delay/2 + rand.N(b.delay/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
