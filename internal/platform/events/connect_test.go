package events_test

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
)

func TestConnectCreatesTheStreamsAndReportsReadiness(t *testing.T) {
	srv, err := events.StartEmbedded(t.TempDir(), "127.0.0.1", -1)
	require.NoError(t, err)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})

	nc, js, err := events.Connect(t.Context(), events.Config{URL: srv.ClientURL(), Streams: testStreams}, "catalog")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.Equal(t, "mercato-catalog", nc.Opts.Name)
	for _, name := range []string{streamUsers, streamOrders, events.StreamDeadLetters} {
		stream, err := js.Stream(t.Context(), name)
		require.NoError(t, err, name)
		require.Equal(t, 1, stream.CachedInfo().Config.Replicas, "0 replicas means one copy")
	}
	_, err = js.Stream(t.Context(), "PRODUCTS")
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "only the streams it is given")
	ready := events.ConnectedCheck(nc)
	require.NoError(t, ready(t.Context()))

	// A NATS outage makes the process unready rather than ending it.
	srv.Shutdown()
	srv.WaitForShutdown()
	require.Eventually(t, func() bool { return ready(t.Context()) != nil }, waitFor, tick)
	require.False(t, nc.IsClosed(), "the client keeps reconnecting")
	require.EqualError(t, ready(t.Context()), "not connected to NATS")
}

func TestConnectFailures(t *testing.T) {
	url := natsURLWithNoServer(t)
	_, _, err := events.Connect(t.Context(), events.Config{URL: url, StreamReplicas: 1}, "catalog")
	require.ErrorContains(t, err, "connect to NATS")

	srv, err := events.StartEmbedded(t.TempDir(), "127.0.0.1", -1)
	require.NoError(t, err)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	_, _, err = events.Connect(t.Context(), events.Config{URL: srv.ClientURL(), StreamReplicas: 6}, "catalog")
	require.ErrorIs(t, err, events.ErrInvalidConfig)
	require.Eventually(t, func() bool { return srv.NumClients() == 0 }, waitFor, tick,
		"a failed Connect closes its connection")

	twice := append(slices.Clone(testStreams), testStreams[0])
	_, _, err = events.Connect(t.Context(), events.Config{URL: srv.ClientURL(), Streams: twice}, "catalog")
	require.ErrorIs(t, err, events.ErrInvalidConfig)
	require.Eventually(t, func() bool { return srv.NumClients() == 0 }, waitFor, tick,
		"a failed Connect closes its connection")
}

func TestDrainLetsSubscriptionsFinishThenCloses(t *testing.T) {
	nc, _, err := events.Connect(t.Context(), events.Config{URL: startNATS(t), StreamReplicas: 1}, "orders")
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	var (
		started = make(chan struct{})
		release = make(chan struct{})
		handled atomic.Int32
	)
	_, err = nc.Subscribe("drain.test", func(*nats.Msg) {
		if handled.Load() == 0 {
			close(started)
			<-release
		}
		handled.Add(1)
	})
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, nc.Publish("drain.test", nil))
	}
	// The server answers the flush after delivering the three messages to
	// this same connection, so all are queued once it returns.
	require.NoError(t, nc.Flush())
	<-started

	// The first message is in hand and two wait behind it when the drain
	// begins: all three are handled before the connection closes.
	drained := make(chan error, 1)
	go func() { drained <- events.Drain(nc) }()
	require.Eventually(t, nc.IsDraining, waitFor, tick)
	close(release)
	require.NoError(t, <-drained)
	require.Equal(t, int32(3), handled.Load())
	require.True(t, nc.IsClosed())
	require.Error(t, events.ConnectedCheck(nc)(t.Context()))
	require.NoError(t, events.Drain(nc), "draining a closed connection does nothing")
}

func TestMigrateAppliesTheServiceSchemaAndTheEventsSchema(t *testing.T) {
	t.Parallel()
	service := fstest.MapFS{
		"migrations/sqlite/00001_init.sql": {Data: []byte(
			"-- +goose Up\nCREATE TABLE widgets (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE widgets;\n")},
		"migrations/postgres/00001_init.sql": {Data: []byte(
			"-- +goose Up\nCREATE TABLE widgets (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE widgets;\n")},
	}
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		require.NoError(t, events.Migrate(t.Context(), d, service))
		require.NoError(t, events.Migrate(t.Context(), d, service), "applying again changes nothing")
		require.Equal(t, 0, countRows(t, d, `SELECT count(*) FROM widgets`))
		require.Equal(t, 0, unpublished(t, d))
		require.Equal(t, 0, countRows(t, d, `SELECT count(*) FROM processed_events`))

		err := events.Migrate(t.Context(), d, fstest.MapFS{})
		require.Error(t, err, "a service without migrations for its engine")
	})
}

