package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
)

const (
	// maxCancelAttempts bounds the reload-and-retry loop of a cancellation
	// racing the saga. A cancellation does not wait for a running step, so
	// it may lose the race to each of the saga's appends; the longest
	// checkout appends fewer events than this.
	maxCancelAttempts = 16
	// inlineDriveBudget bounds how long CancelOrder drives the saga before
	// answering; what is left runs in the background.
	inlineDriveBudget = 10 * time.Second
	// answerReserve is kept from the request deadline for answering.
	answerReserve = 250 * time.Millisecond
)

// CancelOrder cancels a pending order (the saga releases the stock and
// voids the payment) or refunds a confirmed one (the saga refunds and
// restocks); a pending order past its stock commit is finished, then
// refunded (see domain.Order.RequestCancellation). The request is
// recorded at once, without waiting for a step the saga is running: that
// run meets it at its next step boundary (its append finds the stream
// moved on, and it decides again). When no run of this process has the
// order, the saga is driven inline, within the request's deadline, so the
// answer usually shows the outcome; what is left finishes in the
// background.
func (a *Orders) CancelOrder(ctx context.Context, id, reason string) (domain.View, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return domain.View{}, err
	}
	if _, err := uuid.Parse(id); err != nil {
		return domain.View{}, domain.ErrNotFound
	}
	appended, err := a.requestCancellation(ctx, p, id, reason)
	if err != nil {
		return domain.View{}, err
	}
	if err := a.fire(string(appended)); err != nil {
		return domain.View{}, err
	}

	driveCtx, cancel := a.inlineBudget(ctx)
	progress, err := a.saga.DriveIfIdle(driveCtx, id)
	cancel()
	switch {
	case err != nil:
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			a.log.WarnContext(ctx, "driving a cancellation inline failed, it continues in the background",
				"order_id", id, "error", err.Error())
		}
		a.saga.Wake(id)
	case !progress.RetryAt.IsZero():
		a.saga.WakeAt(id, progress.RetryAt)
	}
	readCtx, cancelRead := detached(ctx)
	defer cancelRead()
	return a.orders.Get(readCtx, id)
}

// requestCancellation appends the cancellation (or refund) request to the
// order's stream, reloading and deciding again when the saga appended
// first, and returns the type of the event appended.
func (a *Orders) requestCancellation(ctx context.Context, p auth.Principal, id, reason string) (domain.EventType, error) {
	for attempt := 1; ; attempt++ {
		o, _, err := a.orders.Load(ctx, id)
		if err != nil {
			return "", err
		}
		if !visible(p, o.UserID) {
			return "", domain.ErrNotFound
		}
		def := domain.ReasonCustomerCancelled
		if p.UserID != o.UserID {
			def = domain.ReasonAdminCancelled
		}
		why, err := domain.NormalizeCancelReason(reason, def)
		if err != nil {
			return "", err
		}
		data, err := o.RequestCancellation(p.UserID, why)
		if err != nil {
			return "", err
		}
		now := storedTime(a.cfg.Now())
		ev := domain.Event{Version: o.Version + 1, OccurredAt: now, Data: data}
		next := o
		if err := next.Apply(ev); err != nil {
			return "", err
		}
		err = a.orders.Append(ctx, next, o.Version, []domain.Event{ev}, nil, SagaWrite{Now: now, Step: next.NextStep(now, false)})
		if errors.Is(err, domain.ErrConcurrentModification) {
			// The saga (of this replica or another) appended first.
			if attempt == maxCancelAttempts {
				return "", domain.ErrConcurrentUpdates
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("append %s: %w", ev.Type(), err)
		}
		return ev.Type(), nil
	}
}

// inlineBudget is the time CancelOrder may spend driving the saga: until
// shortly before the request's deadline, and never long.
func (a *Orders) inlineBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	budget := inlineDriveBudget
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-answerReserve)
	}
	return context.WithTimeout(ctx, max(budget, 0))
}
