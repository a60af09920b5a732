package ports_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/notifications"
	"github.com/mercato-dev/mercato/internal/notifications/adapters"
	"github.com/mercato-dev/mercato/internal/notifications/app"
	"github.com/mercato-dev/mercato/internal/notifications/domain"
	"github.com/mercato-dev/mercato/internal/notifications/ports"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
)

const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

var testRetry = ports.Retry{MaxDeliver: 3, Backoff: []time.Duration{20 * time.Millisecond}}

// streamUsers is the stream identity publishes user.registered to.
const streamUsers = "USERS"

// consumedStreams are the streams the consumers read, as identity and
// orders declare them.
var consumedStreams = []events.Stream{
	{Name: streamUsers, Domain: "user", Description: "identity events"},
	{Name: "ORDERS", Domain: "order", Description: "orders events"},
}

// countingSink counts Send calls and keeps what it delivered; fail, when
// set, may refuse a call (by its 1-based number).
type countingSink struct {
	calls     atomic.Int32
	mu        sync.Mutex
	delivered []domain.Notification
	fail      func(call int32) error
}

func (s *countingSink) Send(_ context.Context, n domain.Notification) error {
	call := s.calls.Add(1)
	if s.fail != nil {
		if err := s.fail(call); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered = append(s.delivered, n)
	return nil
}

func (s *countingSink) sent() []domain.Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]domain.Notification(nil), s.delivered...)
}

// consumers are notifications' event consumers over one database and
// JetStream, as the service runs them but with quick retries.
type consumers struct {
	reg  *prometheus.Registry
	stop func()
}

func startConsumers(t *testing.T, d *db.DB, js jetstream.JetStream, sink app.Sink) *consumers {
	t.Helper()
	handler := ports.EventHandler(app.New(adapters.NewNotificationSQLRepository(d), sink, []byte("ports-test-page-token-key-01234")))
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var running sync.WaitGroup
	for _, cfg := range ports.ConsumerConfigs(testRetry) {
		cfg.AckWait = 5 * time.Second
		c, err := events.NewConsumer(d, js, slog.New(slog.DiscardHandler), cfg, handler, events.WithConsumerMetrics(reg))
		require.NoError(t, err)
		running.Go(func() {
			if err := c.Run(ctx); err != nil {
				t.Errorf("consumer %s: %v", cfg.Name, err)
			}
		})
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); running.Wait() }) }
	t.Cleanup(stop)
	return &consumers{reg: reg, stop: stop}
}

// handled sums the deliveries with outcome over both consumers.
func (c *consumers) handled(t *testing.T, outcome string) float64 {
	t.Helper()
	families, err := c.reg.Gather()
	require.NoError(t, err)
	var total float64
	for _, f := range families {
		if f.GetName() != "mercato_events_consumer_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func (c *consumers) waitHandled(t *testing.T, outcome string, n float64) {
	t.Helper()
	require.Eventually(t, func() bool { return c.handled(t, outcome) == n }, waitFor, tick,
		"waiting for %v %s deliveries", n, outcome)
}

func setup(t *testing.T, url string) (*db.DB, jetstream.JetStream) {
	t.Helper()
	d := dbtest.Open(t, url)
	require.NoError(t, notifications.MigrateDB(t.Context(), d))
	_, js := natstest.Connect(t, natstest.Start(t))
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, consumedStreams))
	return d, js
}

// publish sends one delivery of an event; each call is a separate stream
// message, as when a producer republishes after the duplicate window.
func publish(t *testing.T, js jetstream.JetStream, subject, eventID string, payload any) {
	t.Helper()
	raw, err := json.Marshal(payload)
	require.NoError(t, err)
	msg := nats.NewMsg(subject)
	msg.Data = raw
	msg.Header.Set(events.HeaderEventID, eventID)
	_, err = js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(rand.Text()))
	require.NoError(t, err)
}

