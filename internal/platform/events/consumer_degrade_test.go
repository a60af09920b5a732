package events_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func retriesFor(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return metricValue(t, reg, "mercato_events_consumer_retries_total", "consumer", consumerName, "reason", reason)
}

// outage makes a consumer's database unavailable and available again.
type outage struct {
	begin, end func()
	// handlerBegins says the outage begins inside the first handler call
	// (its own statement then fails), rather than before the message.
	handlerBegins bool
}

// The consumer's database unavailable for many more deliveries than
// MaxDeliver allows: nothing is counted or dead-lettered, and the event is
// handled once the database is back.
func TestConsumerOutlastsADatabaseOutage(t *testing.T) {
	t.Parallel()
	engines := []struct {
		name string
		open func(t *testing.T) (*db.DB, outage)
	}{
		{
			name: "sqlite locked by another process",
			open: func(t *testing.T) (*db.DB, outage) {
				path := dbtest.SQLiteURL(t)
				other := dbtest.Open(t, path)
				// As db.Open opens it, but giving up on a lock after 20ms
				// rather than 10s.
				sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(20)&_pragma=journal_mode(WAL)&_txlock=immediate")
				require.NoError(t, err)
				t.Cleanup(func() { _ = sqldb.Close() })
				d := &db.DB{DB: sqldb, Dialect: db.SQLite}
				var lock *sql.Tx
				return d, outage{
					begin: func() {
						var err error
						// An immediate transaction: it holds the write lock.
						lock, err = other.BeginTx(t.Context(), nil)
						require.NoError(t, err)
						_, err = lock.ExecContext(t.Context(), `DELETE FROM processed_events WHERE consumer = 'nobody'`)
						require.NoError(t, err)
					},
					end: func() { require.NoError(t, lock.Rollback()) },
				}
			},
		},
		{
			name: "postgres unreachable",
			open: func(t *testing.T) (*db.DB, outage) {
				d, proxy := openPostgresBehindProxy(t)
				return d, outage{begin: proxy.cut, end: proxy.restore, handlerBegins: true}
			},
		},
	}
	for _, engine := range engines {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			d, out := engine.open(t)
			require.NoError(t, events.EnsureSchema(t.Context(), d))
			createEffects(t, d)
			js := startJetStream(t)

			if !out.handlerBegins {
				out.begin()
			}
			var calls atomic.Int32
			cfg := testConsumerConfig()
			reg := startConsumer(t, d, js, cfg, func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
				if calls.Add(1) == 1 && out.handlerBegins {
					out.begin()
				}
				// Unmarked: the driver's error tells it is the database.
				return recordEffect(ctx, tx, msg)
			})
			publishRaw(t, js, "order.confirmed", "msg-1", "outlasting")

			// Well over MaxDeliver deliveries fail.
			require.Eventually(t, func() bool {
				return retriesFor(t, reg, "infrastructure") >= float64(3*cfg.MaxDeliver)
			}, waitFor, tick)
			assert.Zero(t, streamCount(t, js, events.StreamDeadLetters))
			assert.Zero(t, handled(t, reg, events.OutcomeOK))
			out.end()

			require.Eventually(t, func() bool { return handled(t, reg, events.OutcomeOK) == 1 }, waitFor, tick)
			var attempt int
			require.NoError(t, d.QueryRowContext(t.Context(), `SELECT attempt FROM effects WHERE event_id = 'outlasting'`).Scan(&attempt))
			assert.Greater(t, attempt, 3*cfg.MaxDeliver, "handled on a delivery past MaxDeliver")
			assert.Equal(t, 1, effectCount(t, d, "outlasting"))
			assert.Zero(t, retriesFor(t, reg, "rejected"))
			assert.Zero(t, handled(t, reg, events.OutcomeDeadLetter))
			assert.Zero(t, streamCount(t, js, events.StreamDeadLetters))
			assert.Zero(t, countRows(t, d, `SELECT count(*) FROM consumer_rejections`))
			require.Eventually(t, func() bool { return settled(t, js, streamOrders, consumerName) }, waitFor, tick)
		})
	}
}

