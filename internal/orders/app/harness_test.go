package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	catalogv1 "github.com/mercato-dev/mercato/internal/gen/catalog/v1"
	"github.com/mercato-dev/mercato/internal/orders"
	"github.com/mercato-dev/mercato/internal/orders/adapters"
	"github.com/mercato-dev/mercato/internal/orders/app"
	"github.com/mercato-dev/mercato/internal/orders/domain"
	"github.com/mercato-dev/mercato/internal/orders/orderstest"
	"github.com/mercato-dev/mercato/internal/platform/auth"
	"github.com/mercato-dev/mercato/internal/platform/auth/authtest"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Products every harness's catalog sells.
const (
	mug     = "prod-mug" // SKU-MUG, 12.50 EUR
	pen     = "prod-pen" // SKU-PEN, 0.99 EUR
	hat     = "prod-hat" // SKU-HAT, 5.00 USD
	car     = "prod-car" // SKU-CAR, 1,000,000.00 EUR
	initial = 10         // units of each sku on hand
	user    = "user-1"   // a customer
	other   = "user-2"   // another customer
	admin   = "admin-1"  // an administrator
	visa    = "tok_visa" // authorizes
	decline = "tok_chargeDeclined"
)

var errCrash = errors.New("simulated crash")

// engines opens one migrated database per engine; the tests of an engine
// share it (every order has its own id, so they do not interfere).
func engines(t *testing.T) map[string]*db.DB {
	t.Helper()
	out := map[string]*db.DB{}
	for _, e := range dbtest.Engines(t) {
		d := dbtest.Open(t, e.URL)
		require.NoError(t, orders.MigrateDB(t.Context(), d))
		out[e.Name] = d
	}
	return out
}

// forEachEngine runs f once per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, d *db.DB)) {
	for name, d := range engines(t) {
		t.Run(name, func(t *testing.T) { f(t, d) })
	}
}

// clock is a hand-moved clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// crasher simulates a crash at one durable point: the hook fails there
// once, which stops the run on the spot, and the harness then restarts.
// It also records every point it saw.
type crasher struct {
	mu      sync.Mutex
	at      string
	fired   bool
	crashed bool
	seen    []string
}

func (c *crasher) hook(point string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, point)
	if point == c.at && !c.fired {
		c.fired, c.crashed = true, true
		return errCrash
	}
	return nil
}

func (c *crasher) takeCrash() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	crashed := c.crashed
	c.crashed = false
	return crashed
}

func (c *crasher) points() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

type harness struct {
	t *testing.T
	// user, other and admin are per harness: the tests of an engine share
	// a database, and idempotency keys are per user.
	user, other, admin string
	db                 *db.DB
	clock              *clock
	issuer             *authtest.Issuer
	repo               *adapters.OrderSQLRepository
	inv                *orderstest.Inventory
	pay                *orderstest.Payments
	catalog            *orderstest.Catalog
	cart               *orderstest.Cart
	crash              *crasher
	wrapInv            func(app.Inventory) app.Inventory
	wrapPay            func(app.Payments) app.Payments
	wrapStore          func(app.SagaRepository) app.SagaRepository
	sagaCfg            app.SagaConfig
	logs               io.Writer
	saga               *app.Saga
	orders             *app.Orders
	restarts           int
}

type option func(*harness)

// doubled makes every inventory and payments call happen twice, as a
// redelivery would.
func doubled() option {
	return func(h *harness) {
		h.wrapInv = func(i app.Inventory) app.Inventory { return twiceInventory{i} }
		h.wrapPay = func(p app.Payments) app.Payments { return twicePayments{p} }
	}
}

func crashAt(point string) option { return func(h *harness) { h.crash.at = point } }

// withSagaStore puts wrap around the saga's bookkeeping store.
func withSagaStore(wrap func(app.SagaRepository) app.SagaRepository) option {
	return func(h *harness) { h.wrapStore = wrap }
}

func withSaga(cfg app.SagaConfig) option { return func(h *harness) { h.sagaCfg = cfg } }

func realTime() option { return func(h *harness) { h.clock = nil } }

// withLogs sends the logs (JSON lines) to w.
func withLogs(w io.Writer) option { return func(h *harness) { h.logs = w } }

