package ports_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/cart"
	"github.com/mercato-dev/mercato/internal/cart/adapters"
	"github.com/mercato-dev/mercato/internal/cart/app"
	"github.com/mercato-dev/mercato/internal/cart/domain"
	"github.com/mercato-dev/mercato/internal/cart/ports"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
)

const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

// everyone's products exist.
type anyProduct struct{}

func (anyProduct) ProductExists(context.Context, string) (bool, error) { return true, nil }

// harness is the order.confirmed consumer over one repository, fed through
// an embedded JetStream.
type harness struct {
	repo app.CartRepository
	js   jetstream.JetStream
	reg  *prometheus.Registry
}

type repoSetup struct {
	name string
	// open returns the repository and the database holding processed_events.
	open func(t *testing.T) (app.CartRepository, *db.DB)
}

func repoSetups() []repoSetup {
	sqlRepo := func(url func(testing.TB) string) func(t *testing.T) (app.CartRepository, *db.DB) {
		return func(t *testing.T) (app.CartRepository, *db.DB) {
			d := dbtest.Open(t, url(t))
			require.NoError(t, cart.MigrateDB(t.Context(), d))
			return adapters.NewCartSQLRepository(d), d
		}
	}
	return []repoSetup{
		{"sqlite", sqlRepo(dbtest.SQLiteURL)},
		{"postgres", sqlRepo(dbtest.PostgresURL)},
		{"redis", func(t *testing.T) (app.CartRepository, *db.DB) {
			d := dbtest.Open(t, dbtest.SQLiteURL(t))
			require.NoError(t, cart.MigrateDB(t.Context(), d))
			return adapters.NewCartRedisRepository(redisClient(t), redisPrefix(t)), d
		}},
	}
}

// wrapHandler lets a test interfere with the real handler.
type wrapHandler func(real events.Handler) events.Handler

func newHarness(t *testing.T, setup repoSetup, wrap wrapHandler) *harness {
	t.Helper()
	repo, d := setup.open(t)
	_, js := natstest.Connect(t, natstest.Start(t))
	// The orders service owns the stream the consumer reads.
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, []events.Stream{{Name: "ORDERS", Domain: "order"}}))

	handler := ports.OrderConfirmedHandler(app.NewCart(repo, anyProduct{}))
	if wrap != nil {
		handler = wrap(handler)
	}
	cfg := ports.OrderConfirmedConsumerConfig(3)
	cfg.Backoff = []time.Duration{20 * time.Millisecond}
	reg := prometheus.NewRegistry()
	consumer, err := events.NewConsumer(d, js, slog.New(slog.DiscardHandler), cfg, handler, events.WithConsumerMetrics(reg))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &harness{repo: repo, js: js, reg: reg}
}

type orderedItem struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// publish sends one delivery of event eventID for an order that checked
// out userID's cart; each call is a separate stream message, as when a
// producer republishes after the duplicate window.
func (h *harness) publish(t *testing.T, eventID, userID string, items ...orderedItem) {
	t.Helper()
	h.publishOrder(t, eventID, map[string]any{"user_id": userID, "items": items, "from_cart": true})
}

// publishOrder sends an order.confirmed whose payload is fields over a
// valid base.
func (h *harness) publishOrder(t *testing.T, eventID string, fields map[string]any) {
	t.Helper()
	body := map[string]any{"order_id": uuid.NewString(), "total_cents": 1250, "currency": "USD"}
	for k, v := range fields {
		body[k] = v
	}
	payload, err := json.Marshal(body)
	require.NoError(t, err)
	h.publishRaw(t, eventID, payload)
}

func (h *harness) publishRaw(t *testing.T, eventID string, payload []byte) {
	t.Helper()
	msg := nats.NewMsg(ports.SubjectOrderConfirmed)
	msg.Data = payload
	msg.Header.Set(events.HeaderEventID, eventID)
	_, err := h.js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(rand.Text()))
	require.NoError(t, err)
}

// waitHandled waits until the consumer counted n deliveries with outcome.
func (h *harness) waitHandled(t *testing.T, outcome string, n float64) {
	t.Helper()
	require.Eventually(t, func() bool { return handled(t, h.reg, outcome) == n }, waitFor, tick,
		"waiting for %v %s deliveries", n, outcome)
}

func (h *harness) items(t *testing.T, userID string) []domain.Item {
	t.Helper()
	got, err := h.repo.Items(t.Context(), userID)
	require.NoError(t, err)
	return got
}

func handled(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "mercato_events_consumer_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["consumer"] == ports.OrderConfirmedConsumer && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func item(productID string, quantity int) domain.Item {
	return domain.Item{ProductID: productID, Quantity: quantity}
}

func newProducts(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	return ids
}

