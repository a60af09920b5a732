package natstest_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mercato-dev/mercato/internal/platform/events/natstest"
)

func TestStartServesJetStreamOnAFreePort(t *testing.T) {
	first, second := natstest.Start(t), natstest.Start(t)
	for _, raw := range []string{first, second} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		assert.NotEqual(t, "4222", u.Port(), "must not take the NATS default port")
	}
	require.NotEqual(t, first, second)

	_, js := natstest.Connect(t, first)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe.>"}})
	require.NoError(t, err)
	ack, err := js.Publish(t.Context(), "probe.one", []byte("{}"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ack.Sequence)
}

func TestServerRestartsWithItsStreams(t *testing.T) {
	srv := natstest.StartServer(t)
	nc, js := natstest.Connect(t, srv.URL())
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe.>"}})
	require.NoError(t, err)
	_, err = js.Publish(t.Context(), "probe.one", []byte("{}"))
	require.NoError(t, err)

	srv.Stop()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 10*time.Second, 10*time.Millisecond)
	srv.Restart()
	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)

	ack, err := js.Publish(t.Context(), "probe.two", []byte("{}"))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ack.Sequence, "the stream survived the restart")
}
