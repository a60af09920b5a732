package events_test

import (
	"context"
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

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
)

func TestRelayRestartPublishesEveryEventExactlyOnce(t *testing.T) {
	t.Parallel()
	errCrash := errors.New("simulated crash")
	// Each first run relays part of 10 events and stops; the restarted relay
	// must then get every event into the stream exactly once.
	tests := []struct {
		name string
		// firstRun returns how many events it stored in the stream and how
		// many it marked published.
		firstRun func(t *testing.T, d *db.DB, o *events.Outbox, js jetstream.JetStream) (stored, marked int)
		// wantDuplicates is how many of the restarted relay's publishes
		// JetStream must drop.
		wantDuplicates int
	}{
		{
			name: "crash between publish and mark",
			firstRun: func(t *testing.T, d *db.DB, o *events.Outbox, js jetstream.JetStream) (int, int) {
				ctx, crash := context.WithCancel(t.Context())
				relay := events.NewRelay(o, js, testLogger(t), events.WithBatchSize(4), events.WithPollInterval(tick),
					events.WithAfterPublishHook(func() error {
						crash()
						return errCrash
					}))
				require.NoError(t, runUntilItStops(t, ctx, crash, relay.Run))
				return 4, 0
			},
			wantDuplicates: 4,
		},
		{
			name: "graceful stop while a batch is in flight",
			firstRun: func(t *testing.T, d *db.DB, o *events.Outbox, js jetstream.JetStream) (int, int) {
				ctx, stop := context.WithCancel(t.Context())
				batches := 0
				relay := events.NewRelay(o, js, testLogger(t), events.WithBatchSize(2), events.WithPollInterval(tick),
					events.WithAfterPublishHook(func() error {
						if batches++; batches == 2 {
							stop()
						}
						return nil
					}))
				require.NoError(t, runUntilItStops(t, ctx, stop, relay.Run))
				return 4, 4
			},
		},
		{
			name: "published marks lost after everything was published",
			firstRun: func(t *testing.T, d *db.DB, o *events.Outbox, js jetstream.JetStream) (int, int) {
				relay := events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick))
				stop := runInBackground(t, relay.Run)
				require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)
				require.NoError(t, stop())
				_, err := d.ExecContext(t.Context(), `UPDATE outbox SET published_at = NULL`)
				require.NoError(t, err)
				return 10, 0
			},
			wantDuplicates: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
				js := startJetStream(t)
				o := events.NewOutbox(d)
				evs := orderEvents("ev", 10)
				addCommitted(t, d, o, evs...)

				stored, marked := tt.firstRun(t, d, o, js)
				require.Equal(t, stored, streamCount(t, js, streamOrders), "stored by the first run")
				require.Equal(t, len(evs)-marked, unpublished(t, d), "left unpublished by the first run")

				reg := prometheus.NewRegistry()
				relay := events.NewRelay(o, js, testLogger(t), events.WithBatchSize(3),
					events.WithPollInterval(tick), events.WithRelayMetrics(reg))
				runInBackground(t, relay.Run)
				require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)

				msgs := streamMessages(t, js, streamOrders)
				counts := eventIDCounts(msgs)
				for _, ev := range evs {
					assert.Equal(t, 1, counts[ev.ID], "copies of %s in the stream", ev.ID)
				}
				assert.Len(t, msgs, len(evs))
				assert.Equal(t, float64(tt.wantDuplicates), metricValue(t, reg, "mercato_events_publish_duplicates_total"))
			})
		})
	}
}

func TestTwoRelaysOnOneDatabasePublishEachEventOnce(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		o := events.NewOutbox(d)
		regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
		for _, reg := range regs {
			relay := events.NewRelay(o, js, testLogger(t), events.WithBatchSize(5),
				events.WithPollInterval(tick), events.WithRelayMetrics(reg))
			runInBackground(t, relay.Run)
		}
		evs := orderEvents("ev", 60)
		for i := 0; i < len(evs); i += 6 {
			addCommitted(t, d, o, evs[i:i+6]...)
		}
		require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)

		msgs := streamMessages(t, js, streamOrders)
		require.Len(t, msgs, len(evs))
		for i, m := range msgs {
			assert.Equal(t, 1, eventIDCounts(msgs)[evs[i].ID])
			if d.Dialect == db.Postgres {
				// Row locks make the relays take turns, so order holds.
				assert.Equal(t, evs[i].ID, m.Header.Get(jetstream.MsgIDHeader), "message %d", i)
			}
		}
		published := metricValue(t, regs[0], "mercato_events_published_total") +
			metricValue(t, regs[1], "mercato_events_published_total")
		duplicates := metricValue(t, regs[0], "mercato_events_publish_duplicates_total") +
			metricValue(t, regs[1], "mercato_events_publish_duplicates_total")
		if d.Dialect == db.Postgres {
			assert.Equal(t, float64(len(evs)), published, "rows marked")
			assert.Zero(t, duplicates, "rows published twice")
		} else {
			// Without row locks both relays may publish a row; the stream
			// keeps one copy.
			assert.GreaterOrEqual(t, published, float64(len(evs)))
		}
	})
}

