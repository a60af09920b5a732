package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
	"github.com/mercato-dev/mercato/internal/system"
)

const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

// startNATS starts a NATS server with the given streams (and the
// dead-letter stream) and points NATS_URL at it.
func startNATS(t *testing.T, streams []events.Stream) jetstream.JetStream {
	t.Helper()
	url := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, streams))
	t.Setenv("NATS_URL", url)
	return js
}

// ordersDB makes a SQLite database with the events schema and points
// DATABASE_URL at it, as the orders service would find it.
func ordersDB(t *testing.T) (*db.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "orders.db")
	d := dbtest.Open(t, path)
	require.NoError(t, events.EnsureSchema(t.Context(), d))
	t.Setenv("DATABASE_URL", path)
	return d, path
}

func runInBackground(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func streamCount(t *testing.T, js jetstream.JetStream, name string) int {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return int(info.State.Msgs)
}

func TestEventsCommandRefusesBadInput(t *testing.T) {
	startNATS(t, system.Streams())
	ordersDB(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"events"}, "name what and what to do with it"},
		{[]string{"events", "dead-letters"}, "name what and what to do with it"},
		{[]string{"events", "dead-letters", "purge"}, `unknown command "dead-letters purge"`},
		{[]string{"events", "dead-letters", "list", "--nope"}, "dead-letters list: flag provided but not defined: -nope"},
		{[]string{"events", "dead-letters", "list", "--stream", "WAREHOUSE"}, `unknown stream "WAREHOUSE" (streams: ORDERS, PAYMENTS, PRODUCTS, USERS)`},
		{[]string{"events", "dead-letters", "list", "--limit", "-1"}, "--limit -1 is negative"},
		{[]string{"events", "dead-letters", "list", "ORDERS"}, `unexpected argument "ORDERS"`},
		{[]string{"events", "dead-letters", "replay", "--id", "seven"}, `--id "seven" is not a dead letter id`},
		{[]string{"events", "dead-letters", "replay", "--id", "99"}, "no such dead letter: 99"},
		{[]string{"events", "dead-outbox", "list"}, "--service is required"},
		{[]string{"events", "dead-outbox", "list", "--service", "warehouse"}, `unknown service "warehouse"`},
		{[]string{"events", "dead-outbox", "list", "--service", "inventory"}, "inventory publishes no events"},
		{[]string{"events", "dead-outbox", "replay", "--service", "gateway"}, "gateway publishes no events"},
		{[]string{"events", "dead-outbox", "replay", "--service", "orders", "--id", "nope"}, `no dead outbox row of event "nope"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runArgs(tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			assert.Contains(t, stderr, tt.want)
			if len(tt.args) > 2 {
				assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			}
			assert.Empty(t, stdout)
		})
	}

	code, stdout, _ := runArgs("events", "-h")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "mercato events dead-letters list")
}

// A message the handler keeps rejecting is dead-lettered, listed and,
// once the handler is fixed, replayed by the command and handled.
func TestEventsDeadLettersListAndReplay(t *testing.T) {
	js := startNATS(t, system.Streams())
	d, _ := ordersDB(t)

	var fixed atomic.Bool
	var handled atomic.Int32
	cfg := events.ConsumerConfig{
		Name:       "cart-order-confirmed",
		Subjects:   []string{"order.confirmed"},
		MaxDeliver: 2,
		Backoff:    []time.Duration{10 * time.Millisecond},
	}
	consumer, err := events.NewConsumer(d, js, slog.New(slog.DiscardHandler), cfg,
		func(context.Context, *sql.Tx, events.Message) error {
			if !fixed.Load() {
				return errors.New("no such cart")
			}
			handled.Add(1)
			return nil
		})
	require.NoError(t, err)
	runInBackground(t, consumer.Run)
	msg := nats.NewMsg("order.confirmed")
	msg.Data = []byte(`{"order_id":"o-1"}`)
	msg.Header.Set(events.HeaderEventID, "event-1")
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return streamCount(t, js, events.StreamDeadLetters) == 1 }, waitFor, tick)

	code, stdout, stderr := runArgs("events", "dead-letters", "list")
	require.Equal(t, 0, code, stderr)
	fields := strings.Fields(stdout)
	require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 1, stdout)
	require.GreaterOrEqual(t, len(fields), 7, stdout)
	id := fields[0]
	assert.Equal(t, []string{"ORDERS", "order.confirmed"}, fields[1:3])
	when, err := time.Parse(time.RFC3339, fields[3])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), when, waitFor)
	assert.Equal(t, []string{"2", "cart-order-confirmed", "no", "such", "cart"}, fields[4:])

	code, stdout, stderr = runArgs("events", "dead-letters", "list", "--json", "--stream", "ORDERS")
	require.Equal(t, 0, code, stderr)
	var dl struct {
		ID       uint64          `json:"id"`
		EventID  string          `json:"event_id"`
		Stream   string          `json:"stream"`
		Subject  string          `json:"subject"`
		Attempts int             `json:"attempts"`
		Error    string          `json:"error"`
		Payload  json.RawMessage `json:"payload"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &dl), stdout)
	assert.Equal(t, id, fmt.Sprint(dl.ID))
	assert.Equal(t, "event-1", dl.EventID)
	assert.Equal(t, "ORDERS", dl.Stream)
	assert.Equal(t, 2, dl.Attempts)
	assert.Equal(t, "no such cart", dl.Error)
	assert.JSONEq(t, `{"order_id":"o-1"}`, string(dl.Payload))

	code, stdout, _ = runArgs("events", "dead-letters", "list", "--stream", "USERS")
	require.Equal(t, 0, code)
	assert.Empty(t, stdout)

	fixed.Store(true)
	code, stdout, stderr = runArgs("events", "dead-letters", "replay", "--stream", "ORDERS", "--id", id)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "replayed dead letter "+id+" (event event-1) to order.confirmed\n", stdout)
	require.Eventually(t, func() bool { return handled.Load() == 1 }, waitFor, tick)
	assert.Zero(t, streamCount(t, js, events.StreamDeadLetters))

	code, stdout, stderr = runArgs("events", "dead-letters", "replay")
	require.Equal(t, 0, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "no dead letters to replay\n", stderr)
}

