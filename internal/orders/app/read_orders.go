package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// MaxOrderWait bounds how long GetOrder may wait for an outcome.
const MaxOrderWait = 10 * time.Second

// rereadInterval is how often a waiting reader re-reads an order whose saga
// may be running on another replica (which cannot signal this one).
const rereadInterval = 250 * time.Millisecond

// GetOrder returns one order.
func (a *Orders) GetOrder(ctx context.Context, id string) (domain.View, error) {
	return a.WaitForOrder(ctx, id, 0)
}

// WaitForOrder is GetOrder that, for a pending order, waits up to wait
// (at most MaxOrderWait, and never past ctx's deadline) for the order to
// reach its outcome, so a client does not have to poll. It answers with the
// order as it is when the wait ends, pending or not.
func (a *Orders) WaitForOrder(ctx context.Context, id string, wait time.Duration) (domain.View, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return domain.View{}, err
	}
	if wait < 0 || wait > MaxOrderWait {
		return domain.View{}, ErrWaitOutOfRange
	}
	if _, err := uuid.Parse(id); err != nil {
		return domain.View{}, domain.ErrNotFound
	}
	// A reader that may wait watches for the outcome before it reads, so
	// an outcome signalled between the read and the wait is not missed;
	// after every wake-up it watches again before reading again.
	done, stop := (<-chan struct{})(nil), func() {}
	if wait > 0 {
		done, stop = a.saga.outcomes.watch(id)
	}
	defer func() { stop() }()
	v, err := a.orders.Get(ctx, id)
	if err != nil {
		return domain.View{}, err
	}
	if !visible(p, v.UserID) {
		return domain.View{}, domain.ErrNotFound
	}
	if v.Status != domain.StatusPending || wait == 0 {
		return v, nil
	}
	// Answer a little before the caller's own deadline runs out.
	until := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Add(-100*time.Millisecond).Before(until) {
		until = d.Add(-100 * time.Millisecond)
	}
	for v.Status == domain.StatusPending {
		left := time.Until(until)
		if left <= 0 {
			break
		}
		timer := time.NewTimer(min(left, rereadInterval))
		select {
		case <-done:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		stop()
		if ctx.Err() != nil {
			return domain.View{}, ctx.Err()
		}
		done, stop = a.saga.outcomes.watch(id)
		if v, err = a.orders.Get(ctx, id); err != nil {
			return domain.View{}, err
		}
	}
	return v, nil
}

// ListOrderEvents returns the order's history, oldest first.
func (a *Orders) ListOrderEvents(ctx context.Context, id string) ([]domain.Event, error) {
	if _, err := a.GetOrder(ctx, id); err != nil {
		return nil, err
	}
	return a.orders.Events(ctx, id)
}

// ListOrders is a page request.
type ListOrders struct {
	PageSize  int
	PageToken string
}

// OrderPage is one page of orders, newest first.
type OrderPage struct {
	Orders        []domain.View
	NextPageToken string
}

// ListOrders returns the caller's orders (an admin's: everyone's).
func (a *Orders) ListOrders(ctx context.Context, q ListOrders) (OrderPage, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return OrderPage{}, err
	}
	size, err := pagination.PageSize(q.PageSize)
	if err != nil {
		return OrderPage{}, err
	}
	owner, scope := p.UserID, "user:"+p.UserID
	if p.IsAdmin() {
		owner, scope = "", "all"
	}
	var after string
	if q.PageToken != "" {
		if after, err = a.tokens.Parse(q.PageToken, scope); err != nil {
			return OrderPage{}, err
		}
	}
	views, err := a.orders.List(ctx, owner, after, size+1)
	if err != nil {
		return OrderPage{}, fmt.Errorf("list orders: %w", err)
	}
	page := OrderPage{Orders: views}
	if len(views) > size {
		page.Orders = views[:size]
		page.NextPageToken = a.tokens.Issue(views[size-1].ID, scope)
	}
	return page, nil
}

// StuckPage is one page of the orders an operator should look at, newest
// first.
type StuckPage struct {
	Orders        []StuckOrder
	NextPageToken string
}

// ListStuckOrders returns, to an admin only, the orders an operator should
// look at: those whose saga still has work to do and has recorded nothing
// for the stuck threshold (SagaConfig.StuckAfter), and those that need
// attention.
func (a *Orders) ListStuckOrders(ctx context.Context, q ListOrders) (StuckPage, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return StuckPage{}, err
	}
	size, err := pagination.PageSize(q.PageSize)
	if err != nil {
		return StuckPage{}, err
	}
	const scope = "stuck"
	var after string
	if q.PageToken != "" {
		if after, err = a.tokens.Parse(q.PageToken, scope); err != nil {
			return StuckPage{}, err
		}
	}
	stuck, err := a.saga.listStuck(ctx, after, size+1)
	if err != nil {
		return StuckPage{}, fmt.Errorf("list stuck orders: %w", err)
	}
	page := StuckPage{Orders: stuck}
	if len(stuck) > size {
		page.Orders = stuck[:size]
		page.NextPageToken = a.tokens.Issue(stuck[size-1].Order.ID, scope)
	}
	return page, nil
}
