// Package orderstest holds in-memory stand-ins for the services orders
// depends on (catalog, cart, inventory, payments), for orders' tests, and
// the contract suites that hold them to the real services. Each fake is a
// gRPC server that keeps real state and answers as the real service would,
// errors included; it can be served over gRPC or called in-process through
// the client shims in clients.go. Faults make calls fail on demand.
//
// RunInventoryContract and RunPaymentsContract state, case by case, what
// orders relies on from inventory and payments. They run against the fakes
// (contract_test.go here) and against the real services (test/contract),
// both through orders' own gRPC adapters, so a fake that drifts from its
// service fails its suite.
package orderstest

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mercato-dev/mercato/internal/platform/apperr"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/server"
)

// Faults makes a fake's calls fail. The zero value injects nothing and is
// safe for concurrent use.
type Faults struct {
	mu      sync.Mutex
	down    bool
	blocked map[string]bool
	refused map[string]bool
	queue   map[string][]fault
	holds   map[string][]*hold
	calls   map[string]int
}

// hold keeps one call waiting before it takes effect.
type hold struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

type fault struct {
	code codes.Code
	// lose performs the call and then answers with code, as when the
	// answer is lost on the way back.
	lose bool
}

// SetDown makes every call fail with Unavailable (without effect) until
// SetDown(false).
func (f *Faults) SetDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// Block makes every call of method fail with Unavailable (without effect)
// until Unblock.
func (f *Faults) Block(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked == nil {
		f.blocked = map[string]bool{}
	}
	f.blocked[method] = true
}

// Unblock undoes Block.
func (f *Faults) Unblock(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.blocked, method)
}

// Refuse makes every call of method be refused without effect until
// Unrefuse: a conflict without RetryInfo, as the real service answers a
// change it will not make (an answer, not an outage).
func (f *Faults) Refuse(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		f.refused = map[string]bool{}
	}
	f.refused[method] = true
}

// Unrefuse undoes Refuse.
func (f *Faults) Unrefuse(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.refused, method)
}

// FailNext makes the next n calls of method (e.g. "Authorize") fail with
// code, without effect.
func (f *Faults) FailNext(method string, n int, code codes.Code) {
	f.push(method, n, fault{code: code})
}

// LoseNext makes the next n calls of method take effect and then answer
// DeadlineExceeded, as when the answer is lost.
func (f *Faults) LoseNext(method string, n int) {
	f.push(method, n, fault{code: codes.DeadlineExceeded, lose: true})
}

// HoldNext makes the next call of method wait, before it takes effect,
// until release is called: a neighbour that is slow to answer. entered is
// closed once that call is waiting. Should the caller give up first (its
// deadline, a cancellation), the call fails with the context's error and
// without effect. release may be called more than once.
func (f *Faults) HoldNext(method string) (entered <-chan struct{}, release func()) {
	h := &hold{entered: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds == nil {
		f.holds = map[string][]*hold{}
	}
	f.holds[method] = append(f.holds[method], h)
	return h.entered, func() { h.once.Do(func() { close(h.release) }) }
}

func (f *Faults) push(method string, n int, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queue == nil {
		f.queue = map[string][]fault{}
	}
	for range n {
		f.queue[method] = append(f.queue[method], ft)
	}
}

// Calls returns how many times method was called, failed calls included.
func (f *Faults) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// enter counts the call, waits while it is held (HoldNext), and returns
// the error to fail with before any effect (fail), or else a function
// giving the error to answer with once the call took effect (nil, or a
// lost answer).
func (f *Faults) enter(ctx context.Context, method string) (after func() error, fail error) {
	h, err := f.admit(method)
	if err != nil {
		return nil, err
	}
	if h != nil {
		close(h.entered)
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queue[method]
	if len(q) == 0 {
		return func() error { return nil }, nil
	}
	ft := q[0]
	f.queue[method] = q[1:]
	if !ft.lose {
		return nil, status.Error(ft.code, "injected failure")
	}
	return func() error { return status.Error(ft.code, "injected failure after the call took effect") }, nil
}

// admit counts the call, fails it when the fake is down or the method
// blocked or refused, and takes the call's hold, if any.
func (f *Faults) admit(method string) (*hold, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	if f.down || f.blocked[method] {
		return nil, status.Error(codes.Unavailable, "service unavailable")
	}
	if f.refused[method] {
		return nil, conflict("injected refusal of " + method)
	}
	hs := f.holds[method]
	if len(hs) == 0 {
		return nil, nil
	}
	f.holds[method] = hs[1:]
	return hs[0], nil
}

// refuse returns the error a real service answers with: the kinded error
// through the shared error mapper, so the code, the ErrorInfo (with its
// cause and metadata) and the RetryInfo of a retryable refusal are what
// the real service sends.
func refuse(kind apperr.Kind, msg string, opts ...apperr.Option) error {
	return server.Status(apperr.New(kind, msg, opts...)).Err()
}

func conflict(msg string, opts ...apperr.Option) error { return refuse(apperr.Conflict, msg, opts...) }
func notFound(msg string) error                        { return refuse(apperr.NotFound, msg) }
func invalid(msg string, opts ...apperr.Option) error  { return refuse(apperr.Invalid, msg, opts...) }

// requireService refuses a caller that is authenticated but not a service,
// as inventory and payments do. In-process calls carry no principal and are
// let through.
func requireService(ctx context.Context) error {
	if _, ok := auth.FromContext(ctx); !ok {
		return nil
	}
	if _, err := auth.RequireService(ctx); err != nil {
		return refuse(apperr.Forbidden, err.Error())
	}
	return nil
}

// bearer returns the bearer token in the incoming metadata.
func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := auth.BearerToken(v); ok {
			return t
		}
	}
	return ""
}
