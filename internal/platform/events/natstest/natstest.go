// Package natstest runs a throwaway NATS JetStream server for tests.
package natstest

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/events"
)

// Start starts an embedded NATS server with JetStream on a free loopback
// port, storing into a temporary directory, and returns its URL. The server
// is shut down when the test ends.
func Start(t testing.TB) (url string) {
	t.Helper()
	return StartServer(t).URL()
}

// Server is an embedded NATS JetStream server that a test can stop and
// start again, on the same port and store, as in an outage.
type Server struct {
	t    testing.TB
	dir  string
	port int
	url  string

	mu  sync.Mutex
	srv *server.Server
}

// StartServer is Start, returning the server.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	srv, err := events.StartEmbedded(s.dir, "127.0.0.1", -1)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	s.srv, s.url = srv, srv.ClientURL()
	_, port, err := net.SplitHostPort(srv.Addr().String())
	if err != nil {
		t.Fatalf("NATS address: %v", err)
	}
	s.port, _ = strconv.Atoi(port)
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's client URL; it stays the same across a restart.
func (s *Server) URL() string { return s.url }

// Stop shuts the server down and waits until it is; clients see it gone.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts a stopped server again, with the streams it had.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	srv, err := events.StartEmbedded(s.dir, "127.0.0.1", s.port)
	if err != nil {
		s.t.Fatalf("restart NATS: %v", err)
	}
	s.srv = srv
}

// Connect connects to the server at url and returns the connection and its
// JetStream client; the connection is closed when the test ends. It
// reconnects quickly and forever, so that a test restarting the server
// does not wait for it.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
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
