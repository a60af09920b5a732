package gateway

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimits are the gateway's token buckets: per client IP, per
// authenticated user, and the stricter per-IP one on credential routes.
type rateLimits struct {
	perIP, perUser, login *limiterSet
}

// maxLimiters bounds each limiter set; see limiterSet.
const maxLimiters = 50_000

// newRateLimits returns the limits for rps requests per second (bursts of
// twice that), or nil when rps is 0 (rate limiting off).
func newRateLimits(rps, loginRPS float64) *rateLimits {
	if rps <= 0 {
		return nil
	}
	if loginRPS <= 0 {
		loginRPS = rps
	}
	return &rateLimits{
		perIP:   newLimiterSet(rps, maxLimiters, time.Now),
		perUser: newLimiterSet(rps, maxLimiters, time.Now),
		login:   newLimiterSet(loginRPS, maxLimiters, time.Now),
	}
}

// limiterSet keeps one token bucket per key (an IP, a user id) in bounded
// memory. Buckets live in two generations: lookups move a bucket into the
// current one, and every idleTTL the current generation becomes the
// previous and the previous is dropped. A bucket idle for a whole
// generation has refilled to its burst by then, so dropping it changes
// nothing; only when more than max keys arrive within one generation is it
// cut short, which errs towards letting requests through. Memory is thus
// at most two generations of max buckets, with no sweeping goroutine.
type limiterSet struct {
	limit   rate.Limit
	burst   int
	idleTTL time.Duration
	max     int
	now     func() time.Time

	mu      sync.Mutex
	cur     map[string]*rate.Limiter
	prev    map[string]*rate.Limiter
	rotated time.Time
}

func newLimiterSet(rps float64, maxKeys int, now func() time.Time) *limiterSet {
	burst := int(math.Ceil(2 * rps))
	// The time an empty bucket takes to fill, but at least a minute so
	// steady clients are not reallocated all the time.
	ttl := max(time.Duration(float64(burst)/rps*float64(time.Second)), time.Minute)
	return &limiterSet{
		limit: rate.Limit(rps), burst: burst, idleTTL: ttl, max: maxKeys, now: now,
		cur: map[string]*rate.Limiter{}, prev: map[string]*rate.Limiter{}, rotated: now(),
	}
}

// allow takes a token from key's bucket. When there is none it returns how
// long until there will be one.
func (s *limiterSet) allow(key string) (time.Duration, bool) {
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.rotated) >= s.idleTTL || len(s.cur) >= s.max {
		s.prev, s.cur, s.rotated = s.cur, make(map[string]*rate.Limiter, len(s.cur)), now
	}
	lim, ok := s.cur[key]
	if !ok {
		if lim, ok = s.prev[key]; ok {
			delete(s.prev, key)
		} else {
			lim = rate.NewLimiter(s.limit, s.burst)
		}
		s.cur[key] = lim
	}
	s.mu.Unlock()

	if lim.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - lim.TokensAt(now)
	return time.Duration(missing / float64(s.limit) * float64(time.Second)), false
}

// size is the number of buckets held.
func (s *limiterSet) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cur) + len(s.prev)
}

// tooManyRequests answers 429 with Retry-After in whole seconds (at least 1).
func tooManyRequests(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, http.StatusTooManyRequests, "rate limit exceeded, retry later")
}
