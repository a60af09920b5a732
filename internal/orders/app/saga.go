package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// FaultHook is called at the saga's durable points: "before:<EventType>"
// once a step's neighbour call has returned and before its event is
// appended, and "<EventType>" right after the transaction appending it
// committed. A non-nil error stops the run on the spot, as a crash would
// (tests use this); the production hook kills the process instead.
type FaultHook func(point string) error

// Defaults of SagaConfig.
const (
	DefaultSagaWorkers    = 32
	DefaultPollInterval   = time.Second
	DefaultLease          = 30 * time.Second
	DefaultCallTimeout    = 10 * time.Second
	DefaultBaseBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	DefaultReservationTTL = 3 * time.Minute
)

const (
	// maxConflicts bounds how often one run reloads an order that changed
	// under it before leaving it to a later run.
	maxConflicts = 5
	// maxStepsPerRun bounds one run; the longest path has a dozen steps.
	maxStepsPerRun = 32
	// writeTimeout bounds a bookkeeping write made after a neighbour call,
	// which runs even when the caller's context has ended: a call that
	// took effect must not stay unrecorded because a client went away.
	writeTimeout = 10 * time.Second
	// holdExpiryMargin is how long after a reservation's expiry the saga
	// trusts that inventory no longer holds it.
	holdExpiryMargin = time.Minute
	// queueSize bounds the wake-up queue; an order that does not fit is
	// found by the next poll.
	queueSize = 4096
)

// SagaConfig tunes the saga executor. Zero values pick the defaults.
type SagaConfig struct {
	// InstanceID names this replica in leases. It must differ between
	// live replicas; a replica restarted with the same id takes back its
	// leases at once instead of waiting for them to expire.
	InstanceID string
	// Workers is how many orders advance at once.
	Workers int
	// PollInterval is how often the store is searched for due steps
	// (retries, orders left by a stopped replica).
	PollInterval time.Duration
	// Lease is how long a claimed order stays with this replica without a
	// write; every appended event renews it.
	Lease time.Duration
	// CallTimeout bounds one neighbour call.
	CallTimeout time.Duration
	// BaseBackoff and MaxBackoff shape the retry schedule of a failing
	// step: doubling from BaseBackoff up to MaxBackoff, jittered.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// ReservationTTL is how long inventory holds stock that is never
	// committed: longer than the saga deadline, so that only an abandoned
	// hold expires.
	ReservationTTL time.Duration
	// Now is the clock (tests move it by hand).
	Now func() time.Time
	// Fault is called at every durable point; nil means none.
	Fault FaultHook
	// Registerer receives the saga metrics; nil means none.
	Registerer prometheus.Registerer
}