func notificationRows(t *testing.T, d *db.DB, eventID string) int {
	t.Helper()
	var n int
	require.NoError(t, d.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM notifications WHERE event_id = $1`, eventID).Scan(&n))
	return n
}

func confirmed(userID string) map[string]any {
	return map[string]any{
		"order_id": uuid.NewString(), "user_id": userID, "email": "ada@example.com",
		"total_cents": 1250, "currency": "USD",
		"items": []map[string]any{{"product_id": uuid.NewString(), "name": "Kettle", "quantity": 1, "unit_price_cents": 1250}},
	}
}

func TestEventDeliveredTwiceNotifiesOnce(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d, js := setup(t, engine.URL)
			sink := &countingSink{}
			c := startConsumers(t, d, js, sink)
			user, welcome, order := uuid.NewString(), uuid.NewString(), uuid.NewString()
			registered := map[string]any{"user_id": user, "email": "ada@example.com", "name": "Ada"}

			publish(t, js, domain.SubjectUserRegistered, welcome, registered)
			publish(t, js, domain.SubjectUserRegistered, welcome, registered)
			publish(t, js, domain.SubjectOrderConfirmed, order, confirmed(user))
			publish(t, js, domain.SubjectOrderConfirmed, order, confirmed(user))
			c.waitHandled(t, events.OutcomeOK, 2)
			c.waitHandled(t, events.OutcomeDuplicate, 2)

			require.Equal(t, 1, notificationRows(t, d, welcome))
			require.Equal(t, 1, notificationRows(t, d, order))
			require.Equal(t, int32(2), sink.calls.Load(), "a redelivery after the commit sends nothing")
		})
	}
}

func TestSinkFailingOnceDeliversOnce(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d, js := setup(t, engine.URL)
			sink := &countingSink{fail: func(call int32) error {
				if call == 1 {
					return errors.New("smtp: 421 try again later")
				}
				return nil
			}}
			c := startConsumers(t, d, js, sink)
			event := uuid.NewString()
			publish(t, js, domain.SubjectOrderConfirmed, event, confirmed(uuid.NewString()))
			c.waitHandled(t, events.OutcomeOK, 1)

			require.Equal(t, float64(1), c.handled(t, events.OutcomeRetry))
			require.Len(t, sink.sent(), 1)
			require.Equal(t, event, sink.sent()[0].EventID)
			require.Equal(t, 1, notificationRows(t, d, event))
		})
	}
}

func TestSinkAlwaysFailingDeadLetters(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d, js := setup(t, engine.URL)
			sink := &countingSink{fail: func(int32) error { return errors.New("smtp: 550 mailbox unavailable") }}
			c := startConsumers(t, d, js, sink)
			event := uuid.NewString()
			publish(t, js, domain.SubjectOrderConfirmed, event, confirmed(uuid.NewString()))
			c.waitHandled(t, events.OutcomeDeadLetter, 1)

			require.Equal(t, int32(testRetry.MaxDeliver), sink.calls.Load())
			require.Zero(t, notificationRows(t, d, event), "no notification is recorded for an event never delivered")
			dead := deadLetters(t, js)
			require.Len(t, dead, 1)
			require.Equal(t, "dlq."+domain.SubjectOrderConfirmed, dead[0].Subject)
			require.Equal(t, event, dead[0].Header.Get(events.HeaderEventID))
			require.Equal(t, ports.OrderEventsConsumer, dead[0].Header.Get(events.HeaderDeadLetterConsumer))
			require.Contains(t, dead[0].Header.Get(events.HeaderDeadLetterError), "mailbox unavailable")
		})
	}
}

func TestUnreadableEventIsDeadLetteredAtOnce(t *testing.T) {
	d, js := setup(t, dbtest.SQLiteURL(t))
	sink := &countingSink{}
	c := startConsumers(t, d, js, sink)
	publish(t, js, domain.SubjectUserRegistered, uuid.NewString(), map[string]any{"email": "who@example.com"})
	c.waitHandled(t, events.OutcomeDeadLetter, 1)
	require.Zero(t, c.handled(t, events.OutcomeRetry))
	require.Zero(t, sink.calls.Load())
	require.Equal(t, streamUsers, deadLetters(t, js)[0].Header.Get(events.HeaderDeadLetterStream))
}

// crashAfterSend delivers through the real sink, then — once — kills the
// process before the transaction can commit: the handler fails and the
// consumers stop, as a crash between send and commit would leave things.
type crashAfterSend struct {
	sink    app.Sink
	crashed atomic.Bool
	kill    func()
}

func (s *crashAfterSend) Send(ctx context.Context, n domain.Notification) error {
	if err := s.sink.Send(ctx, n); err != nil {
		return err
	}
	if s.crashed.CompareAndSwap(false, true) {
		go s.kill()
		return errors.New("process killed before commit")
	}
	return nil
}

func TestCrashBetweenSendAndCommitDeliversOnce(t *testing.T) {
	for _, engine := range dbtest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) {
			d, js := setup(t, engine.URL)
			path := filepath.Join(t.TempDir(), "notifications.jsonl")

			fileSink, err := adapters.OpenFileSink(path)
			require.NoError(t, err)
			crashing := &crashAfterSend{sink: fileSink}
			killed := make(chan struct{})
			var first *consumers
			crashing.kill = func() { first.stop(); close(killed) }
			first = startConsumers(t, d, js, crashing)

			event := uuid.NewString()
			publish(t, js, domain.SubjectOrderConfirmed, event, confirmed(uuid.NewString()))
			select {
			case <-killed:
			case <-time.After(waitFor):
				t.Fatal("the consumer never reached the sink")
			}
			require.NoError(t, fileSink.Close())
			require.Equal(t, []string{event}, fileEventIDs(t, path), "sent before the crash")
			require.Zero(t, notificationRows(t, d, event), "but never committed")

			// The restarted process opens the file again and gets the event again.
			restarted, err := adapters.OpenFileSink(path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = restarted.Close() })
			second := startConsumers(t, d, js, restarted)
			second.waitHandled(t, events.OutcomeOK, 1)

			require.Equal(t, 1, notificationRows(t, d, event))
			require.Equal(t, []string{event}, fileEventIDs(t, path), "delivered exactly once")
		})
	}
}

func fileEventIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			EventID string `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		ids = append(ids, line.EventID)
	}
	require.NoError(t, sc.Err())
	return ids
}

func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	stream, err := js.Stream(t.Context(), events.StreamDeadLetters)
	require.NoError(t, err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := stream.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		out = append(out, msg)
	}
	return out
}
