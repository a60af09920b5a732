package app

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// SagaRepository keeps the saga's bookkeeping beside each order's stream:
// which step is due when, who holds the order's lease, and whether an
// authorization may exist unrecorded. Implementations are safe for
// concurrent use.
type SagaRepository interface {
	// Claim leases the order to owner until until, if its saga is not
	// done, a step is due at now, and no one else holds a live lease, and
	// returns the saga's bookkeeping as the claim left it (with the same
	// round trip).
	Claim(ctx context.Context, id, owner string, now, until time.Time) (SagaState, bool, error)
	// Due returns up to limit orders whose saga has a step due at now and
	// that no one holds a live lease on, most overdue first.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// ScheduleRetry records a failed attempt and drops owner's lease. The
	// schedule is only changed while the order is still at version (a
	// newer event has made a new step due at once); the payment attempt
	// always is.
	ScheduleRetry(ctx context.Context, id, owner string, version int64, r Retry) error
	// SetPaymentAttempt stores the payment attempt state.
	SetPaymentAttempt(ctx context.Context, id string, p PaymentAttempt) error
	// ReleaseLease drops owner's lease on the order.
	ReleaseLease(ctx context.Context, id, owner string) error
	// ReleaseLeases drops every lease owner holds (a restarted replica
	// taking back what it held before) and returns how many.
	ReleaseLeases(ctx context.Context, owner string) (int64, error)
	// CountInFlight returns how many orders' sagas are not done.
	CountInFlight(ctx context.Context) (int64, error)
	// NoticeStuck marks the orders whose saga is not done and that have
	// recorded no event since before, and that were not marked at their
	// current version yet, and returns up to limit of them: each crossing
	// of the threshold is returned once, to one replica, however often
	// its step is retried meanwhile.
	NoticeStuck(ctx context.Context, before time.Time, limit int) ([]StuckOrder, error)
	// CountStuck counts the orders whose saga is not done and that have
	// recorded no event since before, by step due, and the orders that
	// need attention.
	CountStuck(ctx context.Context, before time.Time) (StuckCounts, error)
	// ListStuck returns up to limit orders, newest first, starting after
	// the order with id after (from the start when empty): those whose
	// saga is not done and that recorded no event since before, and those
	// that need attention.
	ListStuck(ctx context.Context, before time.Time, after string, limit int) ([]StuckOrder, error)
}

// StuckOrder is an order an operator should look at: its read model and
// what its saga waits for.
type StuckOrder struct {
	Order         domain.View
	Step          domain.Step
	Attempts      int
	NextAttemptAt time.Time
	// LastError is the last failure of Step, or what the neighbour
	// answered when the order came to need attention.
	LastError string
}

// StuckCounts counts the orders an operator should look at.
type StuckCounts struct {
	// ByStep counts stuck orders by the step they wait for.
	ByStep map[domain.Step]int64
	// NeedsAttention counts the orders in status needs_attention.
	NeedsAttention int64
}

// PaymentAttempt tracks whether an authorization may exist that the order's
// stream does not record, so that undoing the order knows whether it has
// to ask payments first.
type PaymentAttempt int

// The payment attempt states.
const (
	// PaymentAttemptNone: no authorization call can have taken effect
	// unrecorded.
	PaymentAttemptNone PaymentAttempt = iota
	// PaymentAttemptArmed: a call is about to be (or is being) made. Seen
	// by a later run, it means the run that armed it died mid-call.
	PaymentAttemptArmed
	// PaymentAttemptUncertain: a call failed in a way that leaves its
	// effect unknown (a deadline, an internal error).
	PaymentAttemptUncertain
)

// SagaState is the saga's bookkeeping for one order, beside its events.
type SagaState struct {
	Step           domain.Step
	Attempts       int
	NextAttemptAt  time.Time
	PaymentAttempt PaymentAttempt
	LeaseOwner     string
}

// SagaWrite is the bookkeeping stored with appended events: the step now
// due (at Now, with no attempts yet).
type SagaWrite struct {
	Now  time.Time
	Step domain.Step
	// LeaseOwner and LeaseUntil extend the writer's lease; empty leaves the
	// lease as it is (a client's cancellation does not take it over). A
	// terminal step always drops the lease.
	LeaseOwner string
	LeaseUntil time.Time
	// PaymentAttempt, when set, replaces the stored state.
	PaymentAttempt *PaymentAttempt
	// Problem is what an operator should know of the write (why the order
	// needs attention); it replaces the last error, "" clearing it.
	Problem string
}

// Retry is the bookkeeping of a step that failed and is tried again later.
type Retry struct {
	Attempts       int
	NextAttemptAt  time.Time
	PaymentAttempt PaymentAttempt
	// LastError says why the attempt failed, for an operator.
	LastError string
}

