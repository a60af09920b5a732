package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrReplayTooOld means a dead letter is older than consumers remember the
// events they processed: replayed, it could be applied a second time by a
// consumer that handled the original. DeadLetterFilter.Force replays it
// anyway.
var ErrReplayTooOld = errors.New("dead letter older than consumers remember processed events")

// DeadLetter is one message on the dead-letter stream.
type DeadLetter struct {
	// ID is its sequence in the dead-letter stream: what a filter names.
	ID uint64 `json:"id"`
	// EventID is the event's id, which consumers de-duplicate on.
	EventID string `json:"event_id"`
	// Stream and Sequence say where the original message was.
	Stream   string `json:"stream"`
	Sequence uint64 `json:"stream_seq"`
	// Subject is the original subject, without the "dlq." prefix.
	Subject string `json:"subject"`
	// Consumer is the consumer that gave up on it, Reason why (permanent,
	// exhausted), Error the handler's last error and Attempts how many
	// times the handler rejected it.
	Consumer string `json:"consumer"`
	Reason   string `json:"reason"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	// Time is when it was dead-lettered.
	Time time.Time `json:"time"`
	// Payload is the payload as JSON: itself when it is JSON, else a JSON
	// string of it.
	Payload json.RawMessage `json:"payload"`

	data   []byte
	header nats.Header
}

// DeadLetterFilter selects dead letters. The zero value selects all.
type DeadLetterFilter struct {
	// Stream keeps those that came from this stream ("ORDERS").
	Stream string
	// ID keeps the one with this id; there is then an error wrapping
	// ErrNoSuchDeadLetter if it does not exist or does not match Stream.
	ID uint64
	// Limit keeps the first (oldest) Limit; 0 keeps all.
	Limit int
	// Force makes ReplayDeadLetters replay dead letters older than
	// consumers' processed-events retention too.
	Force bool
}

// ListDeadLetters returns the dead letters f selects, oldest first.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, f DeadLetterFilter) ([]DeadLetter, error) {
	stream, err := js.Stream(ctx, StreamDeadLetters)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamDeadLetters, err)
	}
	if f.ID != 0 {
		m, err := stream.GetMsg(ctx, f.ID)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("%w: %d", ErrNoSuchDeadLetter, f.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letter %d: %w", f.ID, err)
		}
		dl := parseDeadLetter(m)
		if f.Stream != "" && dl.Stream != f.Stream {
			return nil, fmt.Errorf("%w: %d came from %s, not %s", ErrNoSuchDeadLetter, f.ID, dl.Stream, f.Stream)
		}
		return []DeadLetter{dl}, nil
	}
	var out []DeadLetter
	for seq := uint64(1); f.Limit <= 0 || len(out) < f.Limit; {
		// The next stored message at or after seq: deleted ones (replayed
		// dead letters) leave gaps.
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(deadLetterPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letters from %d: %w", seq, err)
		}
		seq = m.Sequence + 1
		if dl := parseDeadLetter(m); f.Stream == "" || dl.Stream == f.Stream {
			out = append(out, dl)
		}
	}
	return out, nil
}

// ReplayDeadLetters republishes the dead letters f selects, oldest first,
// to their original subject, with their payload, event id header and trace
// context, and deletes each from the dead-letter stream once its stream has
// stored it. It returns those it replayed, also when it stops at an error.
//
// Every consumer of the subject receives a replayed message, as a new
// stream message: the one that gave up handles it again from its first
// attempt, and those that handled the original skip it as a duplicate by
// its event id. They remember processed events for a limited time (8 days
// by default), so a dead letter older than that is refused with
// ErrReplayTooOld unless f.Force is set; nothing is replayed then.
func ReplayDeadLetters(ctx context.Context, js jetstream.JetStream, f DeadLetterFilter) ([]DeadLetter, error) {
	selected, err := ListDeadLetters(ctx, js, f)
	if err != nil {
		return nil, err
	}
	if !f.Force {
		for _, dl := range selected {
			if age := time.Since(dl.Time); age > defaultProcessedRetention {
				return nil, fmt.Errorf("%w: dead letter %d is %s old, consumers remember processed events for %s",
					ErrReplayTooOld, dl.ID, age.Round(time.Hour), defaultProcessedRetention)
			}
		}
	}
	stream, err := js.Stream(ctx, StreamDeadLetters)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamDeadLetters, err)
	}
	var replayed []DeadLetter
	for _, dl := range selected {
		msg := nats.NewMsg(dl.Subject)
		msg.Data = dl.data
		for k, vs := range dl.header {
			if !strings.HasPrefix(k, "Nats-") && !strings.HasPrefix(k, "Mercato-Dlq-") {
				msg.Header[k] = slices.Clone(vs)
			}
		}
		msg.Header.Set(HeaderEventID, dl.EventID)
		// Not the event id as Nats-Msg-Id, which the stream would drop
		// within its duplicate window; one per dead letter, so that running
		// the replay again after a failure stores it once.
		msgID := "replay:" + strconv.FormatUint(dl.ID, 10) + ":" + dl.EventID
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
			return replayed, fmt.Errorf("replay dead letter %d to %s: %w", dl.ID, dl.Subject, err)
		}
		replayed = append(replayed, dl)
		if err := stream.DeleteMsg(ctx, dl.ID); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return replayed, fmt.Errorf("delete replayed dead letter %d: %w", dl.ID, err)
		}
	}
	return replayed, nil
}

func parseDeadLetter(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	seq, _ := strconv.ParseUint(h.Get(HeaderDeadLetterSequence), 10, 64)
	attempts, _ := strconv.Atoi(h.Get(HeaderDeadLetterAttempts))
	return DeadLetter{
		ID:       m.Sequence,
		EventID:  h.Get(HeaderEventID),
		Stream:   h.Get(HeaderDeadLetterStream),
		Sequence: seq,
		Subject:  strings.TrimPrefix(m.Subject, deadLetterPrefix),
		Consumer: h.Get(HeaderDeadLetterConsumer),
		Reason:   h.Get(HeaderDeadLetterReason),
		Error:    h.Get(HeaderDeadLetterError),
		Attempts: attempts,
		Time:     m.Time.UTC(),
		Payload:  asJSON(m.Data),
		data:     m.Data,
		header:   h,
	}
}

// asJSON returns data if it is JSON, else data as a JSON string.
func asJSON(data []byte) json.RawMessage {
	if json.Valid(data) {
		return data
	}
	quoted, _ := json.Marshal(string(data))
	return quoted
}
