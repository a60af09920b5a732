package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/config"
)

const (
	// connectTimeout bounds the first connection to NATS at start.
	connectTimeout = 10 * time.Second
	// drainTimeout bounds how long Drain waits for the connection to close.
	drainTimeout = 5 * time.Second
)

// Config says how a service reaches NATS JetStream and which streams it
// makes sure exist.
type Config struct {
	// URL is the NATS server, or a comma-separated list of servers.
	URL string
	// StreamReplicas is how many copies JetStream keeps of each stream: 1
	// for a single server (the default when 0), 3 on a cluster.
	StreamReplicas int
	// Streams are the streams Connect makes sure exist: every stream of
	// the system, not only the service's own, so that a consumer finds the
	// stream it reads even before the publisher has started once.
	Streams []Stream
}

// WithDefaults returns c with every unset field filled.
func (c Config) WithDefaults() Config {
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	return c
}

// WithStreams returns c with streams added to Streams, except those whose
// name it already has: a service adds its own streams to those it was
// given.
func (c Config) WithStreams(streams ...Stream) Config {
	all := slices.Clone(c.Streams)
	for _, s := range streams {
		if !slices.ContainsFunc(all, func(have Stream) bool { return have.Name == s.Name }) {
			all = append(all, s)
		}
	}
	c.Streams = all
	return c
}

// Validate reports every problem with c (after WithDefaults) at once.
func (c Config) Validate() error {
	var p config.Problems
	p.Add(c.URL == "", "NATS URL is empty")
	p.Add(c.StreamReplicas < 1 || c.StreamReplicas > 5, "stream replicas must be 1 to 5, got %d", c.StreamReplicas)
	p.Include("streams", validateStreams(c.Streams))
	return p.Err()
}

// Connect connects a service's process to NATS as cfg says and makes sure
// cfg's streams exist (EnsureStreams).
//
// The connection is named "mercato-<service>" in NATS's monitoring. The
// first connection must succeed within 10s; after that the client
// reconnects forever, because an outage is better reported by readiness
// (ConnectedCheck) than by a dead process: relays catch up and consumers
// resume once NATS is back. The caller owns the connection and stops it
// with Drain (nc.Close when giving up during start-up).
func Connect(ctx context.Context, cfg Config, service string) (*nats.Conn, jetstream.JetStream, error) {
	cfg = cfg.WithDefaults()
	nc, err := nats.Connect(cfg.URL,
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
	if err := EnsureStreams(ctx, js, cfg.StreamReplicas, cfg.Streams); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// Dial connects a command-line tool to NATS at url, named name in NATS's
// monitoring: unlike Connect it gives up at once when the server cannot be
// reached, and it makes sure of no stream. The caller closes the connection.
func Dial(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(connectTimeout))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream client: %w", err)
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