// maxErrorLen bounds the last error kept for an operator.
const maxErrorLen = 500

// Wake asks the workers to advance the order soon. It never blocks.
func (s *Saga) Wake(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[id] {
		return
	}
	select {
	case s.queue <- id:
		s.queued[id] = true
	default: // full: the poll finds it
	}
}

// WakeAt wakes the order at time at: a precise wake-up for a scheduled
// retry, where the poll is only the safety net.
func (s *Saga) WakeAt(id string, at time.Time) {
	time.AfterFunc(max(time.Until(at), 0), func() { s.Wake(id) })
}

// tryLock takes the order's lock if no run holds it; otherwise it marks
// the order to be woken when that run ends.
func (s *Saga) tryLock(id string) (unlock func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, ok = s.locks.tryLock(id)
	if !ok {
		s.rerun[id] = true
	}
	return unlock, ok
}

// unlock releases the order's lock and wakes the order if it was asked
// for while locked. Both happen under s.mu, as the marking in tryLock
// does, so a request cannot slip between the release and the check.
func (s *Saga) unlock(id string, unlock func()) {
	s.mu.Lock()
	unlock()
	again := s.rerun[id]
	delete(s.rerun, id)
	s.mu.Unlock()
	if again {
		s.Wake(id)
	}
}

// Recover drops the leases this instance held before a restart, so its
// orders resume at once.
func (s *Saga) Recover(ctx context.Context) error {
	n, err := s.store.ReleaseLeases(ctx, s.cfg.InstanceID)
	if err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "took back orders leased before a restart", "orders", n)
	}
	return nil
}

// Run is the executor as a server component: it recovers this instance's
// leases, then runs the workers, the poller and the watch for stuck orders
// until ctx is cancelled. Running steps finish (each is bounded by
// CallTimeout) before Run returns.
func (s *Saga) Run(ctx context.Context) error {
	if err := s.Recover(ctx); err != nil {
		s.log.WarnContext(ctx, "saga recovery failed, leases expire on their own", "error", err.Error())
	}
	stop := make(chan struct{})
	work := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() { s.work(work, stop) })
	}
	ticker := time.NewTicker(s.cfg.PollInterval)
	defer ticker.Stop()
	watch := time.NewTicker(s.stuckCheckInterval())
	defer watch.Stop()
	s.checkStuck(ctx) // the gauges have values from the start
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			close(stop)
			wg.Wait()
			return nil
		case <-ticker.C:
		case <-watch.C:
			s.checkStuck(ctx)
		}
	}
}

func (s *Saga) checkStuck(ctx context.Context) {
	if err := s.CheckStuck(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "looking for stuck orders failed", "error", err.Error())
	}
}

// stuckCheckInterval is how often Run looks for stuck orders: a tenth of
// the threshold, so one is noticed soon after it crosses it, but no more
// often than the poll and at least every 10 s.
func (s *Saga) stuckCheckInterval() time.Duration {
	return min(max(s.cfg.StuckAfter/10, s.cfg.PollInterval), 10*time.Second)
}

// noticeBatch bounds how many newly stuck orders one check logs; the rest
// are logged by the next.
const noticeBatch = 100

// CheckStuck logs every order that crossed the stuck threshold since the
// last check (once per crossing, whichever replica notices it: the mark
// is in the store) and updates the stuck and needs-attention gauges with
// the counts every replica shares. Run calls it periodically.
func (s *Saga) CheckStuck(ctx context.Context) error {
	now := s.cfg.Now()
	before := now.Add(-s.cfg.StuckAfter)
	noticed, err := s.store.NoticeStuck(ctx, before, noticeBatch)
	if err != nil {
		return fmt.Errorf("notice stuck orders: %w", err)
	}
	for _, o := range noticed {
		s.log.WarnContext(ctx, "order stuck: its saga has recorded nothing for longer than the threshold",
			"order_id", o.Order.ID, "status", string(o.Order.Status), "step", string(o.Step),
			"attempts", o.Attempts, "since", o.Order.UpdatedAt, "threshold", s.cfg.StuckAfter.String(),
			"next_attempt_at", o.NextAttemptAt, "last_error", o.LastError)
	}
	counts, err := s.store.CountStuck(ctx, before)
	if err != nil {
		return fmt.Errorf("count stuck orders: %w", err)
	}
	for _, step := range domain.WorkSteps {
		s.metrics.stuck.WithLabelValues(string(step)).Set(float64(counts.ByStep[step]))
	}
	s.metrics.needsAttention.Set(float64(counts.NeedsAttention))
	return nil
}

