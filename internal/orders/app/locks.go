package app

import (
	"context"
	"sync"
)

// orderLocks serialises work on one order inside the process: the
// workers, the poller's wake-ups and a cancellation driving the saga
// inline never run the same order at once. (Leases do the same across
// replicas.)
type orderLocks struct {
	mu   sync.Mutex
	held map[string]*orderLock
}

type orderLock struct {
	token chan struct{}
	refs  int
}

func newOrderLocks() *orderLocks { return &orderLocks{held: map[string]*orderLock{}} }

func (l *orderLocks) ref(id string) *orderLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	lk := l.held[id]
	if lk == nil {
		lk = &orderLock{token: make(chan struct{}, 1)}
		l.held[id] = lk
	}
	lk.refs++
	return lk
}

func (l *orderLocks) unref(id string, lk *orderLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lk.refs--
	if lk.refs == 0 {
		delete(l.held, id)
	}
}

// lock waits for the order's lock until ctx ends.
func (l *orderLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	lk := l.ref(id)
	select {
	case lk.token <- struct{}{}:
		return func() { <-lk.token; l.unref(id, lk) }, nil
	case <-ctx.Done():
		l.unref(id, lk)
		return nil, ctx.Err()
	}
}

// tryLock takes the order's lock if it is free.
func (l *orderLocks) tryLock(id string) (unlock func(), ok bool) {
	lk := l.ref(id)
	select {
	case lk.token <- struct{}{}:
		return func() { <-lk.token; l.unref(id, lk) }, true
	default:
		l.unref(id, lk)
		return nil, false
	}
}
