package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mercato-dev/mercato/internal/orders/domain"
)

// stepOutcome says how taking one step ended.
type stepOutcome int

const (
	// stepRecorded: the step's event (and the confirmation it made due)
	// was appended.
	stepRecorded stepOutcome = iota
	// stepFailed: the step failed and is to be tried again later.
	stepFailed
	// stepOvertaken: another writer appended to the stream first.
	stepOvertaken
	// stepCrashed: a fault hook stopped the run on the spot, as a crash
	// would.
	stepCrashed
)

// stepResult is what taking one step came to.
type stepResult struct {
	outcome stepOutcome
	// run is the run after the step once it was recorded; otherwise the
	// run as the step left it (armed, when it armed the payment attempt),
	// which a retry is scheduled from.
	run run
	// err says why the step failed, was overtaken or crashed.
	err error
	// leaseDropped: the write reached the terminal step, which drops the
	// lease in the same write.
	leaseDropped bool
}

func failed(r run, err error) stepResult { return stepResult{outcome: stepFailed, run: r, err: err} }

func crashed(err error) stepResult { return stepResult{outcome: stepCrashed, err: err} }

// take performs step at now: it arms the payment attempt before an
// authorization, makes the step's neighbour call and records its answer.
func (s *Saga) take(ctx context.Context, r run, step domain.Step, now time.Time) stepResult {
	if step == domain.StepAuthorizePayment && r.state.PaymentAttempt == PaymentAttemptNone {
		// Written before the call: should the process die during it, the
		// next run knows an authorization may exist.
		if err := s.store.SetPaymentAttempt(ctx, r.order.ID, PaymentAttemptArmed); err != nil {
			return failed(r, fmt.Errorf("arm payment attempt: %w", err))
		}
		r.state.PaymentAttempt, r.armed = PaymentAttemptArmed, true
	}
	data, err := s.execute(ctx, r.order, step, now)
	var refused *compensationRefusedError
	if errors.As(err, &refused) {
		// Retrying would change nothing: the order is handed to an
		// operator, with what payments said.
		s.log.ErrorContext(ctx, "a compensation cannot complete, the order needs attention",
			"order_id", r.order.ID, "step", string(step), "payment_id", r.order.PaymentID, "error", err.Error())
		return s.record(ctx, r, domain.OrderNeedsAttentionData{
			Reason: domain.ReasonPaymentNotReturned, Step: step, PaymentID: r.order.PaymentID,
		}, truncate(err.Error(), maxErrorLen))
	}
	if err != nil {
		return failed(r, err)
	}
	return s.record(ctx, r, data, "")
}

// after is the run once ev is recorded: the order with ev applied, and
// the payment attempt as ev leaves it.
func (r run) after(ev domain.Event) (run, error) {
	next := r
	if err := next.order.Apply(ev); err != nil {
		return run{}, err
	}
	switch ev.Data.(type) {
	case domain.StockReservedData:
		// The next step authorizes; arming here saves a write.
		next.state.PaymentAttempt, next.armed = PaymentAttemptArmed, true
	case domain.PaymentAuthorizedData, domain.PaymentDeclinedData:
		next.state.PaymentAttempt, next.armed = PaymentAttemptNone, false
	}
	next.state.Attempts = 0
	return next, nil
}

