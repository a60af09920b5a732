package events

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedStartTimeout bounds how long StartEmbedded waits for the server to
// accept connections (JetStream recovers its store first).
const embeddedStartTimeout = 30 * time.Second

// StartEmbedded starts an in-process NATS server with JetStream, storing
// streams under dir, listening on host:port; port -1 picks a free port
// (0 means NATS's default, 4222). It returns once the server accepts
// connections; its address is ClientURL(). The server logs nothing and
// ignores signals: the caller owns it and stops it with Shutdown then
// WaitForShutdown.
func StartEmbedded(dir string, host string, port int) (*server.Server, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: embedded NATS needs a store directory", ErrInvalidConfig)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "mercato-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("configure embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(embeddedStartTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded NATS on %s:%d: %w", host, port, errors.New("not ready in time"))
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("start embedded NATS: JetStream is not enabled")
	}
	return srv, nil
}
