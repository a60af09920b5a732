package app

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultLimiterKeys bounds how many clients (or emails) a LoginLimiter
// tracks per dimension; the least recently seen are forgotten first.
const DefaultLimiterKeys = 10_000

// LoginLimiter bounds login attempts per client IP and per email, in this
// process's memory (each replica counts on its own, so the effective limit
// is per replica). It is safe for concurrent use.
type LoginLimiter struct {
	perEmail *keyedLimiter
	perIP    *keyedLimiter
}

// NewLoginLimiter allows emailPerMinute attempts per email and
// ipPerMinute per client IP, each with a burst of the same size; 0 turns a
// dimension off. maxKeys bounds the memory used (DefaultLimiterKeys if 0).
func NewLoginLimiter(emailPerMinute, ipPerMinute, maxKeys int) *LoginLimiter {
	if maxKeys <= 0 {
		maxKeys = DefaultLimiterKeys
	}
	return &LoginLimiter{perEmail: newKeyedLimiter(emailPerMinute, maxKeys), perIP: newKeyedLimiter(ipPerMinute, maxKeys)}
}

// Allow takes one attempt for ip and email at now. When either is over its
// limit it takes nothing and returns how long until an attempt would be
// allowed. Empty keys are not counted.
func (l *LoginLimiter) Allow(ip, email string, now time.Time) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	var taken []*rate.Reservation
	for _, c := range []struct {
		lim *keyedLimiter
		key string
	}{{l.perIP, ip}, {l.perEmail, email}} {
		if c.lim == nil || c.key == "" {
			continue
		}
		r := c.lim.get(c.key).ReserveN(now, 1)
		taken = append(taken, r)
		if d := r.DelayFrom(now); d > retryAfter {
			retryAfter = d
		}
	}
	if retryAfter == 0 {
		return 0, true
	}
	for _, r := range taken {
		r.CancelAt(now)
	}
	return retryAfter, false
}

// keyedLimiter is a token bucket per key in a bounded LRU.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	entries map[string]*list.Element
	order   *list.List // of *keyedEntry, most recently used first
}

type keyedEntry struct {
	key string
	lim *rate.Limiter
}

func newKeyedLimiter(perMinute, maxKeys int) *keyedLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &keyedLimiter{
		limit: rate.Limit(float64(perMinute) / 60), burst: perMinute, max: maxKeys,
		entries: map[string]*list.Element{}, order: list.New(),
	}
}

func (k *keyedLimiter) get(key string) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.entries[key]; ok {
		k.order.MoveToFront(el)
		return el.Value.(*keyedEntry).lim
	}
	for k.order.Len() >= k.max {
		oldest := k.order.Back()
		k.order.Remove(oldest)
		delete(k.entries, oldest.Value.(*keyedEntry).key)
	}
	e := &keyedEntry{key: key, lim: rate.NewLimiter(k.limit, k.burst)}
	k.entries[key] = k.order.PushFront(e)
	return e.lim
}

// len is the number of keys tracked.
func (k *keyedLimiter) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.order.Len()
}