// An outbox row JetStream refuses is moved aside, listed and, once its
// stream exists, replayed by the command and published by the relay.
func TestEventsDeadOutboxListAndReplay(t *testing.T) {
	js := startNATS(t, nil) // ORDERS does not exist yet: order.* is refused
	d, path := ordersDB(t)

	missing := filepath.Join(t.TempDir(), "elsewhere", "orders.db")
	t.Setenv("DATABASE_URL", missing)
	code, _, stderr := runArgs("events", "dead-outbox", "list", "--service", "orders")
	require.Equal(t, exitFailure, code)
	assert.Contains(t, stderr, "no SQLite file at "+missing)
	_, err := os.Stat(filepath.Dir(missing))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing is created")
	t.Setenv("DATABASE_URL", path)

	o := events.NewOutbox(d)
	require.NoError(t, d.InTx(t.Context(), func(tx *sql.Tx) error {
		return o.Add(t.Context(), tx, events.Event{ID: "event-1", Subject: "order.confirmed", Payload: []byte(`{"order_id":"o-1"}`)})
	}))
	relay := events.NewRelay(o, js, slog.New(slog.DiscardHandler), events.WithPollInterval(tick),
		events.WithMaxAttempts(2), events.WithRowBackoff(10*time.Millisecond, 10*time.Millisecond))
	runInBackground(t, relay.Run)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, d.QueryRowContext(t.Context(), `SELECT count(*) FROM outbox_dead`).Scan(&n))
		return n == 1
	}, waitFor, tick)

	code, stdout, stderr := runArgs("events", "dead-outbox", "list", "--service", "orders")
	require.Equal(t, 0, code, stderr)
	fields := strings.Fields(stdout)
	require.GreaterOrEqual(t, len(fields), 5, stdout)
	assert.Equal(t, []string{"event-1", "order.confirmed"}, fields[:2])
	assert.Equal(t, "2", fields[3])
	assert.Contains(t, stdout, "no response from stream")

	code, stdout, stderr = runArgs("events", "dead-outbox", "list", "--service", "orders", "--json")
	require.Equal(t, 0, code, stderr)
	var row events.DeadOutboxRow
	require.NoError(t, json.Unmarshal([]byte(stdout), &row), stdout)
	assert.Equal(t, "event-1", row.EventID)
	assert.Equal(t, 2, row.Attempts)

	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, system.Streams()))
	code, stdout, stderr = runArgs("events", "dead-outbox", "replay", "--service", "orders", "--id", "event-1")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "returned event event-1 (order.confirmed) to the outbox of orders\n", stdout)
	require.Eventually(t, func() bool { return streamCount(t, js, "ORDERS") == 1 }, waitFor, tick)

	code, stdout, _ = runArgs("events", "dead-outbox", "list", "--service", "orders")
	require.Equal(t, 0, code)
	assert.Empty(t, stdout)
}
