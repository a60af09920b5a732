package registry

import (
	"context"
	"fmt"
)

// static serves the addresses of its configuration: registering changes
// nothing (the configuration is the registration) and a watch receives the
// configured set once.
type static struct {
	services map[string][]Instance
	life     *lifecycle
}

func newStatic(addrs map[string][]string) *static {
	s := &static{services: make(map[string][]Instance, len(addrs)), life: newLifecycle()}
	for svc, list := range addrs {
		for _, a := range list {
			s.services[svc] = append(s.services[svc], Instance{Service: svc, ID: a, GRPCAddr: a})
		}
	}
	return s
}

func (s *static) Register(_ context.Context, inst Instance) (Registration, error) {
	if s.life.isClosed() {
		return nil, ErrClosed
	}
	if err := inst.validate(); err != nil {
		return nil, err
	}
	return noRegistration{}, nil
}

func (s *static) Watch(ctx context.Context, service string) (<-chan []Instance, error) {
	set, ok := s.services[service]
	if !ok {
		return nil, fmt.Errorf("static registry: %q: %w", service, ErrUnknownService)
	}
	out := newLatest()
	out.send(set)
	ctx, cancel := mergeDone(ctx, s.life.ctx)
	err := s.life.goroutine(func() {
		defer cancel()
		<-ctx.Done()
		out.close()
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return out.ch, nil
}

func (s *static) Close() error {
	s.life.shutdown()
	return nil
}

type noRegistration struct{}

func (noRegistration) Deregister(context.Context) error { return nil }