func newHarness(t *testing.T, d *db.DB, opts ...option) *harness {
	t.Helper()
	suffix := uuid.NewString()[:8]
	h := &harness{
		t: t, db: d, user: "user-" + suffix, other: "other-" + suffix, admin: "admin-" + suffix, clock: &clock{t: time.Now().UTC().Truncate(time.Millisecond)},
		issuer: authtest.New(t), repo: adapters.NewOrderSQLRepository(d, events.NewOutbox(d)),
		inv: orderstest.NewInventory(), pay: orderstest.NewPayments(), crash: &crasher{},
		wrapInv: func(i app.Inventory) app.Inventory { return i },
		wrapPay: func(p app.Payments) app.Payments { return p },
	}
	h.catalog = orderstest.NewCatalog(
		&catalogv1.Product{Id: mug, Sku: "SKU-MUG", Name: "Mug", PriceCents: 1250, Currency: "EUR"},
		&catalogv1.Product{Id: pen, Sku: "SKU-PEN", Name: "Pen", PriceCents: 99, Currency: "EUR"},
		&catalogv1.Product{Id: hat, Sku: "SKU-HAT", Name: "Hat", PriceCents: 500, Currency: "USD"},
		&catalogv1.Product{Id: car, Sku: "SKU-CAR", Name: "Car", PriceCents: 100_000_000, Currency: "EUR"},
	)
	h.cart = orderstest.NewCart(h.issuer.KeySource())
	for _, sku := range []string{"SKU-MUG", "SKU-PEN", "SKU-HAT", "SKU-CAR"} {
		h.inv.SetOnHand(sku, initial)
	}
	for _, o := range opts {
		o(h)
	}
	if h.clock != nil {
		h.inv.SetClock(h.clock.Now)
	}
	h.start()
	return h
}

func (h *harness) now() func() time.Time {
	if h.clock == nil {
		return time.Now
	}
	return h.clock.Now
}

