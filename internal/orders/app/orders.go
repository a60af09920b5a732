package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/pagination"
)

// Defaults of OrdersConfig.
const (
	DefaultSagaDeadline = 30 * time.Second
	DefaultPageSize     = pagination.DefaultPageSize
	MaxPageSize         = pagination.MaxPageSize
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

// OrdersConfig tunes the use cases. Zero values pick the defaults.
type OrdersConfig struct {
	// SagaDeadline is how long a checkout may take before it is undone.
	SagaDeadline time.Duration
	// PageTokenKey signs list page tokens; it must not be empty.
	PageTokenKey []byte
	// Now is the clock.
	Now func() time.Time
	// Fault is called at the durable points of placing and cancelling, as
	// SagaConfig.Fault.
	Fault FaultHook
	// IdempotencyKeyTTL is how long an Idempotency-Key is remembered
	// (DefaultIdempotencyKeyTTL when 0). A retry within it returns the
	// same order; the same key after it places a new one.
	IdempotencyKeyTTL time.Duration
}

// DefaultIdempotencyKeyTTL is how long idempotency keys are kept, as
// payment APIs commonly do: far longer than any client retries.
const DefaultIdempotencyKeyTTL = 24 * time.Hour

// Orders are the use cases. Every one requires an authenticated caller; an
// order is visible to its owner and to admins only (NotFound otherwise, so
// its existence is not revealed). Safe for concurrent use.
type Orders struct {
	repo     Repository
	catalog  Catalog
	cart     Cart
	payments PaymentMethods
	saga     *Saga
	log      *slog.Logger
	cfg      OrdersConfig
	tokens   pagination.Tokens
}

// NewOrders returns the use cases. payments checks card tokens before an
// order is accepted.
func NewOrders(repo Repository, catalog Catalog, cart Cart, payments PaymentMethods, saga *Saga, logger *slog.Logger, cfg OrdersConfig) *Orders {
	if cfg.SagaDeadline <= 0 {
		cfg.SagaDeadline = DefaultSagaDeadline
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyKeyTTL <= 0 {
		cfg.IdempotencyKeyTTL = DefaultIdempotencyKeyTTL
	}
	return &Orders{
		repo: repo, catalog: catalog, cart: cart, payments: payments, saga: saga, log: logger, cfg: cfg,
		tokens: pagination.NewTokens(cfg.PageTokenKey, "orders"),
	}
}

// PlaceOrder is a request to buy.
type PlaceOrder struct {
	// IdempotencyKey is the client's Idempotency-Key header.
	IdempotencyKey string
	// Items empty means: check out the caller's cart.
	Items           []domain.ItemInput
	ShippingAddress *domain.Address
	PaymentToken    string
}

// requestHash is the fingerprint of a request's canonical form (lines
// merged and sorted, fields trimmed), so a retry is recognised even if the
// client re-serialised it, and a different request under the same key is
// not.
func requestHash(lines []domain.ItemInput, addr domain.Address, token string) string {
	type canonical struct {
		Cart    bool               `json:"cart"`
		Items   []domain.ItemInput `json:"items"`
		Address domain.Address     `json:"address"`
		Token   string             `json:"token"`
	}
	b, _ := json.Marshal(canonical{Cart: len(lines) == 0, Items: lines, Address: addr, Token: token}) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PlaceOrder records a pending order and starts its checkout. Prices come
// from the catalog. Payments is asked whether it knows the card token
// before anything is written: an unknown token is Invalid, and payments
// unreachable is Unavailable, with no order created either way. The same
// idempotency key with the same request returns the order the first call
// created (in its current state), even when both calls race; with another
// request it is Unprocessable.
func (a *Orders) PlaceOrder(ctx context.Context, cmd PlaceOrder) (domain.View, error) {
	p, err := auth.RequireUser(ctx)
	if err != nil {
		return domain.View{}, err
	}
	key, err := domain.NormalizeIdempotencyKey(cmd.IdempotencyKey)
	if err != nil {
		return domain.View{}, err
	}
	addr, err := domain.NormalizeAddress(cmd.ShippingAddress)
	if err != nil {
		return domain.View{}, err
	}
	if err := domain.ValidatePaymentToken(cmd.PaymentToken); err != nil {
		return domain.View{}, err
	}
	var lines []domain.ItemInput
	if len(cmd.Items) > 0 {
		if lines, err = domain.NormalizeItems("items", cmd.Items); err != nil {
			return domain.View{}, err
		}
	}
	hash := requestHash(lines, addr, cmd.PaymentToken)

	// A retry is answered without calling the cart or the catalog again.
	if rec, found, err := a.repo.FindIdempotencyKey(ctx, p.UserID, key); err != nil {
		return domain.View{}, fmt.Errorf("find idempotency key: %w", err)
	} else if found {
		return a.replay(ctx, rec, hash)
	}

	fromCart := len(lines) == 0
	if fromCart {
		inCart, err := a.cart.Items(ctx, p)
		if err != nil {
			a.log.WarnContext(ctx, "reading the cart failed", "error", err.Error())
			return domain.View{}, ErrCartDown
		}
		if len(inCart) == 0 {
			return domain.View{}, domain.ErrCartEmpty
		}
		if lines, err = domain.NormalizeItems("cart", inCart); err != nil {
			return domain.View{}, err
		}
	}
	items, total, currency, err := a.price(ctx, lines)
	if err != nil {
		return domain.View{}, err
	}
	if err := a.checkPaymentToken(ctx, cmd.PaymentToken); err != nil {
		return domain.View{}, err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return domain.View{}, fmt.Errorf("generate order id: %w", err)
	}
	now := storedTime(a.cfg.Now())
	placed := domain.PlaceOrder{
		OrderID: id.String(), UserID: p.UserID, Email: p.Email, Items: items, TotalCents: total,
		Currency: currency, ShippingAddress: addr, PaymentToken: cmd.PaymentToken,
		FromCart: fromCart, PlacedAt: now, Deadline: a.cfg.SagaDeadline,
	}.Placed()
	var o domain.Order
	if err := o.Apply(placed); err != nil {
		return domain.View{}, err
	}
	out, err := integrationEvents(o, placed)
	if err != nil {
		return domain.View{}, err
	}
	if err := a.fire("before:" + string(domain.OrderPlaced)); err != nil {
		return domain.View{}, err
	}
	rec := IdempotencyRecord{UserID: p.UserID, Key: key, RequestHash: hash, OrderID: o.ID}
	err = a.repo.Create(ctx, rec, o, []domain.Event{placed}, out, SagaWrite{Now: now, Step: o.NextStep(now, false)})
	if errors.Is(err, ErrIdempotencyKeyTaken) {
		// A concurrent request with the same key won the race.
		rec, found, err := a.repo.FindIdempotencyKey(ctx, p.UserID, key)
		if err != nil || !found {
			return domain.View{}, fmt.Errorf("find idempotency key after a race: %w", errors.Join(err, ErrIdempotencyKeyTaken))
		}
		return a.replay(ctx, rec, hash)
	}
	if err != nil {
		return domain.View{}, fmt.Errorf("create order: %w", err)
	}
	if err := a.fire(string(domain.OrderPlaced)); err != nil {
		return domain.View{}, err
	}
	a.saga.Wake(o.ID)
	return o.View(), nil
}

func (a *Orders) replay(ctx context.Context, rec IdempotencyRecord, hash string) (domain.View, error) {
	if rec.RequestHash != hash {
		return domain.View{}, domain.ErrIdempotencyKeyReused
	}
	v, err := a.repo.Get(ctx, rec.OrderID)
	if err != nil {
		return domain.View{}, fmt.Errorf("get order of idempotency key: %w", err)
	}
	return v, nil
}

// checkPaymentToken asks payments whether it knows the card, as a card
// provider validates a payment method when it is attached rather than at
// the first charge. The saga still handles a token refused at
// authorization (it may be revoked in between).
func (a *Orders) checkPaymentToken(ctx context.Context, token string) error {
	err := a.payments.CheckPaymentToken(ctx, token)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPaymentTokenRejected):
		return domain.ErrPaymentTokenUnknown
	}
	a.log.WarnContext(ctx, "checking the payment token failed", "error", err.Error())
	return ErrPaymentsDown
}

func (a *Orders) price(ctx context.Context, lines []domain.ItemInput) ([]domain.Item, int64, string, error) {
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = l.ProductID
	}
	products, err := a.catalog.Products(ctx, ids)
	if err != nil {
		a.log.WarnContext(ctx, "reading prices from the catalog failed", "error", err.Error())
		return nil, 0, "", ErrCatalogDown
	}
	byID := make(map[string]domain.Product, len(products))
	for _, p := range products {
		byID[p.ID] = p
	}
	return domain.PriceItems(lines, byID)
}