// Only rejections count toward MaxDeliver, however they alternate with
// infrastructure failures: marked, a deadline passing, or a database the
// handler reads being unreachable.
func TestConsumerCountsOnlyRejections(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		publishRaw(t, js, "order.confirmed", "msg-1", "alternating")
		replica, proxy := openPostgresBehindProxy(t)
		proxy.cut()

		errRejected := errors.New("order references an unknown product")
		cfg := testConsumerConfig()
		var calls atomic.Int32
		reg := startConsumer(t, d, js, cfg, func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			calls.Add(1)
			switch msg.Attempt % 4 {
			case 1:
				return events.Infrastructure(errors.New("inventory: connection refused"))
			case 2:
				// A statement that outlives its own deadline.
				ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
				<-ctx.Done()
				_, err := tx.ExecContext(ctx, `SELECT 1`)
				return fmt.Errorf("look up the product: %w", err)
			case 3:
				_, err := replica.ExecContext(ctx, `SELECT 1`)
				return fmt.Errorf("read the catalog replica: %w", err)
			default:
				return errRejected
			}
		})

		require.Eventually(t, func() bool { return streamCount(t, js, events.StreamDeadLetters) == 1 }, waitFor, tick)
		assert.Equal(t, int32(4*cfg.MaxDeliver), calls.Load(), "dead-lettered at the third rejection, the twelfth delivery")
		dead := streamMessages(t, js, events.StreamDeadLetters)[0]
		assert.Equal(t, "3", dead.Header.Get(events.HeaderDeadLetterAttempts))
		assert.Equal(t, "exhausted", dead.Header.Get(events.HeaderDeadLetterReason))
		assert.Equal(t, errRejected.Error(), dead.Header.Get(events.HeaderDeadLetterError))
		require.Eventually(t, func() bool {
			return retriesFor(t, reg, "infrastructure") == float64(3*cfg.MaxDeliver) &&
				retriesFor(t, reg, "rejected") == float64(cfg.MaxDeliver-1)
		}, waitFor, tick, "retries by reason")
		require.Eventually(t, func() bool {
			return countRows(t, d, `SELECT count(*) FROM consumer_rejections`) == 0
		}, waitFor, tick, "the count goes with the dead letter")
		require.Eventually(t, func() bool { return settled(t, js, streamOrders, consumerName) }, waitFor, tick)
	})
}

// Rejections are counted in the database, so a restarted consumer goes on
// from the count the previous one left.
func TestConsumerRejectionsSurviveARestart(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		publishRaw(t, js, "order.confirmed", "msg-1", "stubborn")
		cfg := testConsumerConfig()

		paused := make(chan struct{})
		var pausing atomic.Bool
		first, err := events.NewConsumer(d, js, testLogger(t), cfg, func(context.Context, *sql.Tx, events.Message) error {
			var count int
			if err := d.QueryRowContext(t.Context(), `SELECT COALESCE(max(rejections), 0) FROM consumer_rejections`).Scan(&count); err != nil {
				return events.Infrastructure(err)
			}
			if count < cfg.MaxDeliver-1 {
				return errors.New("rejected by the first run")
			}
			if pausing.CompareAndSwap(false, true) {
				close(paused)
			}
			return events.Infrastructure(errors.New("stopping"))
		})
		require.NoError(t, err)
		stop := runInBackground(t, first.Run)
		select {
		case <-paused:
		case <-time.After(waitFor):
			t.Fatal("the first run never rejected the event twice")
		}
		require.NoError(t, stop())
		require.Equal(t, cfg.MaxDeliver-1, countRows(t, d, `SELECT max(rejections) FROM consumer_rejections`))

		var calls atomic.Int32
		startConsumer(t, d, js, cfg, func(context.Context, *sql.Tx, events.Message) error {
			calls.Add(1)
			return errors.New("rejected by the second run")
		})
		require.Eventually(t, func() bool { return streamCount(t, js, events.StreamDeadLetters) == 1 }, waitFor, tick)
		assert.Equal(t, int32(1), calls.Load(), "one more rejection reached MaxDeliver")
		assert.Equal(t, "3", streamMessages(t, js, events.StreamDeadLetters)[0].Header.Get(events.HeaderDeadLetterAttempts))
	})
}

