package events_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

const consumerName = "test-order-effects"

// effects is the state a test handler changes: one row per successful
// handling, so handling an event twice shows as two rows.
func createEffects(t *testing.T, d *db.DB) {
	t.Helper()
	_, err := d.ExecContext(t.Context(), `CREATE TABLE effects (event_id TEXT NOT NULL, attempt INTEGER NOT NULL)`)
	require.NoError(t, err)
}

func recordEffect(ctx context.Context, tx *sql.Tx, msg events.Message) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, attempt) VALUES ($1, $2)`, msg.ID, msg.Attempt)
	return err
}

func effectCount(t *testing.T, d *db.DB, eventID string) int {
	return countRows(t, d, `SELECT count(*) FROM effects WHERE event_id = $1`, eventID)
}

func testConsumerConfig() events.ConsumerConfig {
	return events.ConsumerConfig{
		Name:       consumerName,
		Stream:     streamOrders,
		Subjects:   []string{"order.>"},
		MaxDeliver: 3,
		Backoff:    []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		AckWait:    5 * time.Second,
	}
}

// startConsumer runs a consumer until the test ends and returns its metrics.
func startConsumer(t *testing.T, d *db.DB, js jetstream.JetStream, cfg events.ConsumerConfig, h events.Handler, opts ...events.ConsumerOption) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := events.NewConsumer(d, js, testLogger(t), cfg, h, append(opts, events.WithConsumerMetrics(reg))...)
	require.NoError(t, err)
	runInBackground(t, c.Run)
	return reg
}

func handled(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	return metricValue(t, reg, "mercato_events_consumer_messages_total", "consumer", consumerName, "outcome", outcome)
}

func TestConsumerAppliesEachEventOnce(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		createEffects(t, d)
		// Two stream messages for one event, as when a relay republishes
		// after the duplicate window; and a second event.
		publishRaw(t, js, "order.confirmed", "msg-1", "event-1")
		publishRaw(t, js, "order.confirmed", "msg-2", "event-1")
		publishRaw(t, js, "order.cancelled", "msg-3", "event-2")

		reg := startConsumer(t, d, js, testConsumerConfig(), recordEffect)

		require.Eventually(t, func() bool {
			return handled(t, reg, events.OutcomeOK)+handled(t, reg, events.OutcomeDuplicate) == 3
		}, waitFor, tick)
		assert.Equal(t, 1, effectCount(t, d, "event-1"))
		assert.Equal(t, 1, effectCount(t, d, "event-2"))
		assert.Equal(t, float64(2), handled(t, reg, events.OutcomeOK))
		assert.Equal(t, float64(1), handled(t, reg, events.OutcomeDuplicate))
		require.Eventually(t, func() bool { return settled(t, js, streamOrders, consumerName) }, waitFor, tick)
	})
}

func TestConsumerDeadLettersWhatItCannotHandle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		failure     error
		wantCalls   int
		wantReason  string
		wantRetries float64
	}{
		{
			name:        "failing on every attempt",
			failure:     errors.New("stock service unavailable"),
			wantCalls:   3, // MaxDeliver
			wantReason:  "exhausted",
			wantRetries: 2,
		},
		{
			name:       "permanent failure",
			failure:    fmt.Errorf("decode order: %w", events.Permanent(errors.New("unexpected end of JSON input"))),
			wantCalls:  1,
			wantReason: "permanent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
				js := startJetStream(t)
				createEffects(t, d)
				o := events.NewOutbox(d)
				addCommitted(t, d, o, orderEvent("doomed"))
				runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick)).Run)

				var calls atomic.Int32
				reg := startConsumer(t, d, js, testConsumerConfig(), func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
					calls.Add(1)
					// The effect must be rolled back with the failure.
					if err := recordEffect(ctx, tx, msg); err != nil {
						return err
					}
					return tt.failure
				})

				require.Eventually(t, func() bool {
					return streamCount(t, js, events.StreamDeadLetters) == 1 &&
						settled(t, js, streamOrders, consumerName)
				}, waitFor, tick)
				assert.Equal(t, tt.wantCalls, int(calls.Load()), "handler calls")
				assert.Zero(t, effectCount(t, d, "doomed"))
				assert.Zero(t, countRows(t, d, `SELECT count(*) FROM processed_events`))

				dead := streamMessages(t, js, events.StreamDeadLetters)[0]
				assert.Equal(t, "dlq.order.confirmed", dead.Subject)
				assert.JSONEq(t, `{"order_id":"doomed"}`, string(dead.Data))
				assert.Equal(t, "doomed", dead.Header.Get(events.HeaderEventID))
				assert.Equal(t, consumerName, dead.Header.Get(events.HeaderDeadLetterConsumer))
				assert.Equal(t, tt.failure.Error(), dead.Header.Get(events.HeaderDeadLetterError))
				assert.Equal(t, tt.wantReason, dead.Header.Get(events.HeaderDeadLetterReason))
				assert.Equal(t, streamOrders, dead.Header.Get(events.HeaderDeadLetterStream))
				assert.Equal(t, "1", dead.Header.Get(events.HeaderDeadLetterSequence))
				assert.Equal(t, fmt.Sprint(tt.wantCalls), dead.Header.Get(events.HeaderDeadLetterAttempts))

				assert.Equal(t, float64(1), handled(t, reg, events.OutcomeDeadLetter))
				assert.Equal(t, tt.wantRetries, handled(t, reg, events.OutcomeRetry))
				assert.Equal(t, float64(1), metricValue(t, reg, "mercato_events_dead_letters_total",
					"consumer", consumerName, "reason", tt.wantReason))
			})
		})
	}
}

func TestConsumerRetriesAndAppliesOnce(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		createEffects(t, d)
		o := events.NewOutbox(d)
		addCommitted(t, d, o, orderEvent("flaky"))
		runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick)).Run)

		var panicked atomic.Bool
		reg := startConsumer(t, d, js, testConsumerConfig(), func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			if err := recordEffect(ctx, tx, msg); err != nil {
				return err
			}
			switch msg.Attempt {
			case 1:
				return errors.New("lock timeout")
			case 2:
				panicked.Store(true)
				panic("nil map")
			}
			return nil
		})

		require.Eventually(t, func() bool { return handled(t, reg, events.OutcomeOK) == 1 }, waitFor, tick)
		assert.True(t, panicked.Load())
		var attempt int
		require.NoError(t, d.QueryRowContext(t.Context(), `SELECT attempt FROM effects WHERE event_id = 'flaky'`).Scan(&attempt))
		assert.Equal(t, 3, attempt, "only the successful attempt's effect is kept")
		assert.Equal(t, 1, effectCount(t, d, "flaky"))
		assert.Equal(t, float64(2), handled(t, reg, events.OutcomeRetry))
		require.Eventually(t, func() bool { return settled(t, js, streamOrders, consumerName) }, waitFor, tick)
		assert.Zero(t, streamCount(t, js, events.StreamDeadLetters))
	})
}

func TestConsumerStopLetsTheMessageInHandFinish(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		createEffects(t, d)
		publishRaw(t, js, "order.confirmed", "msg-1", "slow")

		started, release := make(chan struct{}), make(chan struct{})
		c, err := events.NewConsumer(d, js, testLogger(t), testConsumerConfig(), func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			close(started)
			<-release
			return recordEffect(ctx, tx, msg)
		})
		require.NoError(t, err)
		stop := runInBackground(t, c.Run)
		<-started

		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) while a handler was still running", err)
		default:
		}
		close(release)
		select {
		case err := <-stopped:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Fatal("Run did not return after the handler finished")
		}
		assert.Equal(t, 1, effectCount(t, d, "slow"), "the handler's transaction committed")
		assert.True(t, settled(t, js, streamOrders, consumerName), "the message was acknowledged")
	})
}

func TestTraceContextFlowsFromAddToHandler(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

		o := events.NewOutbox(d)
		ctx, registering := tp.Tracer("test").Start(t.Context(), "register user")
		require.NoError(t, d.InTx(ctx, func(tx *sql.Tx) error {
			return o.Add(ctx, tx, events.Event{ID: "user-1", Subject: "user.registered", Payload: []byte(`{}`)})
		}))
		registering.End()
		o.Wake()
		runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick)).Run)

		handlerSpans := make(chan trace.SpanContext, 1)
		cfg := testConsumerConfig()
		cfg.Stream, cfg.Subjects = "", []string{"user.registered"}
		startConsumer(t, d, js, cfg, func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			handlerSpans <- trace.SpanContextFromContext(ctx)
			return nil
		}, events.WithTracerProvider(tp))

		var handlerSpan trace.SpanContext
		select {
		case handlerSpan = <-handlerSpans:
		case <-time.After(waitFor):
			t.Fatal("handler not called")
		}
		parent := registering.SpanContext()
		assert.Equal(t, parent.TraceID(), handlerSpan.TraceID())
		assert.NotEqual(t, parent.SpanID(), handlerSpan.SpanID(), "the handler runs in a span of its own")

		var processing sdktrace.ReadOnlySpan
		require.Eventually(t, func() bool {
			for _, s := range spans.Ended() {
				if s.SpanContext().SpanID() == handlerSpan.SpanID() {
					processing = s
					return true
				}
			}
			return false
		}, waitFor, tick)
		assert.Equal(t, "process user.registered", processing.Name())
		assert.Equal(t, trace.SpanKindConsumer, processing.SpanKind())
		assert.Equal(t, parent.SpanID(), processing.Parent().SpanID())
		assert.True(t, processing.Parent().IsRemote())
	})
}

func TestConsumerPrunesOldProcessedEvents(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		ago := func(interval string) string {
			if d.Dialect == db.Postgres {
				return `now() - interval '` + interval + `'`
			}
			return `strftime('%Y-%m-%d %H:%M:%f', 'now', '-` + interval + `')`
		}
		for _, row := range []struct{ consumer, id, processedAt string }{
			{consumerName, "ancient", ago("9 days")},
			{consumerName, "recent", ago("1 hours")},
			{"another-consumer", "ancient", ago("9 days")},
		} {
			_, err := d.ExecContext(t.Context(),
				`INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, `+row.processedAt+`)`,
				row.consumer, row.id)
			require.NoError(t, err)
		}

		startConsumer(t, d, js, testConsumerConfig(), recordEffect)
		require.Eventually(t, func() bool {
			return countRows(t, d, `SELECT count(*) FROM processed_events WHERE consumer = $1`, consumerName) == 1
		}, waitFor, tick)
		assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM processed_events WHERE event_id = 'recent'`))
		assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM processed_events WHERE consumer = 'another-consumer'`),
			"a consumer prunes only its own rows")
	})
}

// A consumer that names no stream reads the one bound to its subject; when
// no stream binds it (its owner's streams were never declared), Run fails
// at once rather than waiting for events that cannot come.
func TestConsumerWithoutAStreamForItsSubjectFailsToStart(t *testing.T) {
	t.Parallel()
	d := openSQLite(t)
	require.NoError(t, events.EnsureSchema(t.Context(), d))
	js := startJetStream(t)
	cfg := testConsumerConfig()
	cfg.Stream, cfg.Subjects = "", []string{"payment.captured"}
	c, err := events.NewConsumer(d, js, testLogger(t), cfg, recordEffect)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	err = c.Run(ctx)
	require.ErrorContains(t, err, "find stream for consumer "+consumerName)
	require.NoError(t, ctx.Err(), "Run gave up before its deadline")
}

func TestConsumersOfOneProcessShareMetrics(t *testing.T) {
	t.Parallel()
	d := openSQLite(t)
	reg := prometheus.NewRegistry()
	for _, name := range []string{"first", "second"} {
		cfg := testConsumerConfig()
		cfg.Name = name
		_, err := events.NewConsumer(d, nil, nil, cfg, recordEffect, events.WithConsumerMetrics(reg))
		require.NoError(t, err)
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	t.Parallel()
	valid := testConsumerConfig()
	require.NoError(t, valid.Validate())

	tests := []struct {
		name   string
		change func(*events.ConsumerConfig)
		want   []string
	}{
		{"no name", func(c *events.ConsumerConfig) { c.Name = "" }, []string{"name"}},
		{"dotted name", func(c *events.ConsumerConfig) { c.Name = "orders.emails" }, []string{"name"}},
		{"no subjects", func(c *events.ConsumerConfig) { c.Subjects = nil }, []string{"no subjects"}},
		{"bad wildcard", func(c *events.ConsumerConfig) { c.Subjects = []string{"order.>.x"} }, []string{`"order.>.x"`}},
		{"everything wrong at once", func(c *events.ConsumerConfig) {
			c.Name, c.MaxDeliver, c.AckWait, c.Backoff = "a b", -1, -time.Second, []time.Duration{0}
		}, []string{"name", "max deliver", "ack wait", "backoff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.change(&cfg)
			err := cfg.Validate()
			require.ErrorIs(t, err, events.ErrInvalidConfig)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			_, err = events.NewConsumer(nil, nil, nil, cfg, recordEffect)
			require.ErrorIs(t, err, events.ErrInvalidConfig)
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	cause := errors.New("malformed payload")
	err := fmt.Errorf("handle order.confirmed: %w", events.Permanent(cause))
	assert.True(t, events.IsPermanent(err))
	assert.ErrorIs(t, err, cause)
	assert.Equal(t, "handle order.confirmed: malformed payload", err.Error())
	assert.False(t, events.IsPermanent(cause))
	assert.NoError(t, events.Permanent(nil))
}

func TestDeadLetterErrorHeaderIsSafe(t *testing.T) {
	t.Parallel()
	d := openSQLite(t)
	require.NoError(t, events.EnsureSchema(t.Context(), d))
	js := startJetStream(t)
	publishRaw(t, js, "order.confirmed", "msg-1", "multi-line")

	failure := "first line\r\nsecond line " + strings.Repeat("é", 2000)
	startConsumer(t, d, js, testConsumerConfig(), func(context.Context, *sql.Tx, events.Message) error {
		return events.Permanent(errors.New(failure))
	})
	require.Eventually(t, func() bool { return streamCount(t, js, events.StreamDeadLetters) == 1 }, waitFor, tick)

	header := streamMessages(t, js, events.StreamDeadLetters)[0].Header.Get(events.HeaderDeadLetterError)
	assert.True(t, strings.HasPrefix(header, "first line  second line é"), header)
	assert.LessOrEqual(t, len(header), 1024+len("…"))
	assert.True(t, strings.HasSuffix(header, "é…"), "cut on a character boundary")
}

// Two copies of one event handled at the same moment by two replicas must
// still apply once: the processed_events row serialises them.
func TestConcurrentDeliveriesOfOneEventApplyOnce(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		createEffects(t, d)
		const copies = 6
		for i := range copies {
			publishRaw(t, js, "order.confirmed", fmt.Sprintf("msg-%d", i), "contended")
		}

		// Two runs of one durable consumer share its messages, as replicas do.
		outcomes := make([]*prometheus.Registry, 2)
		for i := range outcomes {
			outcomes[i] = startConsumer(t, d, js, testConsumerConfig(), recordEffect)
		}
		total := func(outcome string) float64 {
			return handled(t, outcomes[0], outcome) + handled(t, outcomes[1], outcome)
		}
		require.Eventually(t, func() bool {
			return total(events.OutcomeOK)+total(events.OutcomeDuplicate) == copies
		}, waitFor, tick)
		assert.Equal(t, float64(1), total(events.OutcomeOK))
		assert.Equal(t, 1, effectCount(t, d, "contended"))
	})
}