func (c SagaConfig) withDefaults() SagaConfig {
	if c.InstanceID == "" {
		c.InstanceID = "orders"
	}
	if c.Workers <= 0 {
		c.Workers = DefaultSagaWorkers
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.ReservationTTL <= 0 {
		c.ReservationTTL = DefaultReservationTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Saga drives orders through checkout: each step calls one neighbour (an
// idempotent call) and then appends the step's event, the read model and
// any outgoing event in one transaction, so a crash anywhere resumes from
// the last recorded step and repeats at most one idempotent call.
//
// Work arrives by Wake (right after an order is placed or cancelled) and
// by polling the store for due steps, so a restart resumes every order in
// flight. An order is leased in the store while a replica runs it and
// locked in the process, so no two runs advance it at once; should that
// happen anyway (an expired lease), optimistic concurrency on the stream
// makes one of them reload and decide again. A cancellation is appended
// without the lock, while a step may be running, and is met the same way.
//
// A Saga is safe for concurrent use.
type Saga struct {
	repo    Repository
	inv     Inventory
	pay     Payments
	log     *slog.Logger
	cfg     SagaConfig
	metrics *sagaMetrics
	locks   *orderLocks
	// outcomes wakes readers waiting for an order to finish.
	outcomes *outcomes

	queue  chan string
	mu     sync.Mutex
	queued map[string]bool
	// rerun marks orders asked for while a run held them: the run wakes
	// them again when it ends, so what it did not see is not left to the
	// poll.
	rerun map[string]bool
}

// NewSaga returns a saga over repo and the two neighbours it drives.
func NewSaga(repo Repository, inv Inventory, pay Payments, logger *slog.Logger, cfg SagaConfig) *Saga {
	cfg = cfg.withDefaults()
	return &Saga{
		repo: repo, inv: inv, pay: pay, log: logger, cfg: cfg,
		metrics:  newSagaMetrics(cfg.Registerer),
		locks:    newOrderLocks(),
		outcomes: newOutcomes(),
		queue:    make(chan string, queueSize),
		queued:   map[string]bool{},
		rerun:    map[string]bool{},
	}
}

// Progress says where one Drive left an order.
type Progress struct {
	// Ran is false when nothing was done: the order is unknown, finished,
	// not due yet, or leased by another replica.
	Ran bool
	// Terminal is true once the saga has nothing left to do.
	Terminal bool
	// RetryAt is set when a step failed and was scheduled again.
	RetryAt time.Time
}

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

// Drive advances the order now, in the caller's goroutine, until it is
// terminal, a step fails and is scheduled again, or ctx ends (a neighbour
// call cut short is retried later). It waits for the order if a worker is
// running it.
func (s *Saga) Drive(ctx context.Context, id string) (Progress, error) {
	unlock, err := s.locks.lock(ctx, id)
	if err != nil {
		return Progress{}, err
	}
	defer s.unlock(id, unlock)
	return s.drive(ctx, id, nil)
}

// DriveIfIdle is Drive, unless a run of this process is advancing the
// order: then it returns at once (Ran false) instead of waiting for a
// neighbour call that may take long, and the order is woken again when
// that run ends. A change recorded meanwhile (a cancellation) is seen by
// that run at its next step boundary anyway: its append fails on the
// stream's version, and it reloads the order and decides again.
func (s *Saga) DriveIfIdle(ctx context.Context, id string) (Progress, error) {
	unlock, ok := s.tryLock(id)
	if !ok {
		return Progress{}, nil
	}
	defer s.unlock(id, unlock)
	return s.drive(ctx, id, nil)
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
	n, err := s.repo.ReleaseLeases(ctx, s.cfg.InstanceID)
	if err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "took back orders leased before a restart", "orders", n)
	}
	return nil
}

// Run is the executor as a server component: it recovers this instance's
// leases, then runs the workers and the poller until ctx is cancelled.
// Running steps finish (each is bounded by CallTimeout) before Run returns.
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
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			close(stop)
			wg.Wait()
			return nil
		case <-ticker.C:
		}
	}
}

func (s *Saga) poll(ctx context.Context) {
	ids, err := s.repo.Due(ctx, s.cfg.Now(), s.cfg.Workers*4)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "polling due orders failed", "error", err.Error())
		}
		return
	}
	for _, id := range ids {
		s.Wake(id)
	}
	if n, err := s.repo.CountInFlight(ctx); err == nil {
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
	}
	if !p.RetryAt.IsZero() {
		s.WakeAt(id, p.RetryAt)
	}
}

// WakeAt wakes the order at time at: a precise wake-up for a scheduled
// retry, where the poll is only the safety net.
func (s *Saga) WakeAt(id string, at time.Time) {
	time.AfterFunc(max(time.Until(at), 0), func() { s.Wake(id) })
}

// paymentInDoubt reports whether an authorization may exist unrecorded.
// armedByRun says the current run armed the attempt itself (and so knows
// no call was cut short).
func paymentInDoubt(p PaymentAttempt, armedByRun bool) bool {
	return p == PaymentAttemptUncertain || (p == PaymentAttemptArmed && !armedByRun)
}

