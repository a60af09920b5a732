package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme the Builder resolves.
const Scheme = "mercato"

// Target is the gRPC target of service for a client using a Builder:
// "mercato:///catalog".
func Target(service string) string { return Scheme + ":///" + service }

// WithResolver is the dial option that makes a client resolve Target
// names through reg. Balancing is the client's service config's choice
// (round_robin, for calls spread over every instance).
func WithResolver(reg Registry, logger *slog.Logger) grpc.DialOption {
	return grpc.WithResolvers(NewBuilder(reg, logger))
}

// Builder is a gRPC resolver.Builder over a Registry: a client connection
// to Target(service) follows Watch(service), each instance one endpoint
// carrying its ID (InstanceID). Errors watching are reported to the
// connection, whose calls then fail fast with them while it has no
// address, and the watch is retried. A connection failure's re-resolution
// (ResolveNow) reaches a Registry that is a Refresher.
type Builder struct {
	reg Registry
	log *slog.Logger
}

// NewBuilder returns a Builder over reg; logger may be nil.
func NewBuilder(reg Registry, logger *slog.Logger) *Builder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Builder{reg: reg, log: logger}
}

// Scheme returns Scheme.
func (b *Builder) Scheme() string { return Scheme }

// Build starts following the target's service. It fails only for a target
// that names no service; an unreachable backend is reported to cc (for
// etcd, once a first read has failed for the dial timeout; calls made
// meanwhile wait, within their deadlines).
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := strings.TrimPrefix(target.Endpoint(), "/")
	if !validServiceName(service) {
		return nil, fmt.Errorf("registry resolver: target %q names no service (want %s)", target.URL.String(), Target("<service>"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &registryResolver{service: service, reg: b.reg, cancel: cancel}
	r.wg.Go(func() { r.run(ctx, cc, b.log.With("service", service)) })
	return r, nil
}

type registryResolver struct {
	service string
	reg     Registry
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (r *registryResolver) run(ctx context.Context, cc resolver.ClientConn, log *slog.Logger) {
	b := newBackoff()
	for {
		sets, err := r.reg.Watch(ctx, r.service)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			cc.ReportError(fmt.Errorf("registry resolver: %s: %w", r.service, err))
			if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnknownService) {
				return // retrying would change nothing
			}
			if !b.wait(ctx) {
				return
			}
			continue
		}
		b.reset()
		for set := range sets {
			// An empty set is passed on as such: its callers fail fast
			// instead of waiting for instances that are gone.
			if err := cc.UpdateState(state(set)); err != nil {
				log.Debug("registry resolver update refused", "instances", len(set), "error", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The registry closed under the connection; Watch says so next.
	}
}

func state(set []Instance) resolver.State {
	s := resolver.State{
		Addresses: make([]resolver.Address, 0, len(set)),
		Endpoints: make([]resolver.Endpoint, 0, len(set)),
	}
	for _, inst := range set {
		attrs := attributes.New(instanceIDKey{}, inst.ID)
		addr := resolver.Address{Addr: inst.GRPCAddr, Attributes: attrs}
		s.Addresses = append(s.Addresses, addr)
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{addr}, Attributes: attrs})
	}
	return s
}

type instanceIDKey struct{}

// InstanceID returns the registry ID of the instance behind an address or
// endpoint the Builder produced, from its Attributes.
func InstanceID(attrs *attributes.Attributes) (string, bool) {
	id, ok := attrs.Value(instanceIDKey{}).(string)
	return id, ok
}

// ResolveNow asks a polling backend for a lookup now.
func (r *registryResolver) ResolveNow(resolver.ResolveNowOptions) {
	if ref, ok := r.reg.(Refresher); ok {
		ref.Refresh(r.service)
	}
}

func (r *registryResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
