// Package events carries domain events from one service's database to the
// others, with at-least-once delivery and effectively-once effects:
//
//   - Outbox.Add stores an event in the same transaction as the state change
//     it describes, so an event exists if and only if the change committed.
//   - Relay publishes stored events to NATS JetStream with the event id as
//     Nats-Msg-Id, so a republish after a crash is dropped by the stream's
//     duplicate window, and marks them published.
//   - Consumer runs a Handler in a transaction that also records the event id
//     in processed_events, so a redelivery whose first run committed is
//     skipped; a message that keeps failing ends on the dead-letter stream.
//
// W3C trace context travels from Add's context, through the outbox row and
// the message headers, to the handler's span.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"

	"github.com/mercato-dev/mercato/internal/platform/db"
)

// HeaderEventID is the message header carrying Event.ID. The relay also sets
// Nats-Msg-Id to the same value, but that header is JetStream's to interpret;
// this one is what consumers de-duplicate on, and it stays on dead letters.
const HeaderEventID = "Mercato-Event-Id"

// Event is one domain event.
type Event struct {
	// ID is unique per event; it becomes the Nats-Msg-Id header for JetStream
	// de-duplication and the key of consumers' processed_events rows. Empty
	// means Add assigns a new UUIDv7. Set it yourself when a retried command
	// must not produce a second event.
	ID string
	// Subject is the NATS subject, "<domain>.<what happened>", for example
	// "user.registered" or "order.confirmed", where the domain is that of
	// one of the producing service's streams (see PublishesTo).
	Subject string
	// Payload is the JSON body.
	Payload []byte
}

// Outbox stores events in the producing service's database. It is safe for
// concurrent use.
type Outbox struct {
	db         *db.DB
	propagator propagation.TextMapPropagator
	wake       chan struct{}
	streams    []Stream
}

// OutboxOption configures an Outbox.
type OutboxOption func(*Outbox)

// WithOutboxPropagator sets how Add captures the caller's trace context.
// The default writes W3C traceparent/tracestate and baggage, whatever the
// global propagator is.
func WithOutboxPropagator(p propagation.TextMapPropagator) OutboxOption {
	return func(o *Outbox) { o.propagator = p }
}

// PublishesTo names the streams the producing service publishes to: Add
// then refuses an event whose subject none of them binds, where a test of
// the producing service sees it, because the relay could never publish
// such a row and would retry it forever. Without it any subject is taken.
func PublishesTo(streams ...Stream) OutboxOption {
	return func(o *Outbox) { o.streams = streams }
}

// NewOutbox returns an outbox writing to d, whose schema EnsureSchema has
// created.
func NewOutbox(d *db.DB, opts ...OutboxOption) *Outbox {
	o := &Outbox{
		db:         d,
		propagator: defaultPropagator(),
		// One pending wake-up is enough: the relay reads everything committed.
		wake: make(chan struct{}, 1),
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Add writes ev inside tx, which must be the transaction making the state
// change ev describes: the event is published if and only if tx commits.
// The W3C trace context of ctx is stored with it and becomes the parent of
// the consumers' spans. Add returns an error wrapping ErrInvalidEvent for a
// malformed event and ErrDuplicateEvent when ev.ID was used before (on
// PostgreSQL tx is then aborted). Call Wake after the commit.
func (o *Outbox) Add(ctx context.Context, tx *sql.Tx, ev Event) error {
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("generate event id: %w", err)
		}
		ev.ID = id.String()
	}
	if err := o.validate(ev); err != nil {
		return err
	}
	carrier := propagation.MapCarrier{}
	o.propagator.Inject(ctx, carrier)
	headers, err := json.Marshal(carrier)
	if err != nil {
		return fmt.Errorf("encode event headers: %w", err)
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO outbox (event_id, subject, payload, headers) VALUES ($1, $2, $3, $4)`,
		ev.ID, ev.Subject, ev.Payload, string(headers))
	if db.IsUniqueViolation(err) {
		return fmt.Errorf("add event %s: %w", ev.ID, ErrDuplicateEvent)
	}
	if err != nil {
		return fmt.Errorf("add event %s: %w", ev.ID, err)
	}
	return nil
}

// Wake tells the relay that events were committed, so it publishes them now
// rather than at its next poll. It never blocks; calling it without a
// commit, or with no relay running, is harmless.
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *Outbox) validate(ev Event) error {
	if !validHeaderValue(ev.ID) || len(ev.ID) > 255 {
		return fmt.Errorf("%w: id %q must be 1 to 255 printable characters", ErrInvalidEvent, ev.ID)
	}
	if !validSubject(ev.Subject, false) {
		return fmt.Errorf("%w: subject %q is not a literal NATS subject", ErrInvalidEvent, ev.Subject)
	}
	if len(o.streams) > 0 && !slices.ContainsFunc(o.streams, func(s Stream) bool { return s.binds(ev.Subject) }) {
		return fmt.Errorf("%w: subject %q is bound to none of the service's streams", ErrInvalidEvent, ev.Subject)
	}
	if !json.Valid(ev.Payload) {
		return fmt.Errorf("%w: payload of %s is not valid JSON", ErrInvalidEvent, ev.Subject)
	}
	return nil
}

// validSubject reports whether s is a NATS subject: dot-separated non-empty
// tokens without whitespace, and without wildcards unless allowed.
func validSubject(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		if tok == "" || strings.ContainsFunc(tok, unicode.IsSpace) {
			return false
		}
		if !strings.ContainsAny(tok, "*>") {
			continue
		}
		if !wildcards || (tok != "*" && tok != ">") || (tok == ">" && i != len(tokens)-1) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can travel as a NATS header value.
func validHeaderValue(s string) bool {
	return s != "" && !strings.ContainsFunc(s, unicode.IsControl)
}