func (s *Saga) drive(ctx context.Context, id string, stop <-chan struct{}) (Progress, error) {
	now := s.cfg.Now()
	st, claimed, err := s.repo.Claim(ctx, id, s.cfg.InstanceID, now, now.Add(s.cfg.Lease))
	if err != nil {
		return Progress{}, fmt.Errorf("claim order %s: %w", id, err)
	}
	if !claimed {
		return Progress{}, nil
	}
	o, err := s.repo.Rebuild(ctx, id)
	if err != nil {
		s.releaseLease(ctx, id)
		return Progress{}, fmt.Errorf("load order %s: %w", id, err)
	}
	armed := false
	conflicts := 0
	// leaseDropped: the last append reached the terminal step, which clears
	// the lease in the same write, so no separate release is needed.
	leaseDropped := false
	for range maxStepsPerRun {
		select {
		case <-stop:
			s.releaseLease(ctx, id)
			return Progress{Ran: true}, nil
		default:
		}
		now = s.cfg.Now()
		step := o.NextStep(now, paymentInDoubt(st.PaymentAttempt, armed))
		if step == domain.StepDone {
			if !leaseDropped {
				s.releaseLease(ctx, id)
			}
			return Progress{Ran: true, Terminal: true}, nil
		}
		if step == domain.StepAuthorizePayment && st.PaymentAttempt == PaymentAttemptNone {
			// Written before the call: should the process die during it,
			// the next run knows an authorization may exist.
			if err := s.repo.SetPaymentAttempt(ctx, id, PaymentAttemptArmed); err != nil {
				return s.retryLater(ctx, o, st, step, armed, fmt.Errorf("arm payment attempt: %w", err))
			}
			st.PaymentAttempt, armed = PaymentAttemptArmed, true
		}

		data, err := s.execute(ctx, o, step, now)
		if err != nil {
			return s.retryLater(ctx, o, st, step, armed, err)
		}

		ev := domain.Event{Version: o.Version + 1, OccurredAt: storedTime(s.cfg.Now()), Data: data}
		if err := s.fire("before:" + string(ev.Type())); err != nil {
			return Progress{}, err
		}
		next := o
		if err := next.Apply(ev); err != nil {
			return s.retryLater(ctx, o, st, step, armed, err)
		}
		attempt, nextArmed := st.PaymentAttempt, armed
		switch data.(type) {
		case domain.StockReservedData:
			// The next step authorizes; arming here saves a write.
			attempt, nextArmed = PaymentAttemptArmed, true
		case domain.PaymentAuthorizedData, domain.PaymentDeclinedData:
			attempt, nextArmed = PaymentAttemptNone, false
		}
		out, err := integrationEvents(next, ev)
		if err != nil {
			return s.retryLater(ctx, o, st, step, armed, err)
		}
		evs, states := []domain.Event{ev}, []domain.Order{next}
		// Confirming calls no neighbour, so the confirmation goes into the
		// same write as the event that makes it due (the capture): one
		// commit less per order, and no moment at which an order is
		// captured but not yet confirmed in the store.
		if next.NextStep(ev.OccurredAt, paymentInDoubt(attempt, nextArmed)) == domain.StepConfirm {
			confirm := domain.Event{Version: next.Version + 1, OccurredAt: ev.OccurredAt, Data: domain.OrderConfirmedData{}}
			if err := s.fire("before:" + string(confirm.Type())); err != nil {
				return Progress{}, err
			}
			confirmed := next
			if err := confirmed.Apply(confirm); err != nil {
				return s.retryLater(ctx, o, st, step, armed, err)
			}
			more, err := integrationEvents(confirmed, confirm)
			if err != nil {
				return s.retryLater(ctx, o, st, step, armed, err)
			}
			evs, states, out = append(evs, confirm), append(states, confirmed), append(out, more...)
			next = confirmed
		}
		write := SagaWrite{
			Now:        ev.OccurredAt,
			Step:       next.NextStep(ev.OccurredAt, paymentInDoubt(attempt, nextArmed)),
			LeaseOwner: s.cfg.InstanceID, LeaseUntil: ev.OccurredAt.Add(s.cfg.Lease),
			PaymentAttempt: &attempt,
		}
		wctx, cancel := detached(ctx)
		err = s.repo.Append(wctx, next, o.Version, evs, out, write)
		cancel()
		if errors.Is(err, domain.ErrConcurrentModification) {
			// Someone else (a cancellation) appended first. The call just
			// made was idempotent; decide again from the fresh stream.
			conflicts++
			if conflicts > maxConflicts {
				return s.retryLater(ctx, o, st, step, armed, err)
			}
			if o, st, err = s.repo.Load(ctx, id); err != nil {
				s.releaseLease(ctx, id)
				return Progress{}, fmt.Errorf("reload order %s: %w", id, err)
			}
			armed, leaseDropped = false, false
			continue
		}
		if err != nil {
			return s.retryLater(ctx, o, st, step, armed, fmt.Errorf("append %s: %w", ev.Type(), err))
		}
		before := o
		for i, e := range evs {
			if err := s.fire(string(e.Type())); err != nil {
				return Progress{}, err
			}
			s.observe(ctx, before, states[i], e)
			before = states[i]
		}
		leaseDropped = write.Step == domain.StepDone
		o, armed = next, nextArmed
		st.PaymentAttempt, st.Attempts = attempt, 0
	}
	return s.retryLater(ctx, o, st, o.NextStep(s.cfg.Now(), false), armed, errors.New("too many steps in one run"))
}

