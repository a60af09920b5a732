// Package natstest runs a throwaway NATS JetStream server for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Start starts an embedded NATS server with JetStream on a free loopback
// port, storing into a temporary directory, and returns its URL. The server
// is shut down when the test ends.
func Start(t testing.TB) (url string) {
	t.Helper()
	srv, err := events.StartEmbedded(t.TempDir(), "127.0.0.1", -1)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL()
}

// Connect connects to the server at url and returns the connection and its
// JetStream client; the connection is closed when the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream client: %v", err)
	}
	return nc, js
}
