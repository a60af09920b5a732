package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names, one per domain plus the dead letters. Consumers name them in
// ConsumerConfig.Stream.
const (
	StreamUsers       = "USERS"
	StreamProducts    = "PRODUCTS"
	StreamOrders      = "ORDERS"
	StreamPayments    = "PAYMENTS"
	StreamDeadLetters = "DEAD_LETTERS"
)

// deadLetterPrefix is prepended to a message's subject when it is dead-lettered.
const deadLetterPrefix = "dlq."

const (
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. A relay
	// that republishes within it (crash between publish and mark) stores
	// nothing twice; after it, consumers' processed_events still catch the
	// duplicate.
	DuplicateWindow = 2 * time.Minute
	// domainRetention bounds the domain streams. A consumer that is down for
	// longer loses events, so it is generous; Consumer keeps its
	// processed_events rows at least as long.
	domainRetention = 7 * 24 * time.Hour
	// deadLetterRetention leaves time for someone to look at a dead letter.
	deadLetterRetention = 30 * 24 * time.Hour
)

// domainStreams are the streams events are published to, each binding
// "<domain>.>". A new domain starts here.
var domainStreams = []struct{ name, domain, description string }{
	{StreamUsers, "user", "identity events"},
	{StreamProducts, "product", "catalog events"},
	{StreamOrders, "order", "orders events"},
	{StreamPayments, "payment", "payments events"},
}

// domainStreamOf returns the stream an event subject is published to, or ""
// when no stream binds it.
func domainStreamOf(subject string) string {
	for _, s := range domainStreams {
		if strings.HasPrefix(subject, s.domain+".") {
			return s.name
		}
	}
	return ""
}

func streamConfigs(replicas int) []jetstream.StreamConfig {
	stream := func(name, subjects, description string, maxAge time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: description,
			Subjects:    []string{subjects},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      maxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  DuplicateWindow,
		}
	}
	configs := make([]jetstream.StreamConfig, 0, len(domainStreams)+1)
	for _, s := range domainStreams {
		configs = append(configs, stream(s.name, s.domain+".>", s.description, domainRetention))
	}
	return append(configs, stream(StreamDeadLetters, deadLetterPrefix+">", "messages consumers gave up on", deadLetterRetention))
}

// EnsureStreams creates the domain streams (user.>, product.>, order.>,
// payment.>) and the dead-letter stream (dlq.>), or updates them to this
// configuration: file storage, the given number of replicas (1 for a single
// server, 3 on a cluster) and a DuplicateWindow for de-duplication. It is
// idempotent; every process that publishes or consumes may call it at start.
//
// A stream that already has this configuration is left alone: JetStream
// answers a create with the same configuration with the stream as it is,
// whereas an update rewrites the stream's configuration even when nothing
// changed (a Raft proposal on a cluster), while other processes starting at
// the same time create their consumers on it.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas < 1 || replicas > 5 {
		return fmt.Errorf("%w: stream replicas %d not in 1..5", ErrInvalidConfig, replicas)
	}
	for _, cfg := range streamConfigs(replicas) {
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = js.UpdateStream(ctx, cfg) // it exists with another configuration
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
