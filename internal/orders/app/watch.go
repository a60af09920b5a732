package app

import "sync"

// outcomes lets readers wait for an order to reach its outcome instead of
// polling. Only the process running an order's saga can signal it; readers
// on other replicas fall back to re-reading (see Orders.GetOrder).
type outcomes struct {
	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

func newOutcomes() *outcomes { return &outcomes{waiters: map[string][]chan struct{}{}} }

// watch returns a channel closed when the order's outcome is signalled,
// and a func that stops watching (call it in every case).
func (w *outcomes) watch(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiters[id] = append(w.waiters[id], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.waiters[id]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.waiters, id)
		} else {
			w.waiters[id] = list
		}
	}
}

// signal wakes every watcher of the order.
func (w *outcomes) signal(id string) {
	w.mu.Lock()
	list := w.waiters[id]
	delete(w.waiters, id)
	w.mu.Unlock()
	for _, ch := range list {
		close(ch)
	}
}