// listStuck returns a page of the orders an operator should look at.
func (s *Saga) listStuck(ctx context.Context, after string, limit int) ([]StuckOrder, error) {
	return s.store.ListStuck(ctx, s.cfg.Now().Add(-s.cfg.StuckAfter), after, limit)
}

func (s *Saga) poll(ctx context.Context) {
	ids, err := s.store.Due(ctx, s.cfg.Now(), s.cfg.Workers*4)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "polling due orders failed", "error", err.Error())
		}
		return
	}
	for _, id := range ids {
		s.Wake(id)
	}
	if n, err := s.store.CountInFlight(ctx); err == nil {
		s.metrics.inFlight.Set(float64(n))
	}
}

func (s *Saga) work(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case id := <-s.queue:
			s.mu.Lock()
			delete(s.queued, id)
			s.mu.Unlock()
			s.advance(ctx, id, stop)
		}
	}
}

// advance runs one order unless someone in this process already does.
func (s *Saga) advance(ctx context.Context, id string, stop <-chan struct{}) {
	unlock, ok := s.tryLock(id)
	if !ok {
		return
	}
	p, err := s.drive(ctx, id, stop)
	s.unlock(id, unlock)
	if err != nil {
		s.log.ErrorContext(ctx, "saga run failed", "order_id", id, "error", err.Error())
		if p.RetryAt.IsZero() {
			// Nothing is scheduled (the database was unreachable, say) and
			// the order may stay leased to this instance, which the poll
			// skips until the lease expires: far past a checkout's
			// deadline. This instance may claim its own lease again, so it
			// tries again as soon as the poll would have.
			p.RetryAt = time.Now().Add(s.cfg.PollInterval)
		}
	}
	if !p.RetryAt.IsZero() {
		s.WakeAt(id, p.RetryAt)
	}
}

// retryLater records a failed attempt of step and schedules the next one
// with jittered exponential backoff. A forward step before the stock
// commit is never scheduled past the deadline, so a timeout is noticed
// when it happens; any other step is retried until it succeeds, up to
// minutes apart (see SagaConfig.DecidedMaxBackoff).
func (s *Saga) retryLater(ctx context.Context, r run, step domain.Step, cause error) (Progress, error) {
	o := r.order
	now := s.cfg.Now()
	attempts := r.state.Attempts + 1
	next := now.Add(s.backoff(step, attempts))
	if step.BeforePointOfNoReturn() && next.After(o.DeadlineAt) {
		next = o.DeadlineAt
		if next.Before(now) {
			next = now
		}
	}
	attempt := r.state.PaymentAttempt
	switch step {
	case domain.StepAuthorizePayment:
		// Only a call that surely failed, after no earlier doubt, clears it.
		if mayHaveLanded(cause) || r.paymentInDoubt() {
			attempt = PaymentAttemptUncertain
		} else {
			attempt = PaymentAttemptNone
		}
	case domain.StepResolvePayment:
		attempt = PaymentAttemptUncertain
	}
	s.metrics.retries.WithLabelValues(string(step)).Inc()
	level := slog.LevelInfo
	if attempts >= 5 || !isTransient(cause) {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "saga step failed, will retry", "order_id", o.ID, "step", string(step),
		"attempts", attempts, "retry_in", next.Sub(now).String(), "error", cause.Error())
	wctx, cancel := detached(ctx)
	defer cancel()
	if err := s.store.ScheduleRetry(wctx, o.ID, s.cfg.InstanceID, o.Version, Retry{
		Attempts: attempts, NextAttemptAt: next, PaymentAttempt: attempt, LastError: truncate(cause.Error(), maxErrorLen),
	}); err != nil {
		return Progress{Ran: true}, fmt.Errorf("schedule retry of order %s: %w", o.ID, err)
	}
	return Progress{Ran: true, RetryAt: next}, nil
}

// backoff is the delay before attempt n+1 of step: doubling from
// BaseBackoff, capped at MaxBackoff before the point of no return and at
// DecidedMaxBackoff after it, with equal jitter so retries of many orders
// spread out yet never come back at once.
func (s *Saga) backoff(step domain.Step, attempts int) time.Duration {
	limit := s.cfg.DecidedMaxBackoff
	if step.BeforePointOfNoReturn() {
		limit = s.cfg.MaxBackoff
	}
	d := limit
	if attempts < 32 {
		d = min(s.cfg.BaseBackoff<<(attempts-1), limit)
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// truncate shortens s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (s *Saga) releaseLease(ctx context.Context, id string) {
	wctx, cancel := detached(ctx)
	defer cancel()
	if err := s.store.ReleaseLease(wctx, id, s.cfg.InstanceID); err != nil {
		s.log.WarnContext(ctx, "releasing order lease failed", "order_id", id, "error", err.Error())
	}
}