func TestOrderConfirmed(t *testing.T) {
	for _, setup := range repoSetups() {
		t.Run(setup.name, func(t *testing.T) {
			t.Run("consumed twice removes once", func(t *testing.T) { testConsumedTwice(t, setup) })
			t.Run("a lost commit does not remove twice", func(t *testing.T) { testLostCommit(t, setup) })
			t.Run("only an order of the cart empties it", func(t *testing.T) { testOnlyCartOrders(t, setup) })
		})
	}
}

func testConsumedTwice(t *testing.T, setup repoSetup) {
	h := newHarness(t, setup, nil)
	buyer, other := uuid.NewString(), uuid.NewString()
	p := newProducts(2)
	for _, user := range []string{buyer, other} {
		require.NoError(t, h.repo.SetQuantity(t.Context(), user, p[0], 2))
		require.NoError(t, h.repo.SetQuantity(t.Context(), user, p[1], 1))
	}

	event := uuid.NewString()
	h.publish(t, event, buyer, orderedItem{p[0], 2})
	h.waitHandled(t, events.OutcomeOK, 1)
	require.Equal(t, []domain.Item{item(p[1], 1)}, h.items(t, buyer))
	require.Equal(t, []domain.Item{item(p[0], 2), item(p[1], 1)}, h.items(t, other), "only the buyer's cart changes")

	// The buyer puts the product back; a late duplicate must not take it out.
	require.NoError(t, h.repo.SetQuantity(t.Context(), buyer, p[0], 2))
	h.publish(t, event, buyer, orderedItem{p[0], 2})
	h.waitHandled(t, events.OutcomeDuplicate, 1)
	require.Equal(t, []domain.Item{item(p[1], 1), item(p[0], 2)}, h.items(t, buyer))
}

// testOnlyCartOrders: an order that listed its items itself ("buy now")
// was not an order of the cart, which keeps what it holds; one that
// checked out the cart takes what was bought out of it.
func testOnlyCartOrders(t *testing.T, setup repoSetup) {
	h := newHarness(t, setup, nil)
	buyer := uuid.NewString()
	p := newProducts(2)
	require.NoError(t, h.repo.SetQuantity(t.Context(), buyer, p[0], 2))
	require.NoError(t, h.repo.SetQuantity(t.Context(), buyer, p[1], 1))
	inCart := []domain.Item{item(p[0], 2), item(p[1], 1)}

	bought := []orderedItem{{p[0], 2}, {p[1], 1}}
	h.publishOrder(t, uuid.NewString(), map[string]any{"user_id": buyer, "items": bought})
	h.publishOrder(t, uuid.NewString(), map[string]any{"user_id": buyer, "items": bought, "from_cart": false})
	h.waitHandled(t, events.OutcomeOK, 2)
	require.Equal(t, inCart, h.items(t, buyer), "a buy-now order leaves the cart alone")

	h.publishOrder(t, uuid.NewString(), map[string]any{"user_id": buyer, "items": []orderedItem{{p[0], 2}}, "from_cart": true})
	h.waitHandled(t, events.OutcomeOK, 3)
	require.Equal(t, []domain.Item{item(p[1], 1)}, h.items(t, buyer), "an order of the cart takes what it bought out")
}

// testLostCommit fails the consumer's transaction after the repository
// changed the cart, as a crash or a lost connection at commit would: the
// redelivery must not take the quantities out again.
func testLostCommit(t *testing.T, setup repoSetup) {
	var calls atomic.Int32
	h := newHarness(t, setup, func(real events.Handler) events.Handler {
		return func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			calls.Add(1)
			if err := real(ctx, tx, msg); err != nil {
				return err
			}
			if msg.Attempt == 1 {
				return errors.New("connection lost at commit")
			}
			return nil
		}
	})
	buyer := uuid.NewString()
	p := newProducts(1)
	require.NoError(t, h.repo.SetQuantity(t.Context(), buyer, p[0], 5))

	h.publish(t, uuid.NewString(), buyer, orderedItem{p[0], 2})
	h.waitHandled(t, events.OutcomeOK, 1)
	require.Equal(t, int32(2), calls.Load(), "the event was redelivered")
	require.Equal(t, []domain.Item{item(p[0], 3)}, h.items(t, buyer))
}

func TestUnreadableOrderConfirmedIsDeadLettered(t *testing.T) {
	h := newHarness(t, repoSetups()[0], nil)
	h.publishRaw(t, uuid.NewString(), []byte(`{"order_id": 1`))
	h.publishRaw(t, uuid.NewString(), []byte(`{"order_id": "o-1", "items": []}`))
	h.waitHandled(t, events.OutcomeDeadLetter, 2)
	stream, err := h.js.Stream(t.Context(), events.StreamDeadLetters)
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(2), info.State.Msgs)
}

// --- Redis helpers (database 0, a unique key prefix per test).

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = client.Close() })
	require.NoError(t, client.Ping(t.Context()).Err(), "Redis must run at 127.0.0.1:6379")
	return client
}

func redisPrefix(t *testing.T) string {
	t.Helper()
	prefix := "mercato-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer client.Close()
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = client.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Logf("delete test keys: %v", err)
		}
	})
	return prefix
}