// startNATS starts a server of the test's own and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := events.StartEmbedded(t.TempDir(), "127.0.0.1", -1)
	require.NoError(t, err)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL()
}

// natsURLWithNoServer returns a loopback URL that refuses connections.
func natsURLWithNoServer(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "nats://" + addr
}

// EnsureStreams brings a stream that drifted back to the configuration, and
// leaves a stream that has it alone: every process calls it at start, and
// an update each time would rewrite the streams for nothing.
func TestEnsureStreamsUpdatesOnlyWhatDiffers(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.Start(t))
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, testStreams))

	updated, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	// Nothing differs: no update.
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, testStreams))
	// Someone changes one stream; EnsureStreams changes it back.
	orders, err := js.Stream(t.Context(), streamOrders)
	require.NoError(t, err)
	drifted := orders.CachedInfo().Config
	drifted.Description = "changed by hand"
	_, err = js.UpdateStream(t.Context(), drifted)
	require.NoError(t, err)
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, testStreams))

	// The server sends advisories in order: the first is the hand-made
	// update (none came from the call before it), the second undid it.
	for range 2 {
		msg, err := updated.NextMsg(waitFor)
		require.NoError(t, err)
		require.Equal(t, "$JS.EVENT.ADVISORY.STREAM.UPDATED."+streamOrders, msg.Subject)
	}
	orders, err = js.Stream(t.Context(), streamOrders)
	require.NoError(t, err)
	require.Equal(t, "orders events", orders.CachedInfo().Config.Description)
}

// EnsureStreams refuses streams that would clash, before creating any: two
// sharing a name or a domain, or one taking the dead letters' name or
// subjects.
func TestEnsureStreamsRefusesClashingStreams(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t))
	orders := events.Stream{Name: streamOrders, Domain: "order"}
	tests := []struct {
		name    string
		streams []events.Stream
	}{
		{"two streams of one name", []events.Stream{orders, {Name: streamOrders, Domain: "purchase"}}},
		{"two streams of one domain", []events.Stream{orders, {Name: "PURCHASES", Domain: "order"}}},
		{"the dead letters' name", []events.Stream{orders, {Name: events.StreamDeadLetters, Domain: "dead"}}},
		{"the dead letters' domain", []events.Stream{orders, {Name: "LETTERS", Domain: "dlq"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := events.EnsureStreams(t.Context(), js, 1, tt.streams)
			require.ErrorIs(t, err, events.ErrInvalidConfig)
			for _, name := range []string{streamOrders, events.StreamDeadLetters} {
				_, err := js.Stream(t.Context(), name)
				require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "%s was created", name)
			}
		})
	}
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, []events.Stream{orders}), "one of them alone is fine")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := events.Config{URL: "nats://127.0.0.1:4222", Streams: testStreams}.WithDefaults()
	require.Equal(t, 1, valid.StreamReplicas, "one copy by default")
	require.NoError(t, valid.Validate())

	err := events.Config{StreamReplicas: 6}.Validate()
	require.ErrorContains(t, err, "NATS URL is empty")
	require.ErrorContains(t, err, "stream replicas must be 1 to 5, got 6")

	sameName := valid.WithStreams(events.Stream{Name: streamOrders, Domain: "purchase"})
	require.Equal(t, valid.Streams, sameName.Streams, "a stream whose name is there already is not added")
	twice := events.Config{URL: valid.URL, Streams: append(slices.Clone(testStreams), events.Stream{Name: streamOrders, Domain: "purchase"})}
	require.ErrorContains(t, twice.Validate(), "stream ORDERS is declared twice")
}

// WithStreams adds the streams a service owns to those it was given,
// without declaring one twice.
func TestConfigWithStreams(t *testing.T) {
	t.Parallel()
	payments := events.Stream{Name: "PAYMENTS", Domain: "payment", Description: "payments events"}
	// Room to grow in place, as a list built by appending often has.
	given := make([]events.Stream, len(testStreams), len(testStreams)+1)
	copy(given, testStreams)
	cfg := events.Config{Streams: given}
	added := cfg.WithStreams(testStreams[1], payments)
	require.Equal(t, append(slices.Clone(testStreams), payments), added.Streams)
	other := cfg.WithStreams(events.Stream{Name: "PRODUCTS", Domain: "product"})
	require.Equal(t, payments, added.Streams[len(testStreams)], "each result has a list of its own")
	require.Len(t, other.Streams, len(testStreams)+1)
}