// retryLater records a failed attempt of step and schedules the next one
// with jittered exponential backoff. A forward step before the stock
// commit is never scheduled past the deadline, so a timeout is noticed
// when it happens.
func (s *Saga) retryLater(ctx context.Context, o domain.Order, st SagaState, step domain.Step, armed bool, cause error) (Progress, error) {
	now := s.cfg.Now()
	attempts := st.Attempts + 1
	next := now.Add(s.backoff(attempts))
	if step.BeforePointOfNoReturn() && next.After(o.DeadlineAt) {
		next = o.DeadlineAt
		if next.Before(now) {
			next = now
		}
	}
	attempt := st.PaymentAttempt
	switch step {
	case domain.StepAuthorizePayment:
		// Only a call that surely failed, after no earlier doubt, clears it.
		if mayHaveLanded(cause) || paymentInDoubt(st.PaymentAttempt, armed) {
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
	if err := s.repo.ScheduleRetry(wctx, o.ID, s.cfg.InstanceID, o.Version, Retry{
		Attempts: attempts, NextAttemptAt: next, PaymentAttempt: attempt,
	}); err != nil {
		return Progress{Ran: true}, fmt.Errorf("schedule retry of order %s: %w", o.ID, err)
	}
	return Progress{Ran: true, RetryAt: next}, nil
}

// backoff is the delay before attempt n+1: doubling from BaseBackoff,
// capped at MaxBackoff, with equal jitter so retries of many orders spread
// out yet never come back at once.
func (s *Saga) backoff(attempts int) time.Duration {
	d := s.cfg.MaxBackoff
	if attempts < 32 {
		d = min(s.cfg.BaseBackoff<<(attempts-1), s.cfg.MaxBackoff)
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (s *Saga) releaseLease(ctx context.Context, id string) {
	wctx, cancel := detached(ctx)
	defer cancel()
	if err := s.repo.ReleaseLease(wctx, id, s.cfg.InstanceID); err != nil {
		s.log.WarnContext(ctx, "releasing order lease failed", "order_id", id, "error", err.Error())
	}
}

func (s *Saga) fire(point string) error {
	if s.cfg.Fault == nil {
		return nil
	}
	return s.cfg.Fault(point)
}

// observe records metrics and a log line when an order reaches a terminal
// state.
func (s *Saga) observe(ctx context.Context, before, after domain.Order, ev domain.Event) {
	if !after.Terminal() || before.Terminal() {
		return
	}
	s.outcomes.signal(after.ID)
	s.metrics.outcomes.WithLabelValues(string(after.Status), after.OutcomeClass()).Inc()
	if after.Refund == nil {
		s.metrics.duration.WithLabelValues(string(after.Status)).Observe(ev.OccurredAt.Sub(after.PlacedAt).Seconds())
	}
	s.log.InfoContext(ctx, "order finished", "order_id", after.ID, "status", string(after.Status),
		"reason", after.Reason, "refunded", after.Refunded)
}

// storedTime is t as the store keeps it (UTC, microseconds), so an order
// in memory equals the same order reloaded.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// detached is a context for a write that must happen even if ctx ended.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}

// paymentKey is the authorization's idempotency key: one per order, so a
// repeated authorization finds the first.
func paymentKey(orderID string) string { return "order-" + orderID }

// execute performs step's neighbour call and returns the event recording
// its outcome. An error means the call failed and the step is retried.
func (s *Saga) execute(ctx context.Context, o domain.Order, step domain.Step, now time.Time) (domain.EventData, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	switch step {
	case domain.StepReserveStock:
		return s.reserve(ctx, o)
	case domain.StepAuthorizePayment, domain.StepResolvePayment:
		return s.authorize(ctx, o)
	case domain.StepCommitStock:
		err := s.inv.Commit(ctx, o.ID)
		if err == nil {
			return domain.StockCommittedData{}, nil
		}
		if isTransient(err) {
			return nil, fmt.Errorf("commit stock: %w", err)
		}
		s.log.WarnContext(ctx, "inventory refused to commit the reservation", "order_id", o.ID, "error", err.Error())
		return domain.CancellationRequestedData{Reason: domain.ReasonReservationLost, By: domain.RequestedBySystem}, nil
	case domain.StepCapturePayment:
		err := s.pay.Capture(ctx, o.PaymentID)
		if err == nil {
			return domain.PaymentCapturedData{PaymentID: o.PaymentID}, nil
		}
		if isTransient(err) {
			return nil, fmt.Errorf("capture payment: %w", err)
		}
		s.log.WarnContext(ctx, "payments refused the capture", "order_id", o.ID, "error", err.Error())
		return domain.CancellationRequestedData{Reason: domain.ReasonCaptureFailed, By: domain.RequestedBySystem}, nil
	case domain.StepConfirm:
		return domain.OrderConfirmedData{}, nil
	case domain.StepTimeOut:
		return domain.CancellationRequestedData{Reason: domain.ReasonTimedOut, By: domain.RequestedBySystem}, nil
	case domain.StepReleaseStock:
		return s.release(ctx, o, now)
	case domain.StepRestockStock:
		err := s.inv.Restock(ctx, o.ID)
		switch {
		case err == nil:
			return domain.StockRestockedData{}, nil
		case isTransient(err):
			return nil, fmt.Errorf("restock: %w", err)
		}
		s.log.ErrorContext(ctx, "inventory refused to restock a sold order", "order_id", o.ID, "error", err.Error())
		return domain.StockRestockedData{Note: "inventory had nothing to restock"}, nil
	case domain.StepVoidPayment:
		return s.void(ctx, o)
	case domain.StepRefundPayment:
		return s.refund(ctx, o)
	case domain.StepCancel:
		return o.CancelledData(), nil
	}
	return nil, fmt.Errorf("unknown saga step %q", step)
}

func (s *Saga) reserve(ctx context.Context, o domain.Order) (domain.EventData, error) {
	lines := make([]StockLine, len(o.Items))
	for i, it := range o.Items {
		lines[i] = StockLine{SKU: it.SKU, Quantity: it.Quantity}
	}
	res, err := s.inv.Reserve(ctx, o.ID, lines, s.cfg.ReservationTTL)
	var short *OutOfStockError
	switch {
	case err == nil:
		if res.Status.HoldsStock() {
			return domain.StockReservedData{ExpiresAt: res.ExpiresAt}, nil
		}
		// Released or expired: the hold is gone, nothing is held.
		s.log.WarnContext(ctx, "inventory returned a reservation that no longer holds stock",
			"order_id", o.ID, "status", res.Status.String())
		return domain.OrderRejectedData{Reason: domain.ReasonReservationLost}, nil
	case errors.As(err, &short):
		return domain.OrderRejectedData{Reason: domain.OutOfStockReason(short.SKU), SKU: short.SKU}, nil
	case isTransient(err):
		return nil, fmt.Errorf("reserve stock: %w", err)
	}
	s.log.WarnContext(ctx, "inventory refused the reservation", "order_id", o.ID, "error", err.Error())
	return domain.OrderRejectedData{Reason: domain.ReasonReservationFailed}, nil
}

func (s *Saga) authorize(ctx context.Context, o domain.Order) (domain.EventData, error) {
	p, err := s.pay.Authorize(ctx, Authorization{
		IdempotencyKey: paymentKey(o.ID), OrderID: o.ID, UserID: o.UserID,
		AmountCents: o.TotalCents, Currency: o.Currency, PaymentToken: o.PaymentToken,
	})
	switch {
	case err == nil:
		if p.Status == PaymentDeclined {
			return domain.PaymentDeclinedData{
				PaymentID: p.ID, DeclineCode: p.DeclineCode, Reason: domain.DeclinedReason(p.DeclineCode),
			}, nil
		}
		// Authorized, or (when resolving) already further along: the
		// compensation steps are idempotent from there.
		return domain.PaymentAuthorizedData{PaymentID: p.ID, AmountCents: o.TotalCents}, nil
	case errors.Is(err, ErrPaymentTokenRejected):
		return domain.PaymentDeclinedData{Reason: domain.ReasonTokenNotKnown}, nil
	case isTransient(err):
		return nil, fmt.Errorf("authorize payment: %w", err)
	}
	s.log.WarnContext(ctx, "payments refused the authorization", "order_id", o.ID, "error", err.Error())
	return domain.PaymentDeclinedData{Reason: domain.ReasonPaymentFailed}, nil
}

// release gives the hold back. Inventory refusing means the reservation
// was committed after all (a commit whose answer was lost), so it is
// restocked instead, or that nothing is held any more.
func (s *Saga) release(ctx context.Context, o domain.Order, now time.Time) (domain.EventData, error) {
	err := s.inv.Release(ctx, o.ID)
	switch {
	case err == nil:
		return domain.StockReleasedData{}, nil
	case errors.Is(err, ErrNotFound):
		return domain.StockReleasedData{Note: "inventory held nothing for the order"}, nil
	case isTransient(err):
		// A hold expires by itself. Past its expiry there is nothing left
		// to release, which bounds how long an inventory outage can keep
		// an order from finishing.
		expiry := o.StockExpiresAt
		if expiry.IsZero() {
			expiry = o.DeadlineAt.Add(s.cfg.ReservationTTL)
		}
		if now.After(expiry.Add(holdExpiryMargin)) {
			s.log.WarnContext(ctx, "inventory unreachable past the hold's expiry, treating the stock as released",
				"order_id", o.ID, "error", err.Error())
			return domain.StockReleasedData{Note: "the hold expired while inventory was unreachable"}, nil
		}
		return nil, fmt.Errorf("release stock: %w", err)
	}
	err = s.inv.Restock(ctx, o.ID)
	switch {
	case err == nil:
		return domain.StockRestockedData{Note: "the reservation had been committed"}, nil
	case isTransient(err):
		return nil, fmt.Errorf("restock after a refused release: %w", err)
	}
	return domain.StockReleasedData{Note: "inventory held nothing for the order"}, nil
}

// void cancels the authorization. Payments refusing means it was captured
// after all (a capture whose answer was lost), so it is refunded instead,
// or that nothing is held any more.
func (s *Saga) void(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.pay.Void(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentVoidedData{PaymentID: o.PaymentID}, nil
	case errors.Is(err, ErrCaptureInProgress):
		// A capture whose answer was lost blocks the payment until it is
		// finished; it is then refunded like any capture.
		if err := s.pay.Capture(ctx, o.PaymentID); err != nil {
			return nil, fmt.Errorf("finish the capture in progress: %w: %w", ErrUnavailable, err)
		}
		return domain.PaymentCapturedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("void payment: %w", err)
	}
	err = s.pay.Refund(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentRefundedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("refund after a refused void: %w", err)
	}
	s.log.WarnContext(ctx, "payments refused both void and refund", "order_id", o.ID, "error", err.Error())
	return domain.PaymentVoidedData{PaymentID: o.PaymentID, Note: "payments held nothing for the order"}, nil
}

// refund returns a captured payment; if payments refuses (it was never
// captured) the authorization is voided instead.
func (s *Saga) refund(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.pay.Refund(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentRefundedData{PaymentID: o.PaymentID}, nil
	case isTransient(err):
		return nil, fmt.Errorf("refund payment: %w", err)
	}
	err = s.pay.Void(ctx, o.PaymentID)
	switch {
	case err == nil:
		return domain.PaymentVoidedData{PaymentID: o.PaymentID, Note: "the payment had not been captured"}, nil
	case isTransient(err):
		return nil, fmt.Errorf("void after a refused refund: %w", err)
	}
	s.log.ErrorContext(ctx, "payments refused both refund and void of a captured payment", "order_id", o.ID, "error", err.Error())
	return domain.PaymentVoidedData{PaymentID: o.PaymentID, Note: "payments held nothing for the order"}, nil
}