// visible reports whether p may see the order of owner.
func visible(p auth.Principal, owner string) bool {
	return p.UserID == owner || p.IsAdmin()
}

// GetOrder returns one order.
func (a *Orders) GetOrder(ctx context.Context, id string) (domain.View, error) {
	return a.WaitForOrder(ctx, id, 0)
}

// ForgetIdempotencyKeys deletes the idempotency keys older than the TTL
// and returns how many.
func (a *Orders) ForgetIdempotencyKeys(ctx context.Context) (int64, error) {
	return a.repo.ForgetIdempotencyKeys(ctx, a.cfg.Now().Add(-a.cfg.IdempotencyKeyTTL))
}

// KeyRetentionInterval is how often expired idempotency keys are
// forgotten: a tenth of the TTL, between a second and ten minutes.
func (a *Orders) KeyRetentionInterval() time.Duration {
	return min(max(a.cfg.IdempotencyKeyTTL/10, time.Second), 10*time.Minute)
}

// RetainKeys forgets expired idempotency keys, logging what it did; a
// failure is logged, for the next run to try again.
func (a *Orders) RetainKeys(ctx context.Context) {
	n, err := a.ForgetIdempotencyKeys(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		a.log.WarnContext(ctx, "forgetting expired idempotency keys failed", "error", err.Error())
	case n > 0:
		a.log.InfoContext(ctx, "forgot expired idempotency keys", "count", n)
	}
}

// MaxOrderWait bounds how long GetOrder may wait for an outcome.
const MaxOrderWait = 10 * time.Second

// rereadInterval is how often a waiting reader re-reads an order whose saga
// may be running on another replica (which cannot signal this one).
const rereadInterval = 250 * time.Millisecond

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
	v, err := a.repo.Get(ctx, id)
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
		if v, err = a.repo.Get(ctx, id); err != nil {
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
	return a.repo.Events(ctx, id)
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
	views, err := a.repo.List(ctx, owner, after, size+1)
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
	return a.repo.Get(readCtx, id)
}

// requestCancellation appends the cancellation (or refund) request to the
// order's stream, reloading and deciding again when the saga appended
// first, and returns the type of the event appended.
func (a *Orders) requestCancellation(ctx context.Context, p auth.Principal, id, reason string) (domain.EventType, error) {
	for attempt := 1; ; attempt++ {
		o, _, err := a.repo.Load(ctx, id)
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
		err = a.repo.Append(ctx, next, o.Version, []domain.Event{ev}, nil, SagaWrite{Now: now, Step: next.NextStep(now, false)})
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

func (a *Orders) fire(point string) error {
	if a.cfg.Fault == nil {
		return nil
	}
	return a.cfg.Fault(point)
}