// While NATS is down the relay fails as a whole and backs off; no row is
// blamed for it, so none uses up its attempts however long the outage lasts.
func TestRelayReportsLagAndLosesNothingWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		srv, js := startJetStreamServer(t)
		srv.Stop()
		o := events.NewOutbox(d)
		evs := orderEvents("ev", 5)
		addCommitted(t, d, o, evs...)

		reg := prometheus.NewRegistry()
		relay := events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick),
			events.WithPublishTimeout(100*time.Millisecond), events.WithMaxAttempts(2), events.WithRelayMetrics(reg))
		runInBackground(t, relay.Run)

		// More failed tries than a row's attempts allow.
		require.Eventually(t, func() bool {
			return metricValue(t, reg, "mercato_events_publish_errors_total") >= 3 &&
				metricValue(t, reg, "mercato_events_outbox_pending") == float64(len(evs)) &&
				metricValue(t, reg, "mercato_events_outbox_oldest_pending_age_seconds") > 0
		}, waitFor, tick)
		assert.Less(t, metricValue(t, reg, "mercato_events_outbox_oldest_pending_age_seconds"), waitFor.Seconds())
		require.Equal(t, len(evs), unpublished(t, d), "nothing is dropped while failing")
		assert.Zero(t, countRows(t, d, `SELECT count(*) FROM outbox WHERE attempts > 0`), "no row is blamed for the outage")
		assert.Zero(t, metricValue(t, reg, "mercato_events_outbox_refused_total"))

		srv.Restart()
		require.Eventually(t, func() bool {
			return unpublished(t, d) == 0 && metricValue(t, reg, "mercato_events_outbox_pending") == 0
		}, waitFor, tick)
		// Order is best effort across a failure, so only completeness counts.
		msgs := streamMessages(t, js, streamOrders)
		counts := eventIDCounts(msgs)
		for _, ev := range evs {
			assert.Equal(t, 1, counts[ev.ID], "copies of %s in the stream", ev.ID)
		}
		assert.Len(t, msgs, len(evs))
		assert.Zero(t, metricValue(t, reg, "mercato_events_outbox_oldest_pending_age_seconds"))
		assert.Zero(t, countRows(t, d, `SELECT count(*) FROM outbox_dead`))
	})
}

