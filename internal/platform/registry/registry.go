// Package registry is how a process says where it serves and learns where its
// neighbours serve: instances register under a service name, and a watcher
// of a service receives its full set of instances whenever that set changes.
// Three backends sit behind one small interface: addresses fixed in
// configuration (static), the A/AAAA or SRV records of a name such as a
// Kubernetes headless service (dns), and leased keys in etcd (etcd). A gRPC
// resolver over any of them (Builder, Target) lets grpc.NewClient balance
// calls across the instances a watcher sees.
package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Instance is one process serving a service.
type Instance struct {
	// Service is the name the instance serves under, e.g. "catalog".
	Service string `json:"service"`
	// ID tells the instance from the service's others; it must be unique
	// within the service (etcd: two registrations of one ID share one key,
	// the last put wins) and stable for the life of the process (a pod
	// name, host and port). Backends that discover rather than register
	// (static, dns) use the gRPC address.
	ID string `json:"id"`
	// GRPCAddr is the host:port its gRPC server listens on.
	GRPCAddr string `json:"grpc_addr"`
	// AdminAddr is the host:port of its admin HTTP server (health, metrics),
	// empty when the backend does not know it.
	AdminAddr string `json:"admin_addr,omitempty"`
	// Metadata is free-form; nil and empty are the same.
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (i Instance) validate() error {
	switch {
	case i.Service == "" || strings.Contains(i.Service, "/"):
		return fmt.Errorf("%w: service %q must be a non-empty name without '/'", ErrInvalidInstance, i.Service)
	case i.ID == "" || strings.Contains(i.ID, "/"):
		return fmt.Errorf("%w: id %q must be non-empty and without '/'", ErrInvalidInstance, i.ID)
	case i.GRPCAddr == "":
		return fmt.Errorf("%w: %s/%s has no gRPC address", ErrInvalidInstance, i.Service, i.ID)
	}
	return nil
}

// Registry registers instances and watches services. Every method is safe
// for concurrent use.
//
// Errors: Register and Watch return ErrInvalidInstance, ErrUnknownService
// and ErrClosed (wrapped; test with errors.Is) for calls that will never
// succeed as made; any other error means the backend could not be reached
// or answered an error before ctx ended, and the same call may succeed
// later. Once Register or Watch has succeeded, the registry keeps the
// registration and the watch alive on its own through backend outages,
// logging what it retries; the caller is never asked to start over.
type Registry interface {
	// Register makes inst visible to the service's watchers, and returns
	// once it is (or with ctx's error). It stays visible until Deregister,
	// or until the process dies or closes the registry without deregistering:
	// then the backend forgets it on its own (etcd: when the lease expires).
	Register(ctx context.Context, inst Instance) (Registration, error)
	// Watch returns a channel that receives the service's full current set
	// of instances first, then the full set again after every change, until
	// ctx ends or the registry is closed; then the channel is closed. Sets
	// are sorted by ID and never shared: the receiver may keep or change
	// them. A slow receiver misses intermediate sets, never the latest one.
	// A backend outage does not empty the set: the last known set stands
	// until the backend answers again.
	Watch(ctx context.Context, service string) (<-chan []Instance, error)
	// Close ends every watch and stops keeping registrations alive, without
	// deregistering them (as if the process had died). Deregister first for
	// a graceful stop. Close is idempotent.
	Close() error
}

// Registration is one Register's result.
type Registration interface {
	// Deregister removes the instance from its service's watchers and stops
	// keeping it alive. It is idempotent: once it has returned nil, later
	// calls return nil and do nothing; after an error (the backend could not
	// be told; it forgets the instance on its own later) a call tries again.
	Deregister(ctx context.Context) error
}

// Refresher is implemented by backends that poll (dns): Refresh asks every
// watch of service for an immediate lookup instead of waiting for the next
// interval, e.g. after a connection to one of its instances failed. It
// never blocks; lookups it asks for are spaced by at least a second (or
// the interval, when shorter).
type Refresher interface {
	Refresh(service string)
}

var (
	// ErrClosed is returned by calls on a closed registry.
	ErrClosed = errors.New("registry is closed")
	// ErrUnknownService is returned by Watch when the backend's
	// configuration does not name the service (static, dns).
	ErrUnknownService = errors.New("service is not configured")
	// ErrInvalidInstance is returned by Register for an instance without a
	// service, an ID or an address.
	ErrInvalidInstance = errors.New("invalid instance")
)

// sortedCopy returns the instances sorted by ID, deep-copied, so that what a
// watcher receives is its own.
func sortedCopy(set []Instance) []Instance {
	out := make([]Instance, len(set))
	for i, inst := range set {
		inst.Metadata = maps.Clone(inst.Metadata)
		out[i] = inst
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func sameSet(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool {
		return x.Service == y.Service && x.ID == y.ID && x.GRPCAddr == y.GRPCAddr &&
			x.AdminAddr == y.AdminAddr && maps.Equal(x.Metadata, y.Metadata)
	})
}

// latest is a watch channel that holds at most one undelivered set: a new
// set replaces one the receiver has not taken yet, so a slow receiver never
// blocks the watch and always ends up with the newest set. Only one
// goroutine may call send and close.
type latest struct {
	ch   chan []Instance
	last []Instance
	sent bool
}

func newLatest() *latest { return &latest{ch: make(chan []Instance, 1)} }

// send delivers set unless it equals the last one delivered.
func (l *latest) send(set []Instance) {
	set = sortedCopy(set)
	if l.sent && sameSet(set, l.last) {
		return
	}
	l.last, l.sent = set, true
	select {
	case <-l.ch: // drop the set nobody took; this one supersedes it
	default:
	}
	l.ch <- sortedCopy(set)
}

func (l *latest) close() { close(l.ch) }

// mergeDone returns a context ended when either ctx or stop ends.
func mergeDone(ctx, stop context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(stop, cancel)
	return ctx, func() { unhook(); cancel() }
}

// lifecycle is what every backend needs to close: a context ended by Close
// and the goroutines to wait for. Goroutines start under the lock, so none
// starts once Close has begun waiting.
type lifecycle struct {
	mu     sync.Mutex
	done   bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLifecycle() *lifecycle {
	l := &lifecycle{}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// goroutine runs f in a goroutine Close waits for, or returns ErrClosed.
func (l *lifecycle) goroutine(f func()) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return ErrClosed
	}
	l.wg.Go(f)
	return nil
}

func (l *lifecycle) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// shutdown ends the context and waits for every goroutine.
func (l *lifecycle) shutdown() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}
