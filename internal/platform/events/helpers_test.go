package events_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/db/dbtest"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
)

// waitFor bounds every wait in these tests: long enough for a loaded CI
// machine, short enough to fail fast when something never happens.
const (
	waitFor = 15 * time.Second
	tick    = 10 * time.Millisecond
)

// forEachEngine runs test once against SQLite and once against PostgreSQL,
// each time on a fresh database without the events schema.
func forEachEngine(t *testing.T, test func(t *testing.T, d *db.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, openSQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, openPostgres(t))
	})
}

// forEachEngineWithSchema is forEachEngine on databases EnsureSchema has set up.
func forEachEngineWithSchema(t *testing.T, test func(t *testing.T, d *db.DB)) {
	t.Helper()
	forEachEngine(t, func(t *testing.T, d *db.DB) {
		require.NoError(t, events.EnsureSchema(t.Context(), d))
		test(t, d)
	})
}

func openSQLite(t *testing.T) *db.DB { return dbtest.Open(t, dbtest.SQLiteURL(t)) }

// openPostgres opens a database of the test's own, dropped at the end, so
// tests can run in parallel and leave nothing behind.
func openPostgres(t *testing.T) *db.DB { return dbtest.Open(t, dbtest.PostgresURL(t)) }

// The streams of these tests, declared as the services owning the user and
// order domains declare theirs.
const (
	streamUsers  = "USERS"
	streamOrders = "ORDERS"
)

// testStreams binds user.> and order.>, the subjects these tests publish.
var testStreams = []events.Stream{
	{Name: streamUsers, Domain: "user", Description: "identity events"},
	{Name: streamOrders, Domain: "order", Description: "orders events"},
}

// startJetStream starts a NATS server of the test's own, with testStreams.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := startJetStreamServer(t)
	return js
}

// startJetStreamServer is startJetStream, returning the server too, for a
// test to stop and restart.
func startJetStreamServer(t *testing.T) (*natstest.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.StartServer(t)
	_, js := natstest.Connect(t, srv.URL())
	require.NoError(t, events.EnsureStreams(t.Context(), js, 1, testStreams))
	return srv, js
}

// tcpProxy forwards connections to a server as the network between a
// service and its database does, until cut: then it drops every connection
// and closes new ones at once, as an unreachable server would look, until
// restored.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(server, client) })
		p.wg.Go(func() { pipe(client, server) })
	}
}

// cut drops every connection and refuses new ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// restore lets new connections through again.
func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// openPostgresBehindProxy opens a fresh PostgreSQL database of the test's
// own through a proxy the test can cut.
func openPostgresBehindProxy(t *testing.T) (*db.DB, *tcpProxy) {
	t.Helper()
	u, err := url.Parse(dbtest.PostgresURL(t))
	require.NoError(t, err)
	proxy := startProxy(t, u.Host)
	u.Host = proxy.addr()
	return dbtest.Open(t, u.String()), proxy
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runInBackground runs run until the returned stop is called, or the test
// ends; stop returns run's result. The test fails if run returns an error
// when stopped at the end.
func runInBackground(t *testing.T, run func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	var (
		once sync.Once
		err  error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(waitFor):
				err = fmt.Errorf("did not stop within %s", waitFor)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("background run: %v", err)
		}
	})
	return stop
}

// addCommitted writes evs in one committed transaction and wakes the relay.
func addCommitted(t *testing.T, d *db.DB, o *events.Outbox, evs ...events.Event) {
	t.Helper()
	err := d.InTx(t.Context(), func(tx *sql.Tx) error {
		for _, ev := range evs {
			if err := o.Add(t.Context(), tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	o.Wake()
}

func orderEvent(id string) events.Event {
	return events.Event{ID: id, Subject: "order.confirmed", Payload: fmt.Appendf(nil, `{"order_id":%q}`, id)}
}

func orderEvents(prefix string, n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = orderEvent(fmt.Sprintf("%s-%02d", prefix, i))
	}
	return evs
}

func countRows(t *testing.T, d *db.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, d.QueryRowContext(t.Context(), query, args...).Scan(&n))
	return n
}

func unpublished(t *testing.T, d *db.DB) int {
	return countRows(t, d, `SELECT count(*) FROM outbox WHERE published_at IS NULL`)
}

// streamMessages returns every message stored in stream, in order: what any
// consumer reading the stream from the start would receive.
func streamMessages(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	var msgs []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	return msgs
}

func streamCount(t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return int(info.State.Msgs)
}

// eventIDCounts counts stored messages per Nats-Msg-Id.
func eventIDCounts(msgs []*jetstream.RawStreamMsg) map[string]int {
	counts := map[string]int{}
	for _, m := range msgs {
		counts[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return counts
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject, msgID, eventID string) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(`{}`)
	if eventID != "" {
		msg.Header.Set(events.HeaderEventID, eventID)
	}
	_, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(msgID))
	require.NoError(t, err)
}

// metricValue reads one counter or gauge from reg; labels are name/value
// pairs. A series never touched reads as 0.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
	series:
		for _, m := range family.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func consumerInfo(t *testing.T, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(t.Context(), stream, name)
	require.NoError(t, err)
	info, err := c.Info(t.Context())
	require.NoError(t, err)
	return info
}

// settled reports whether the consumer has nothing left to deliver or to
// wait an acknowledgement for.
func settled(t *testing.T, js jetstream.JetStream, stream, name string) bool {
	info := consumerInfo(t, js, stream, name)
	return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
}