// record appends the event of a step's outcome (data) with the read model,
// the outgoing events and the bookkeeping of the step then due (problem
// being what an operator should know of it), in one write, firing the
// fault hook before and after it.
func (s *Saga) record(ctx context.Context, r run, data domain.EventData, problem string) stepResult {
	ev := domain.Event{Version: r.order.Version + 1, OccurredAt: storedTime(s.cfg.Now()), Data: data}
	if err := s.fire("before:" + string(ev.Type())); err != nil {
		return crashed(err)
	}
	next, err := r.after(ev)
	if err != nil {
		return failed(r, err)
	}
	out, err := integrationEvents(next.order, ev)
	if err != nil {
		return failed(r, err)
	}
	evs, states := []domain.Event{ev}, []domain.Order{next.order}
	// Confirming calls no neighbour, so the confirmation goes into the
	// same write as the event that makes it due (the capture): one commit
	// less per order, and no moment at which an order is captured but not
	// yet confirmed in the store.
	if next.nextStep(ev.OccurredAt) == domain.StepConfirm {
		confirm := domain.Event{Version: next.order.Version + 1, OccurredAt: ev.OccurredAt, Data: domain.OrderConfirmedData{}}
		if err := s.fire("before:" + string(confirm.Type())); err != nil {
			return crashed(err)
		}
		confirmed, err := next.after(confirm)
		if err != nil {
			return failed(r, err)
		}
		more, err := integrationEvents(confirmed.order, confirm)
		if err != nil {
			return failed(r, err)
		}
		evs, states, out = append(evs, confirm), append(states, confirmed.order), append(out, more...)
		next = confirmed
	}
	attempt := next.state.PaymentAttempt
	write := SagaWrite{
		Now:        ev.OccurredAt,
		Step:       next.nextStep(ev.OccurredAt),
		LeaseOwner: s.cfg.InstanceID, LeaseUntil: ev.OccurredAt.Add(s.cfg.Lease),
		PaymentAttempt: &attempt,
		Problem:        problem,
	}
	wctx, cancel := detached(ctx)
	err = s.orders.Append(wctx, next.order, r.order.Version, evs, out, write)
	cancel()
	switch {
	case errors.Is(err, domain.ErrConcurrentModification):
		return stepResult{outcome: stepOvertaken, run: r, err: err}
	case err != nil:
		return failed(r, fmt.Errorf("append %s: %w", ev.Type(), err))
	}
	before := r.order
	for i, e := range evs {
		if err := s.fire(string(e.Type())); err != nil {
			return crashed(err)
		}
		s.observe(ctx, before, states[i], e)
		before = states[i]
	}
	return stepResult{outcome: stepRecorded, run: next, leaseDropped: write.Step == domain.StepDone}
}

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
		return s.commit(ctx, o)
	case domain.StepCapturePayment:
		return s.capture(ctx, o)
	case domain.StepConfirm:
		return domain.OrderConfirmedData{}, nil
	case domain.StepTimeOut:
		return domain.CancellationRequestedData{Reason: domain.ReasonTimedOut, By: domain.RequestedBySystem}, nil
	case domain.StepReleaseStock:
		return s.release(ctx, o, now)
	case domain.StepRestockStock:
		return s.restock(ctx, o)
	case domain.StepVoidPayment:
		return s.void(ctx, o)
	case domain.StepRefundPayment:
		return s.refund(ctx, o)
	case domain.StepCancel:
		return o.CancelledData(), nil
	}
	return nil, fmt.Errorf("unknown saga step %q", step)
}

// paymentKey is the authorization's idempotency key: one per order, so a
// repeated authorization finds the first.
func paymentKey(orderID string) string { return "order-" + orderID }

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

// commit turns the hold into sold stock. Inventory refusing means the hold
// is gone (expired), and the order is cancelled.
func (s *Saga) commit(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.inv.Commit(ctx, o.ID)
	if err == nil {
		return domain.StockCommittedData{}, nil
	}
	if isTransient(err) {
		return nil, fmt.Errorf("commit stock: %w", err)
	}
	s.log.WarnContext(ctx, "inventory refused to commit the reservation", "order_id", o.ID, "error", err.Error())
	return domain.CancellationRequestedData{Reason: domain.ReasonReservationLost, By: domain.RequestedBySystem}, nil
}

// capture collects the payment. Payments refusing turns into a system
// cancellation.
func (s *Saga) capture(ctx context.Context, o domain.Order) (domain.EventData, error) {
	err := s.pay.Capture(ctx, o.PaymentID)
	if err == nil {
		return domain.PaymentCapturedData{PaymentID: o.PaymentID}, nil
	}
	if isTransient(err) {
		return nil, fmt.Errorf("capture payment: %w", err)
	}
	s.log.WarnContext(ctx, "payments refused the capture", "order_id", o.ID, "error", err.Error())
	return domain.CancellationRequestedData{Reason: domain.ReasonCaptureFailed, By: domain.RequestedBySystem}, nil
}