// A dead letter replayed reaches the consumer that gave up, which handles
// it from a fresh count, while another consumer of the subject, which
// handled the original, skips it by its event id.
func TestReplayedDeadLetterIsHandledOnceByEveryConsumer(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		createEffects(t, d)
		o := events.NewOutbox(d)
		addCommitted(t, d, o, orderEvent("picky-1"))
		runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick)).Run)

		var accept atomic.Bool
		picky := startConsumer(t, d, js, testConsumerConfig(), func(ctx context.Context, tx *sql.Tx, msg events.Message) error {
			if !accept.Load() {
				return errors.New("unknown product")
			}
			return recordEffect(ctx, tx, msg)
		})
		otherCfg := testConsumerConfig()
		otherCfg.Name = "test-order-audit"
		other := startConsumer(t, d, js, otherCfg, func(context.Context, *sql.Tx, events.Message) error { return nil })
		otherHandled := func(outcome string) float64 {
			return metricValue(t, other, "mercato_events_consumer_messages_total", "consumer", otherCfg.Name, "outcome", outcome)
		}

		require.Eventually(t, func() bool {
			return streamCount(t, js, events.StreamDeadLetters) == 1 && otherHandled(events.OutcomeOK) == 1
		}, waitFor, tick)
		list, err := events.ListDeadLetters(t.Context(), js, events.DeadLetterFilter{})
		require.NoError(t, err)
		require.Len(t, list, 1)
		dl := list[0]
		assert.Equal(t, "picky-1", dl.EventID)
		assert.Equal(t, streamOrders, dl.Stream)
		assert.Equal(t, uint64(1), dl.Sequence)
		assert.Equal(t, "order.confirmed", dl.Subject)
		assert.Equal(t, consumerName, dl.Consumer)
		assert.Equal(t, "exhausted", dl.Reason)
		assert.Equal(t, "unknown product", dl.Error)
		assert.Equal(t, 3, dl.Attempts)
		assert.WithinDuration(t, time.Now(), dl.Time, waitFor)
		assert.JSONEq(t, `{"order_id":"picky-1"}`, string(dl.Payload))

		for _, f := range []events.DeadLetterFilter{{Stream: streamUsers}, {Limit: 1, Stream: streamUsers}} {
			none, err := events.ListDeadLetters(t.Context(), js, f)
			require.NoError(t, err)
			assert.Empty(t, none)
		}
		for _, f := range []events.DeadLetterFilter{{ID: dl.ID + 1}, {ID: dl.ID, Stream: streamUsers}} {
			_, err := events.ReplayDeadLetters(t.Context(), js, f)
			require.ErrorIs(t, err, events.ErrNoSuchDeadLetter)
		}
		assert.Equal(t, 1, streamCount(t, js, streamOrders), "nothing replayed by a filter that matches nothing")

		accept.Store(true)
		replayed, err := events.ReplayDeadLetters(t.Context(), js, events.DeadLetterFilter{ID: dl.ID})
		require.NoError(t, err)
		require.Len(t, replayed, 1)
		assert.Zero(t, streamCount(t, js, events.StreamDeadLetters), "the replayed dead letter is deleted")

		require.Eventually(t, func() bool {
			return handled(t, picky, events.OutcomeOK) == 1 && otherHandled(events.OutcomeDuplicate) == 1
		}, waitFor, tick)
		assert.Equal(t, 1, effectCount(t, d, "picky-1"))
		assert.Equal(t, float64(1), otherHandled(events.OutcomeOK), "the other consumer applied it once")
		assert.Equal(t, "picky-1", streamMessages(t, js, streamOrders)[1].Header.Get(events.HeaderEventID))

		again, err := events.ReplayDeadLetters(t.Context(), js, events.DeadLetterFilter{})
		require.NoError(t, err)
		assert.Empty(t, again)
	})
}
