package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	DefaultDecidedBackoff = 5 * time.Minute
	DefaultReservationTTL = 3 * time.Minute
	DefaultStuckAfter     = 2 * time.Minute
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
	// forward step before the point of no return: doubling from
	// BaseBackoff up to MaxBackoff, jittered, and never past the saga
	// deadline, at which the order is undone instead.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// DecidedMaxBackoff caps the schedule of every other step: once the
	// order's course is decided (its stock committed, or it is being
	// undone) the step has to happen, so it is retried for as long as it
	// takes, doubling from BaseBackoff up to this, jittered. Minutes, so
	// that a long outage costs a few calls per order, not a storm.
	DecidedMaxBackoff time.Duration
	// StuckAfter is how long an order whose saga still has work to do may
	// go without a new event before it counts as stuck: it is then logged
	// once, counted in mercato_orders_stuck and listed for admins.
	StuckAfter time.Duration
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
	if c.DecidedMaxBackoff <= 0 {
		c.DecidedMaxBackoff = DefaultDecidedBackoff
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = DefaultStuckAfter
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
// This file holds the run of one order; saga_run.go the workers, leases
// and polling around it; saga_steps.go the forward steps and
// saga_compensations.go the steps that undo them.
//
// A Saga is safe for concurrent use.
type Saga struct {
	orders  OrderRepository
	store   SagaRepository
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

// NewSaga returns a saga over the order store, its own bookkeeping (usually
// the same repository) and the two neighbours it drives.
func NewSaga(orders OrderRepository, store SagaRepository, inv Inventory, pay Payments, logger *slog.Logger, cfg SagaConfig) *Saga {
	cfg = cfg.withDefaults()
	return &Saga{
		orders: orders, store: store, inv: inv, pay: pay, log: logger, cfg: cfg,
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

// run is what one claim of an order knows of it between two steps: the
// order as its stream records it and the saga's bookkeeping. A step
// returns the run it leaves behind rather than changing this one.
type run struct {
	order domain.Order
	state SagaState
	// armed says this run armed the payment attempt itself, and so knows
	// that no authorization call of its own was cut short.
	armed bool
}

// paymentInDoubt reports whether an authorization may exist that the
// stream does not record.
func (r run) paymentInDoubt() bool {
	p := r.state.PaymentAttempt
	return p == PaymentAttemptUncertain || (p == PaymentAttemptArmed && !r.armed)
}

// nextStep is the step due at now.
func (r run) nextStep(now time.Time) domain.Step {
	return r.order.NextStep(now, r.paymentInDoubt())
}

// drive claims the order and takes the step its state asks for, one after
// the other, until the order is done, a step fails (and is scheduled
// again), the workers stop, or maxStepsPerRun steps were taken.
func (s *Saga) drive(ctx context.Context, id string, stop <-chan struct{}) (Progress, error) {
	r, claimed, err := s.claim(ctx, id)
	if err != nil || !claimed {
		return Progress{}, err
	}
	conflicts := 0
	// leaseHeld turns false once a write reached the terminal step: that
	// write dropped the lease itself.
	leaseHeld := true
	for range maxStepsPerRun {
		if stopping(stop) {
			s.releaseLease(ctx, id)
			return Progress{Ran: true}, nil
		}
		now := s.cfg.Now()
		step := r.nextStep(now)
		if step == domain.StepDone {
			if leaseHeld {
				s.releaseLease(ctx, id)
			}
			return Progress{Ran: true, Terminal: true}, nil
		}
		res := s.take(ctx, r, step, now)
		switch res.outcome {
		case stepRecorded:
			r, leaseHeld = res.run, !res.leaseDropped
		case stepFailed:
			return s.retryLater(ctx, res.run, step, res.err)
		case stepCrashed:
			return Progress{}, res.err
		case stepOvertaken:
			// Someone else (a cancellation) appended first. The call just
			// made was idempotent; decide again from the fresh stream.
			conflicts++
			if conflicts > maxConflicts {
				return s.retryLater(ctx, res.run, step, res.err)
			}
			if r, err = s.reload(ctx, id); err != nil {
				return Progress{}, err
			}
			leaseHeld = true
		}
	}
	return s.retryLater(ctx, r, r.order.NextStep(s.cfg.Now(), false), errors.New("too many steps in one run"))
}

// claim leases the order to this replica if a step is due and no one else
// holds it, and loads it.
func (s *Saga) claim(ctx context.Context, id string) (run, bool, error) {
	now := s.cfg.Now()
	st, claimed, err := s.store.Claim(ctx, id, s.cfg.InstanceID, now, now.Add(s.cfg.Lease))
	if err != nil {
		return run{}, false, fmt.Errorf("claim order %s: %w", id, err)
	}
	if !claimed {
		return run{}, false, nil
	}
	o, err := s.orders.Rebuild(ctx, id)
	if err != nil {
		s.releaseLease(ctx, id)
		return run{}, false, fmt.Errorf("load order %s: %w", id, err)
	}
	return run{order: o, state: st}, true, nil
}

// reload reads the order again after another writer appended to it.
func (s *Saga) reload(ctx context.Context, id string) (run, error) {
	o, st, err := s.orders.Load(ctx, id)
	if err != nil {
		s.releaseLease(ctx, id)
		return run{}, fmt.Errorf("reload order %s: %w", id, err)
	}
	return run{order: o, state: st}, nil
}

// stopping reports whether the workers are stopping (never, for nil).
func stopping(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
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
	if after.Status == domain.StatusNeedsAttention {
		return // take logged it, with what payments said
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
