package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// dnsLookupTimeout bounds one lookup, so a server that does not answer
	// delays the next try instead of stopping the watch.
	dnsLookupTimeout = 5 * time.Second
	// dnsRefreshGap spaces lookups that Refresh asks for: every connection
	// failure asks, and a burst of them must not become a burst of queries.
	dnsRefreshGap = time.Second
)

// dnsRegistry discovers instances from DNS records: the addresses of a
// name, or the targets of an SRV name. Nothing registers there (the
// orchestrator publishes the records), so Register changes nothing. Each
// watch looks its name up every interval and when refreshed.
type dnsRegistry struct {
	cfg  DNSConfig
	res  *net.Resolver
	log  *slog.Logger
	life *lifecycle

	mu       sync.Mutex
	triggers map[string]map[chan struct{}]struct{} // service -> its watches' refresh signals
}

func newDNS(cfg DNSConfig, logger *slog.Logger) *dnsRegistry {
	res := net.DefaultResolver
	if cfg.Server != "" {
		server := cfg.Server
		res = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			},
		}
	}
	return &dnsRegistry{
		cfg: cfg, res: res, log: logger, life: newLifecycle(),
		triggers: make(map[string]map[chan struct{}]struct{}),
	}
}

func (r *dnsRegistry) Register(_ context.Context, inst Instance) (Registration, error) {
	if r.life.isClosed() {
		return nil, ErrClosed
	}
	if err := inst.validate(); err != nil {
		return nil, err
	}
	return noRegistration{}, nil
}

func (r *dnsRegistry) Watch(ctx context.Context, service string) (<-chan []Instance, error) {
	if r.life.isClosed() {
		return nil, ErrClosed
	}
	lookup, err := r.lookupFor(service)
	if err != nil {
		return nil, err
	}
	first, err := lookup(ctx)
	if err != nil {
		return nil, err
	}
	out := newLatest()
	out.send(first)

	trigger := make(chan struct{}, 1)
	r.mu.Lock()
	if r.triggers[service] == nil {
		r.triggers[service] = make(map[chan struct{}]struct{})
	}
	r.triggers[service][trigger] = struct{}{}
	r.mu.Unlock()

	ctx, cancel := mergeDone(ctx, r.life.ctx)
	err = r.life.goroutine(func() {
		defer cancel()
		defer out.close()
		defer r.forget(service, trigger)
		r.poll(ctx, service, lookup, trigger, out)
	})
	if err != nil {
		cancel()
		r.forget(service, trigger)
		return nil, err
	}
	return out.ch, nil
}

// poll looks the name up every interval, and on a trigger at most once per
// gap, sending every changed set. A failed lookup keeps the last set: a DNS
// server that does not answer says nothing about the instances.
func (r *dnsRegistry) poll(ctx context.Context, service string, lookup func(context.Context) ([]Instance, error), trigger <-chan struct{}, out *latest) {
	gap := min(dnsRefreshGap, r.cfg.Interval)
	last := time.Now()
	next := last.Add(r.cfg.Interval)
	timer := time.NewTimer(r.cfg.Interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			if soonest := last.Add(gap); time.Now().Before(soonest) {
				if soonest.Before(next) {
					next = soonest
					timer.Reset(time.Until(next))
				}
				continue
			}
		case <-timer.C:
		}
		set, err := lookup(ctx)
		last = time.Now()
		next = last.Add(r.cfg.Interval)
		timer.Reset(r.cfg.Interval)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("registry lookup failed, keeping the last set", "service", service, "error", err)
			continue
		}
		out.send(set)
	}
}

func (r *dnsRegistry) forget(service string, trigger chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.triggers[service], trigger)
	if len(r.triggers[service]) == 0 {
		delete(r.triggers, service)
	}
}

// Refresh asks every watch of service for a lookup now.
func (r *dnsRegistry) Refresh(service string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t := range r.triggers[service] {
		select {
		case t <- struct{}{}:
		default: // one is already pending
		}
	}
}

func (r *dnsRegistry) Close() error {
	r.life.shutdown()
	return nil
}

func (r *dnsRegistry) lookupFor(service string) (func(context.Context) ([]Instance, error), error) {
	if hp, ok := r.cfg.Hosts[service]; ok {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("dns registry: %q: %w", service, err)
		}
		return func(ctx context.Context) ([]Instance, error) {
			return r.lookupHost(ctx, service, host, port, "")
		}, nil
	}
	if name, ok := r.cfg.SRV[service]; ok {
		return func(ctx context.Context) ([]Instance, error) {
			return r.lookupSRV(ctx, service, name)
		}, nil
	}
	return nil, fmt.Errorf("dns registry: %q: %w", service, ErrUnknownService)
}

// lookupHost returns an instance per A and AAAA record of host. A name that
// does not exist is a service without instances (a Kubernetes headless
// service with no ready pod has no records), not an error.
func (r *dnsRegistry) lookupHost(ctx context.Context, service, host, port, target string) ([]Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsLookupTimeout)
	defer cancel()
	ips, err := r.res.LookupNetIP(ctx, "ip", host)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dns registry: look up %s: %w", host, err)
	}
	set := make([]Instance, 0, len(ips))
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.Unmap().String(), port)
		inst := Instance{Service: service, ID: addr, GRPCAddr: addr}
		if target != "" {
			inst.Metadata = map[string]string{"srv_target": target}
		}
		set = append(set, inst)
	}
	return set, nil
}

// lookupSRV returns the addresses of every target of name, each on its
// record's port.
func (r *dnsRegistry) lookupSRV(ctx context.Context, service, name string) ([]Instance, error) {
	lctx, cancel := context.WithTimeout(ctx, dnsLookupTimeout)
	_, srvs, err := r.res.LookupSRV(lctx, "", "", name)
	cancel()
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dns registry: look up SRV %s: %w", name, err)
	}
	var set []Instance
	seen := make(map[string]bool)
	for _, srv := range srvs {
		target := strings.TrimSuffix(srv.Target, ".")
		found, err := r.lookupHost(ctx, service, srv.Target, strconv.Itoa(int(srv.Port)), target)
		if err != nil {
			return nil, err
		}
		for _, inst := range found {
			if !seen[inst.ID] { // two records may name one target
				seen[inst.ID] = true
				set = append(set, inst)
			}
		}
	}
	return set, nil
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}