// start builds the use cases and the saga, as a process start does.
func (h *harness) start() {
	cfg := h.sagaCfg
	cfg.InstanceID = "test-replica"
	cfg.Now = h.now()
	cfg.Fault = h.crash.hook
	w := io.Discard
	if os.Getenv("ORDERS_TEST_LOG") != "" {
		w = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if h.logs != nil {
		logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	inv := h.wrapInv(adapters.NewInventoryGRPCClient(orderstest.InventoryClient(h.inv)))
	pay := h.wrapPay(adapters.NewPaymentsGRPCClient(orderstest.PaymentsClient(h.pay)))
	var store app.SagaRepository = h.repo
	if h.wrapStore != nil {
		store = h.wrapStore(store)
	}
	h.saga = app.NewSaga(h.repo, store, inv, pay, logger, cfg)
	h.orders = app.NewOrders(h.repo, h.repo,
		adapters.NewCatalogGRPCClient(orderstest.CatalogClient(h.catalog)),
		adapters.NewCartGRPCClient(orderstest.CartClient(h.cart)), pay,
		h.saga, logger, app.OrdersConfig{PageTokenKey: []byte("0123456789abcdef"), Now: h.now(), Fault: h.crash.hook})
}

// restart simulates a process restart after a crash.
func (h *harness) restart() {
	h.t.Helper()
	h.restarts++
	h.start()
	require.NoError(h.t, h.saga.Recover(h.t.Context()))
}

// restartIfCrashed restarts when the last operation hit the simulated crash.
func (h *harness) restartIfCrashed() bool {
	if h.crash.takeCrash() {
		h.restart()
		return true
	}
	return false
}

// as returns a context authenticated as userID with role.
func (h *harness) as(userID, role string) context.Context {
	return auth.WithPrincipal(h.t.Context(), auth.Principal{
		UserID: userID, Email: userID + "@example.test", Role: role, Token: h.issuer.Token(userID, role),
	})
}

func (h *harness) customer() context.Context { return h.as(h.user, auth.RoleCustomer) }

func address() *domain.Address {
	return &domain.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "London", PostalCode: "N1 9GU", Country: "GB"}
}

func order(token string, items ...domain.ItemInput) app.PlaceOrder {
	return app.PlaceOrder{IdempotencyKey: "key-" + token, Items: items, ShippingAddress: address(), PaymentToken: token}
}

// place places an order, retrying with the same key after a simulated
// crash, as a client does.
func (h *harness) place(ctx context.Context, cmd app.PlaceOrder) domain.View {
	h.t.Helper()
	for range 3 {
		v, err := h.orders.PlaceOrder(ctx, cmd)
		if h.restartIfCrashed() {
			continue
		}
		require.NoError(h.t, err)
		return v
	}
	h.t.Fatal("placing the order kept crashing")
	return domain.View{}
}

// cancel cancels an order, restarting after a simulated crash (the
// cancellation is recorded before the crash point fires).
func (h *harness) cancel(ctx context.Context, id, reason string) domain.View {
	h.t.Helper()
	v, err := h.orders.CancelOrder(ctx, id, reason)
	if h.restartIfCrashed() {
		return h.get(id)
	}
	require.NoError(h.t, err)
	return v
}

// step drives the order once, restarting after a simulated crash.
func (h *harness) step(id string) app.Progress {
	h.t.Helper()
	p, err := h.saga.Drive(h.t.Context(), id)
	if h.restartIfCrashed() {
		return app.Progress{Ran: true}
	}
	require.NoError(h.t, err)
	return p
}

// untilRetry drives the order until a step is scheduled again or the
// order is terminal.
func (h *harness) untilRetry(id string) app.Progress {
	h.t.Helper()
	for range 50 {
		p := h.step(id)
		if p.Terminal || !p.RetryAt.IsZero() {
			return p
		}
	}
	h.t.Fatal("the saga made no progress")
	return app.Progress{}
}

// settle drives the order to a terminal state, moving the clock to every
// scheduled retry.
func (h *harness) settle(id string) domain.View {
	h.t.Helper()
	for range 500 {
		p := h.step(id)
		if p.Terminal {
			return h.get(id)
		}
		switch {
		case !p.RetryAt.IsZero():
			h.clock.Set(p.RetryAt)
		case !p.Ran:
			// Finished already (a cancellation drove it inline), or not
			// due yet.
			o, _, err := h.repo.Load(h.t.Context(), id)
			require.NoError(h.t, err)
			if o.Terminal() {
				return h.get(id)
			}
			h.clock.Advance(10 * time.Millisecond)
		}
	}
	h.t.Fatalf("order %s did not settle", id)
	return domain.View{}
}

func (h *harness) get(id string) domain.View {
	h.t.Helper()
	v, err := h.repo.Get(h.t.Context(), id)
	require.NoError(h.t, err)
	return v
}

func (h *harness) eventTypes(id string) []domain.EventType {
	h.t.Helper()
	evs, err := h.repo.Events(h.t.Context(), id)
	require.NoError(h.t, err)
	out := make([]domain.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type()
	}
	return out
}

// outbox returns the subjects and payloads queued for the order.
func (h *harness) outbox(id string) map[string]app.OrderMessage {
	h.t.Helper()
	rows, err := h.db.QueryContext(h.t.Context(), `SELECT event_id, subject, payload FROM outbox WHERE event_id LIKE $1`, id+":%")
	require.NoError(h.t, err)
	defer rows.Close()
	out := map[string]app.OrderMessage{}
	for rows.Next() {
		var (
			eventID, subject string
			payload          []byte
		)
		require.NoError(h.t, rows.Scan(&eventID, &subject, &payload))
		var m app.OrderMessage
		require.NoError(h.t, json.Unmarshal(payload, &m))
		require.NotContains(h.t, out, subject, "one %s per order", subject)
		out[subject] = m
	}
	require.NoError(h.t, rows.Err())
	return out
}

// outcome is everything a run leaves behind for one order, comparable
// between runs.
type outcome struct {
	Status      domain.Status
	Reason      string
	Refunded    bool
	Events      []domain.EventType
	Stock       orderstest.StockLevel
	Reservation string
	Payments    []string
	Captures    int
	Subjects    []string
}

func (h *harness) outcome(id, sku string) outcome {
	h.t.Helper()
	v := h.get(id)
	res, _ := h.inv.ReservationStatus(id)
	var statuses []string
	for _, p := range h.pay.Payments(id) {
		statuses = append(statuses, p.Status)
	}
	var subjects []string
	for s := range h.outbox(id) {
		subjects = append(subjects, s)
	}
	sort.Strings(subjects)
	return outcome{
		Status: v.Status, Reason: v.Reason, Refunded: v.Refunded, Events: h.eventTypes(id),
		Stock: h.inv.Stock(sku), Reservation: res, Payments: statuses, Captures: h.pay.Captures(id),
		Subjects: subjects,
	}
}

// twiceInventory delivers every call twice and answers with the second
// answer, as a retried call whose first answer was lost does.
type twiceInventory struct{ app.Inventory }

func (t twiceInventory) Reserve(ctx context.Context, id string, lines []app.StockLine, ttl time.Duration) (app.Reservation, error) {
	_, _ = t.Inventory.Reserve(ctx, id, lines, ttl)
	return t.Inventory.Reserve(ctx, id, lines, ttl)
}

func (t twiceInventory) Commit(ctx context.Context, id string) error {
	_ = t.Inventory.Commit(ctx, id)
	return t.Inventory.Commit(ctx, id)
}

func (t twiceInventory) Release(ctx context.Context, id string) error {
	_ = t.Inventory.Release(ctx, id)
	return t.Inventory.Release(ctx, id)
}

func (t twiceInventory) Restock(ctx context.Context, id string) error {
	_ = t.Inventory.Restock(ctx, id)
	return t.Inventory.Restock(ctx, id)
}

type twicePayments struct{ app.Payments }

func (t twicePayments) Authorize(ctx context.Context, a app.Authorization) (app.Payment, error) {
	_, _ = t.Payments.Authorize(ctx, a)
	return t.Payments.Authorize(ctx, a)
}

func (t twicePayments) Capture(ctx context.Context, id string) error {
	_ = t.Payments.Capture(ctx, id)
	return t.Payments.Capture(ctx, id)
}

func (t twicePayments) Void(ctx context.Context, id string) error {
	_ = t.Payments.Void(ctx, id)
	return t.Payments.Void(ctx, id)
}

func (t twicePayments) Refund(ctx context.Context, id string) error {
	_ = t.Payments.Refund(ctx, id)
	return t.Payments.Refund(ctx, id)
}

func types(ts ...domain.EventType) []domain.EventType { return ts }
