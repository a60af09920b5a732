package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/config"
)

// StreamDeadLetters is the stream of messages consumers gave up on; every
// process keeps it, whatever streams its services declare.
const StreamDeadLetters = "DEAD_LETTERS"

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

// Stream is a JetStream stream a service publishes its events to: every
// subject "<Domain>.<what happened>". The service that owns the domain
// declares it; consumers find it by subject.
type Stream struct {
	// Name is the JetStream stream name, e.g. "ORDERS".
	Name string
	// Domain is the first token of the stream's subjects, e.g. "order".
	Domain string
	// Description says whose events these are.
	Description string
}

// binds reports whether subject is published to s.
func (s Stream) binds(subject string) bool {
	return strings.HasPrefix(subject, s.Domain+".")
}

func (s Stream) validate() error {
	var p config.Problems
	p.Add(s.Name == "" || strings.ContainsAny(s.Name, " .*>"), "stream name %q must be a non-empty word", s.Name)
	p.Add(!validSubject(s.Domain, false) || strings.Contains(s.Domain, "."), "stream %s: domain %q must be one subject token", s.Name, s.Domain)
	p.Add(s.Name == StreamDeadLetters || s.Domain+"." == deadLetterPrefix, "stream %s is reserved for dead letters", s.Name)
	return p.Err()
}

func streamConfigs(replicas int, streams []Stream) []jetstream.StreamConfig {
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
	configs := make([]jetstream.StreamConfig, 0, len(streams)+1)
	for _, s := range streams {
		configs = append(configs, stream(s.Name, s.Domain+".>", s.Description, domainRetention))
	}
	return append(configs, stream(StreamDeadLetters, deadLetterPrefix+">", "messages consumers gave up on", deadLetterRetention))
}

// EnsureStreams creates the given domain streams ("<domain>.>" each) and
// the dead-letter stream (dlq.>), or updates them to this
// configuration: file storage, the given number of replicas (1 for a single
// server, 3 on a cluster) and a DuplicateWindow for de-duplication. It is
// idempotent; every process that publishes or consumes may call it at start.
//
// A stream that already has this configuration is left alone: JetStream
// answers a create with the same configuration with the stream as it is,
// whereas an update rewrites the stream's configuration even when nothing
// changed (a Raft proposal on a cluster), while other processes starting at
// the same time create their consumers on it.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int, streams []Stream) error {
	if replicas < 1 || replicas > 5 {
		return fmt.Errorf("%w: stream replicas %d not in 1..5", ErrInvalidConfig, replicas)
	}
	if err := validateStreams(streams); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	for _, cfg := range streamConfigs(replicas, streams) {
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

// validateStreams reports every malformed stream and any two that share a
// name or a domain.
func validateStreams(streams []Stream) error {
	var p config.Problems
	names, domains := map[string]bool{}, map[string]bool{}
	for _, s := range streams {
		p.Include("stream", s.validate())
		p.Add(names[s.Name], "stream %s is declared twice", s.Name)
		p.Add(domains[s.Domain], "domain %q is bound by two streams", s.Domain)
		names[s.Name], domains[s.Domain] = true, true
	}
	return p.Err()
}