// A row JetStream refuses (no stream binds its subject; larger than NATS
// takes) waits on its own backoff while the rows behind it flow, in order,
// and is moved aside after its attempts; replayed once its stream exists,
// it is published.
func TestRelayMovesAsideARowJetStreamRefuses(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		o := events.NewOutbox(d)
		poison := events.Event{ID: "poison", Subject: "inventory.reserved", Payload: []byte(`{"sku":"kettle"}`)}
		// Over the server's 1 MB max_payload.
		huge := events.Event{ID: "huge", Subject: "order.confirmed", Payload: fmt.Appendf(nil, `{"note":%q}`, strings.Repeat("x", 2<<20))}
		before, after := orderEvents("before", 2), orderEvents("after", 5)
		addCommitted(t, d, o, before...)
		addCommitted(t, d, o, poison, huge)
		addCommitted(t, d, o, after...)

		const maxAttempts = 4
		reg := prometheus.NewRegistry()
		relay := events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick), events.WithBatchSize(3),
			events.WithMaxAttempts(maxAttempts), events.WithRowBackoff(20*time.Millisecond, 40*time.Millisecond),
			events.WithRelayMetrics(reg))
		runInBackground(t, relay.Run)

		require.Eventually(t, func() bool {
			return streamCount(t, js, streamOrders) == len(before)+len(after)
		}, waitFor, tick, "the rows behind the refused one are published")
		require.Eventually(t, func() bool {
			return countRows(t, d, `SELECT count(*) FROM outbox_dead`) == 2
		}, waitFor, tick, "the refused rows are moved aside")
		assert.Zero(t, unpublished(t, d))
		assert.Zero(t, countRows(t, d, `SELECT count(*) FROM outbox WHERE event_id IN ('poison', 'huge')`))

		msgs := streamMessages(t, js, streamOrders)
		for i, ev := range append(before, after...) {
			assert.Equal(t, ev.ID, msgs[i].Header.Get(events.HeaderEventID), "rows that flow keep their order: message %d", i)
		}
		// The counters follow the commit.
		require.Eventually(t, func() bool {
			return metricValue(t, reg, "mercato_events_outbox_moved_aside_total") == 2
		}, waitFor, tick)
		assert.Equal(t, float64(2*maxAttempts), metricValue(t, reg, "mercato_events_outbox_refused_total"))
		assert.Zero(t, metricValue(t, reg, "mercato_events_publish_errors_total"), "the relay as a whole never failed")
		require.Eventually(t, func() bool { return metricValue(t, reg, "mercato_events_outbox_dead") == 2 }, waitFor, tick)

		dead, err := events.ListDeadOutbox(t.Context(), d, events.DeadOutboxFilter{})
		require.NoError(t, err)
		require.Len(t, dead, 2)
		assert.Equal(t, "huge", dead[1].EventID)
		assert.Contains(t, dead[1].Error, "maximum payload exceeded")
		limited, err := events.ListDeadOutbox(t.Context(), d, events.DeadOutboxFilter{Limit: 1})
		require.NoError(t, err)
		assert.Len(t, limited, 1)
		assert.Equal(t, "poison", dead[0].EventID)
		assert.Equal(t, "inventory.reserved", dead[0].Subject)
		assert.JSONEq(t, `{"sku":"kettle"}`, string(dead[0].Payload))
		assert.Equal(t, maxAttempts, dead[0].Attempts)
		assert.Contains(t, dead[0].Error, "no response from stream")
		assert.WithinDuration(t, time.Now(), dead[0].DeadAt, waitFor)
		assert.False(t, dead[0].DeadAt.Before(dead[0].CreatedAt))

		_, err = events.ReplayDeadOutbox(t.Context(), d, events.DeadOutboxFilter{EventID: "missing"})
		require.ErrorIs(t, err, events.ErrNoSuchDeadLetter)

		// The cause fixed, the replayed row goes out.
		inventory := events.Stream{Name: "INVENTORY", Domain: "inventory"}
		require.NoError(t, events.EnsureStreams(t.Context(), js, 1, append(testStreams, inventory)))
		replayed, err := events.ReplayDeadOutbox(t.Context(), d, events.DeadOutboxFilter{EventID: "poison"})
		require.NoError(t, err)
		require.Len(t, replayed, 1)
		assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM outbox_dead`), "only the row asked for is replayed")
		require.Eventually(t, func() bool { return streamCount(t, js, inventory.Name) == 1 }, waitFor, tick)
		published := streamMessages(t, js, inventory.Name)[0]
		assert.Equal(t, "poison", published.Header.Get(events.HeaderEventID))
		assert.JSONEq(t, `{"sku":"kettle"}`, string(published.Data))
		require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)
		require.Eventually(t, func() bool { return metricValue(t, reg, "mercato_events_outbox_dead") == 1 }, waitFor, tick)
	})
}

func TestRelayPrunesRowsPublishedBeforeRetention(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		o := events.NewOutbox(d)
		addCommitted(t, d, o, orderEvent("old"), orderEvent("recent"))
		stop := runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick)).Run)
		require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)
		require.NoError(t, stop())

		twoDaysAgo := `strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 days')`
		if d.Dialect == db.Postgres {
			twoDaysAgo = `now() - interval '2 days'`
		}
		_, err := d.ExecContext(t.Context(), `UPDATE outbox SET published_at = `+twoDaysAgo+` WHERE event_id = 'old'`)
		require.NoError(t, err)

		runInBackground(t, events.NewRelay(o, js, testLogger(t), events.WithPollInterval(tick), events.WithRetention(events.DuplicateWindow*720)).Run)
		require.Eventually(t, func() bool {
			return countRows(t, d, `SELECT count(*) FROM outbox WHERE event_id = 'old'`) == 0
		}, waitFor, tick)
		assert.Equal(t, 1, countRows(t, d, `SELECT count(*) FROM outbox WHERE event_id = 'recent'`))
	})
}

// runUntilItStops runs run, which is expected to bring about the
// cancellation of ctx itself, and fails the test if it has not returned
// within waitFor.
func runUntilItStops(t *testing.T, ctx context.Context, cancel context.CancelFunc, run func(context.Context) error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitFor):
		cancel()
		if err := <-errc; err != nil {
			t.Logf("run after cancel: %v", err)
		}
		t.Fatal("the run did not stop by itself")
		return nil
	}
}

func TestRelayGathersCommitsThatArriveTogether(t *testing.T) {
	t.Parallel()
	forEachEngineWithSchema(t, func(t *testing.T, d *db.DB) {
		js := startJetStream(t)
		o := events.NewOutbox(d)
		var batches atomic.Int32
		// A long poll interval, so that only wake-ups make the relay claim.
		relay := events.NewRelay(o, js, testLogger(t), events.WithPollInterval(time.Hour),
			events.WithCoalesce(2*time.Second),
			events.WithAfterPublishHook(func() error { batches.Add(1); return nil }))
		runInBackground(t, relay.Run)

		// Ten commits 20ms apart, each waking the relay, all within the
		// delay; without it, each would be claimed on its own.
		evs := orderEvents("burst", 10)
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for _, ev := range evs {
			addCommitted(t, d, o, ev)
			<-pace.C
		}
		require.Eventually(t, func() bool { return unpublished(t, d) == 0 }, waitFor, tick)
		require.Equal(t, 10, streamCount(t, js, streamOrders))
		// One claim carried them all; a slow machine may split them once.
		require.LessOrEqual(t, batches.Load(), int32(2), "claims for 10 commits")
	})
}
