package events_test

import (
	"database/sql"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func TestEnsureSchemaIsIdempotent(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		// Replicas of a service start at once; the migration lock makes them take turns.
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = events.EnsureSchema(t.Context(), d) })
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		require.NoError(t, events.EnsureSchema(t.Context(), d))
		require.NoError(t, events.EnsureSchema(t.Context(), d))

		o := events.NewOutbox(d)
		addCommitted(t, d, o, orderEvent("after-second-run"))
		assert.Equal(t, 1, unpublished(t, d))
		assert.Equal(t, 0, countRows(t, d, `SELECT count(*) FROM processed_events`))
	})
}

func TestOutboxPublishesOnlyCommittedEventsExactlyOnce(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		o := events.NewOutbox(d)

		errRollback := errors.New("payment declined")
		err := d.InTx(t.Context(), func(tx *sql.Tx) error {
			if err := o.Add(t.Context(), tx, orderEvent("rolled-back")); err != nil {
				return err
			}
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		committed := orderEvents("committed", 7)
		addCommitted(t, d, o, committed[:5]...)
		addCommitted(t, d, o, committed[5:]...)

		reg := prometheus.NewRegistry()
		relay := events.NewRelay(o, js, testLogger(t),
			events.WithBatchSize(3), events.WithPollInterval(tick), events.WithRelayMetrics(reg))
		runInBackground(t, relay.Run)

		require.Eventually(t, func() bool {
			return unpublished(t, d) == 0 && streamCount(t, js, streamOrders) == len(committed)
		}, waitFor, tick)
		// A row published after all the others proves the relay has gone
		// round again without publishing anything twice.
		addCommitted(t, d, o, orderEvent("last"))
		require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)

		msgs := streamMessages(t, js, streamOrders)
		want := append(slices.Clone(committed), orderEvent("last"))
		require.Len(t, msgs, len(want))
		for i, m := range msgs {
			assert.Equal(t, want[i].ID, m.Header.Get(jetstream.MsgIDHeader), "message %d", i)
			assert.Equal(t, want[i].ID, m.Header.Get(events.HeaderEventID), "message %d", i)
			assert.Equal(t, want[i].Subject, m.Subject, "message %d", i)
			assert.JSONEq(t, string(want[i].Payload), string(m.Data), "message %d", i)
		}
		assert.Equal(t, float64(len(want)), metricValue(t, reg, "mercato_events_published_total"))
		assert.Zero(t, metricValue(t, reg, "mercato_events_publish_duplicates_total"))
		assert.Zero(t, countRows(t, d, `SELECT count(*) FROM outbox WHERE event_id = 'rolled-back'`))
	})
}

func TestOutboxAddAssignsUUIDv7(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		o := events.NewOutbox(d)
		addCommitted(t, d, o, events.Event{Subject: "user.registered", Payload: []byte(`{"user_id":"u1"}`)})

		var id string
		require.NoError(t, d.QueryRowContext(t.Context(), `SELECT event_id FROM outbox`).Scan(&id))
		parsed, err := uuid.Parse(id)
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), parsed.Version())
	})
}

func TestOutboxAddRejectsDuplicateID(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		o := events.NewOutbox(d)
		addCommitted(t, d, o, orderEvent("once"))

		err := d.InTx(t.Context(), func(tx *sql.Tx) error { return o.Add(t.Context(), tx, orderEvent("once")) })
		require.ErrorIs(t, err, events.ErrDuplicateEvent)
		assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM outbox`))
	})
}

func TestOutboxAddRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	d := openSQLite(t)
	require.NoError(t, events.EnsureSchema(t.Context(), d))
	o := events.NewOutbox(d, events.PublishesTo(testStreams...))

	tests := []struct {
		name string
		ev   events.Event
	}{
		{"empty subject", events.Event{Payload: []byte(`{}`)}},
		{"wildcard subject", events.Event{Subject: "order.*", Payload: []byte(`{}`)}},
		{"empty token", events.Event{Subject: "order..confirmed", Payload: []byte(`{}`)}},
		{"space in subject", events.Event{Subject: "order confirmed", Payload: []byte(`{}`)}},
		{"dead-letter subject", events.Event{Subject: "dlq.order.confirmed", Payload: []byte(`{}`)}},
		{"subject of no stream", events.Event{Subject: "inventory.reserved", Payload: []byte(`{}`)}},
		{"domain alone", events.Event{Subject: "order", Payload: []byte(`{}`)}},
		{"payload not JSON", events.Event{Subject: "order.confirmed", Payload: []byte(`order 1`)}},
		{"empty payload", events.Event{Subject: "order.confirmed"}},
		{"newline in id", events.Event{ID: "a\nb", Subject: "order.confirmed", Payload: []byte(`{}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.InTx(t.Context(), func(tx *sql.Tx) error { return o.Add(t.Context(), tx, tt.ev) })
			require.ErrorIs(t, err, events.ErrInvalidEvent)
		})
	}
	assert.Zero(t, countRows(t, d, `SELECT count(*) FROM outbox`))
}

// PublishesTo makes Add refuse a subject none of the producing service's
// streams binds, since the relay could never publish it; without it, any
// literal subject is taken.
func TestOutboxPublishesToRefusesSubjectsOfOtherStreams(t *testing.T) {
	t.Parallel()
	d := openSQLite(t)
	require.NoError(t, events.EnsureSchema(t.Context(), d))
	add := func(o *events.Outbox, subject string) error {
		return d.InTx(t.Context(), func(tx *sql.Tx) error {
			return o.Add(t.Context(), tx, events.Event{Subject: subject, Payload: []byte(`{}`)})
		})
	}

	orders := events.NewOutbox(d, events.PublishesTo(events.Stream{Name: streamOrders, Domain: "order"}))
	require.NoError(t, add(orders, "order.confirmed"))
	for _, subject := range []string{"user.registered", "inventory.reserved", "orders.confirmed", "dlq.order.confirmed"} {
		require.ErrorIs(t, add(orders, subject), events.ErrInvalidEvent, subject)
	}
	assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM outbox`))

	anything := events.NewOutbox(d)
	for _, subject := range []string{"user.registered", "inventory.reserved"} {
		require.NoError(t, add(anything, subject), subject)
	}
	assert.Equal(t, 3, countRows(t, d, `SELECT count(*) FROM outbox`))
}
