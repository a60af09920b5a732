package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// connectTimeout bounds the first connection to NATS at start.
	connectTimeout = 10 * time.Second
	// drainTimeout bounds how long Drain waits for the connection to close.
	drainTimeout = 5 * time.Second
)

// Connect connects a service's process to the NATS server at url (or a
// comma-separated list of servers) and makes sure the streams exist
// (EnsureStreams) with replicas copies each, 0 meaning 1 (a single server).
//
// The connection is named "mercato-<service>" in NATS's monitoring. The
// first connection must succeed within 10s; after that the client
// reconnects forever, because an outage is better reported by readiness
// (ConnectedCheck) than by a dead process: relays catch up and consumers
// resume once NATS is back. The caller owns the connection and stops it
// with Drain (nc.Close when giving up during start-up).
func Connect(ctx context.Context, url, service string, replicas int) (*nats.Conn, jetstream.JetStream, error) {
	if replicas == 0 {
		replicas = 1
	}
	nc, err := nats.Connect(url,
		nats.Name("mercato-"+service),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream client: %w", err)
	}
	if err := EnsureStreams(ctx, js, replicas); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// ConnectedCheck returns a readiness check that fails while nc is not
// connected (down, or reconnecting after an outage).
func ConnectedCheck(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	}
}

// Drain closes nc gracefully: subscriptions finish the messages in hand and
// buffered publishes are flushed first. It closes nc anyway after 5s. Call
// it once the relay and consumers using nc have stopped; a closed
// connection is left as it is. It replaces nc's closed handler.
func Drain(nc *nats.Conn) error {
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return fmt.Errorf("drain NATS: %w", err)
	}
	select {
	case <-closed:
	case <-time.After(drainTimeout):
		nc.Close()
	}
	return nil
}
